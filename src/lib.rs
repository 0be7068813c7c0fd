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
//! | [`auth`] | who may publish, subscribe and read metrics: static keys, JWT verification (secret, PEM key, JWKS kept fresh), topic patterns, grants, rate limits, the client address behind trusted proxies. No HTTP types |
//! | [`hub`] | the domain core: topics, ids, the SSE encoder, the topics' live queues, subscriptions and their delivery logic, drain state, shedding (the one answer to a subscribe not served now). No HTTP, no Redis |
//! | [`backplane`] | where ids and history come from — `memory` (one process) or `redis` (replicas sharing one Redis: scripts, pub/sub reader, resync) — the trait, the fan-out contract, `connect` from the config and the background `run` |
//! | [`http`] | thin poem/poem-openapi handlers: publish, subscribe (SSE), seed routes, probes, `/v1/stats`, the console at `/` (assets embedded), problem+json errors |
//! | [`listener`] | binding (or inheriting via `LISTEN_FDS`) the socket, and an acceptor the drain can stop |
//! | [`server`] | the HTTP/1 front: accept loop, request heads, the lean writer for event streams, hand-off to hyper for everything else |
//! | [`shutdown`] | the drain sequence and signal handling |
//! | [`telemetry`] | logs (text or JSON, with trace ids), the OTLP trace pipeline, trace context in and out of events |
//! | [`metrics`] | the Prometheus metrics of one hub and their exposition |
//!
//! A publish travels `http::publish` → [`hub::Hub::publish`] → [`backplane::Backplane::publish`]
//! (id, history) → [`backplane::FanOut`] ([`hub::LiveQueues`]) → each
//! subscriber's stream in `hub::subscription`, whose delivery
//! (`hub::delivery`) yields the event's frame — encoded once, at
//! acceptance — to the [`server`]'s lean writer, which writes it to the
//! subscriber's socket (no HTTP server in between once the stream is open;
//! see `server`'s module documentation).
//!
//! Observability follows the same path: `http::observe` opens the request's
//! server span (a child of the caller's `traceparent`), `hub::observe` the
//! accept span (whose trace context then travels on each [`model::Event`]),
//! the fan-out span (parented by that context, also across a backplane) and
//! one span per subscription, linked to the publishes where it resumed after
//! a gap. Counters are bumped at the same places, per batch on the hot path.

pub mod app;
pub mod auth;
pub mod backplane;
pub mod config;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod server;
pub mod setting;
pub mod shutdown;
pub mod telemetry;
