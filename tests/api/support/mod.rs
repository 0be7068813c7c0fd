//! The harness the tests share; no tests here.
//!
//! - `helpers`: the real server on port 0 (`spawn_app`), a client, an SSE parser
//! - `process`: the real `ssehub` binary as a child process
//! - `raw`: a raw TCP client for heads and bodies an HTTP library won't send
//! - `jwt`: tokens minted for the tests and a JWKS server on loopback
//! - `otlp`: an OTLP receiver (gRPC or HTTP) that keeps the spans it gets

pub mod helpers;
pub mod jwt;
pub mod otlp;
pub mod process;
pub mod raw;
