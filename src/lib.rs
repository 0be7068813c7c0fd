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
//! | [`server`] | the HTTP/1 front: accept loop, request heads, the lean writer for event streams, hand-off to hyper for everything else |
//! | [`shutdown`] | the drain sequence and signal handling |
//! | [`telemetry`] | logs (text or JSON, with trace ids), the OTLP trace pipeline, trace context in and out of events |
//! | [`metrics`] | the Prometheus metrics of one hub and their exposition |
//!
//! A publish travels `http::publish` → [`hub::Hub::publish`] → [`backplane::Backplane::publish`]
//! (id, history) → [`backplane::FanOut`] (the hub's live queues) → each
//! subscriber's stream in `hub::subscription`, which yields the event's
//! frame — encoded once, at acceptance — to the [`server`]'s lean writer,
//! which writes it to the subscriber's socket (no HTTP server in between
//! once the stream is open; see `server`'s module documentation).
//!
//! Observability follows the same path: `http::observe` opens the request's
//! server span (a child of the caller's `traceparent`), `hub::observe` the
//! accept span (whose trace context then travels on each [`hub::Event`]),
//! the fan-out span (parented by that context, also across a backplane) and
//! one span per subscription, linked to the publishes where it resumed after
//! a gap. Counters are bumped at the same places, per batch on the hot path.

pub mod app;
pub mod backplane;
pub mod config;
pub mod http;
pub mod hub;
pub mod listener;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod telemetry;
