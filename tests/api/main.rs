//! Integration tests: one test binary, the real server on port 0 (or the
//! real `ssehub` binary as a child process), real HTTP and a real SSE parser.

// The harness the tests share (the server on port 0, the binary as a child,
// raw TCP, JWTs, an OTLP receiver).
mod support;

mod auth;
mod auth_browser;
mod auth_process;
mod batch;
mod binary;
mod broken_bodies;
mod browser;
mod console;
mod contract;
mod docs;
mod drain;
mod errors;
mod fanout;
mod fuzz_findings;
mod hostile;
mod hostile_auth;
mod hostile_batch;
mod hostile_connections;
mod hostile_history;
mod hostile_replay;
mod idempotency;
mod lean;
mod limits;
mod logs;
mod mercure;
mod mercure_browser;
mod mercure_coverage;
mod mercure_nginx;
mod mercure_publish;
mod mercure_subscriptions;
mod mercure_tokens;
mod metrics;
mod nginx;
mod redis;
mod seed;
mod shards;
mod slow_subscriber;
mod spec;
mod stats;
mod token_command;
mod traces;
mod wire;
mod wire_properties;
