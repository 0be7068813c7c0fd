//! Integration tests: one test binary, the real server on port 0 (or the
//! real `ssehub` binary as a child process), real HTTP and a real SSE parser.

mod helpers;
mod otlp;
mod process;
mod raw;

mod batch;
mod binary;
mod browser;
mod drain;
mod errors;
mod fanout;
mod hostile;
mod lean;
mod limits;
mod logs;
mod metrics;
mod nginx;
mod resume;
mod seed;
mod slow_subscriber;
mod traces;
mod wire;
