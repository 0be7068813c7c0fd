//! ssehub: a Server-Sent Events fan-out hub.
//!
//! Backends publish events over HTTP; browsers subscribe over SSE and get
//! every event of their topics, in order, resumable after a reconnect, with
//! nothing lost silently.
//!
//! # Architecture
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | the typed configuration, its layers (defaults < TOML < `SSEHUB_*`) and validation |
//! | [`app`] | assembling hub, backplane and HTTP server around an already bound listener |
//! | [`hub`] | the domain core: topics, ids, the SSE encoder, fan-out, subscriptions, drain state. No HTTP, no Redis |
//! | [`backplane`] | where ids and history come from (`memory` now); the trait a Redis backplane implements |
//! | [`http`] | thin poem/poem-openapi handlers: publish, subscribe (SSE), seed routes, probes, problem+json errors |
//! | [`listener`] | binding (or inheriting via `LISTEN_FDS`) the socket, and an acceptor the drain can stop |
//! | [`shutdown`] | the drain sequence and signal handling |
//! | [`telemetry`] | logs (text or JSON) |
//!
//! A publish travels `http::publish` → [`hub::Hub::publish`] → [`backplane::Backplane::publish`]
//! (id, history) → [`backplane::FanOut`] (the hub's live queues) → each
//! subscriber's stream in `hub::subscription`, which writes the event's
//! frame — encoded once, at acceptance — to its connection.

pub mod app;
pub mod backplane;
pub mod config;
pub mod http;
pub mod hub;
pub mod listener;
pub mod shutdown;
pub mod telemetry;
