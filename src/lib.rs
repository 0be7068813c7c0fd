//! ssehub: a Server-Sent Events fan-out hub.
//!
//! Backends publish events over HTTP; browsers subscribe over SSE and get
//! every event of their topics, in order, resumable after a reconnect, with
//! nothing lost silently.
//!
//! # Architecture
//!
//! Top to bottom; **imports run one way, downwards**: a module imports only
//! modules below it in this table, never one above, so the modules can be
//! read bottom-up. [`model`] and [`metrics`] (like [`setting`]) import
//! nothing of ours. A test at the end of this file checks the rule from the
//! sources.
//!
//! | module | owns |
//! | --- | --- |
//! | [`app`] | building in order around an already bound listener: the metric families, hub and backplane, auth, routes, the HTTP server; serving until the drain; the `ssehub token` command |
//! | [`config`] | the root configuration: composes each part's settings, its layers (defaults < TOML < `SSEHUB_*`), `ConfigError` (wrapping a part's [`setting::InvalidSetting`]), masking |
//! | [`http`] | thin poem/poem-openapi handlers: publish, subscribe (SSE), tutorial routes, probes, `/v1/stats`, the console at `/` (assets embedded), the Mercure protocol at `/.well-known/mercure` (`http::mercure`, when `mercure.enabled`: its updates ride the internal topic `~mercure`, filtered per subscriber, and meet the ssehub topics their topics name; with `mercure.subscriptions`, its subscriptions' events and API), problem+json errors (and the refusal [`server`] sends for a bad head), its settings (CORS, console, tutorial topic) |
//! | [`shutdown`] | the drain sequence and the stop order after it, the signals (the first drains, a second exits at once), the drain settings |
//! | [`hub`] | the domain core: the topics' live queues (whole, or routed by keys an event names, for Mercure's exact topics), subscriptions and their delivery logic (with an optional per-subscription frame filter, for Mercure), the writer shards that hold idle live streams without a task each (`stream.shards`), drain state, shedding (the one answer to a subscribe not served now), its metric families and the order every family is registered in; the hub tests and benchmarks build (`hub::testing`, behind the `testing` feature). No HTTP, no Redis |
//! | [`auth`] | who may publish, subscribe and read metrics: static keys, JWT verification (secret, PEM key, JWKS kept fresh) and minting, topic patterns, grants, rate limits, the client address behind trusted proxies; its settings (checked and parsed once into the `AuthSettings` the `Authenticator` is built from) and metric families. No HTTP types |
//! | [`backplane`] | where ids, history, idempotency records and presence (what each replica holds open: Mercure's active subscriptions, listed cluster-wide) come from — `memory` (one process) or `redis` (replicas sharing one Redis: scripts, pub/sub reader, resync, the wire form of an event, the master found directly or through Sentinel, `WAIT` for `replicas_ack`) — the trait, the fan-out contract, `connect` from its settings, the background `run`, its metric families |
//! | [`server`] | the HTTP/1 front: the `listen` address and the listening socket (bound, or inherited via `LISTEN_FDS`) and an acceptor the drain can stop, accept loop, request heads, the stream writer for event streams (and the connections their sources park: `EventSource`, `ParkedConnection`), hyper for every other answer (`via_hyper`) |
//! | [`telemetry`] | logs (text or JSON, with trace ids), the OTLP trace pipeline, its settings; trace context in and out of request headers and events (`propagation`, the part `hub` and `http` use) |
//! | [`setting`] | `InvalidSetting`, what a part's settings check returns |
//! | [`metrics`] | registry helpers, buckets, labelled families, the exposition |
//! | [`model`] | the shared vocabulary: topic names, event ids and resume points, events (and the mark of a protocol's mirror), trace context, idempotency keys and their digests, the SSE wire format (with the gap reasons) |
//!
//! A publish travels `http::publish` → [`hub::Hub::publish_once`] (a keyed
//! publish in flight here is refused) → [`backplane::Backplane::publish`]
//! (its idempotency record looked up and kept in the same atomic step as
//! the id and history) → [`backplane::FanOut`] ([`hub::LiveQueues`]) → each
//! subscriber's stream in `hub::subscription`, whose delivery
//! (`hub::delivery`) yields the event's frame — encoded once, at
//! acceptance — to the [`server`]'s stream writer, which writes it to the
//! subscriber's socket (no HTTP server in between once the stream is open;
//! see `server`'s module documentation); or, for an idle live stream
//! parked on a writer shard (`hub::shards`: the stream then a compact slab
//! entry, its task gone), the shard reads the topic's queue once and
//! writes the frame to each of its streams.
//!
//! Observability follows the same path: `http::request_span` opens the request's
//! server span (a child of the caller's `traceparent`), `hub::spans` the
//! accept span (whose trace context then travels on each [`model::Event`]),
//! the fan-out span (parented by that context, also across a backplane) and
//! one span per subscription, linked to the publishes where it resumed after
//! a gap. Counters are bumped at the same places, per batch on the hot path;
//! a publish's outcome is decided and counted in `http::publish_outcome`.
//!
//! The source layout, directory by directory, is the book's Development page
//! (`docs/src/development.md`, "Development"): a module added, moved or
//! renamed here is changed there too.

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The modules of the map above, top to bottom: each may import only
    /// those after it.
    const ORDER: [&str; 12] = [
        "app",
        "config",
        "http",
        "shutdown",
        "hub",
        "auth",
        "backplane",
        "server",
        "telemetry",
        "setting",
        "metrics",
        "model",
    ];

    /// The text without its `#[cfg(test)] mod name { … }` blocks: a test
    /// may import what it likes.
    fn without_test_modules(text: &str) -> String {
        let mut kept = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(at) = rest.find("#[cfg(test)]") {
            let after = rest[at + "#[cfg(test)]".len()..].trim_start();
            let after = after.strip_prefix("pub ").unwrap_or(after).trim_start();
            let opens_block = after.strip_prefix("mod ").is_some_and(|name| {
                let name_end = name
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(name.len());
                name[name_end..].trim_start().starts_with('{')
            });
            kept.push_str(&rest[..at]);
            if !opens_block {
                kept.push_str("#[cfg(test)]");
                rest = &rest[at + "#[cfg(test)]".len()..];
                continue;
            }
            let open = at + rest[at..].find('{').expect("a block");
            let mut depth = 0usize;
            let mut end = rest.len();
            for (offset, c) in rest[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + offset + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            rest = &rest[end..];
        }
        kept.push_str(rest);
        kept
    }

    /// The top-level modules a source text names after `crate::`, also
    /// inside `use crate::{…}` groups.
    fn imports(text: &str) -> BTreeSet<&'static str> {
        let mut named = BTreeSet::new();
        for (at, _) in text.match_indices("crate::") {
            let rest = &text[at + "crate::".len()..];
            let scope = match rest.strip_prefix('{') {
                Some(group) => &group[..group.find('}').unwrap_or(group.len())],
                None => rest,
            };
            let words = scope.split(|c: char| !(c.is_alphanumeric() || c == '_'));
            let words: Vec<&str> = if rest.starts_with('{') {
                words.collect()
            } else {
                words.take(1).collect()
            };
            for word in words {
                if let Some(module) = ORDER.iter().find(|module| **module == word) {
                    named.insert(*module);
                }
            }
        }
        named
    }

    fn sources(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }

    #[test]
    fn imports_run_one_way_down_the_map() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for path in files {
            let relative = path.strip_prefix(&src).unwrap();
            let top = relative.components().next().unwrap().as_os_str();
            let top = top.to_str().unwrap().trim_end_matches(".rs");
            if top == "lib" || top == "main" {
                continue;
            }
            let Some(rank) = ORDER.iter().position(|module| *module == top) else {
                wrong.push(format!("{top} is not in the map of src/lib.rs"));
                continue;
            };
            let is_test_file = relative.ends_with("tests.rs")
                || relative
                    .components()
                    .any(|part| part.as_os_str() == "tests");
            if is_test_file {
                continue;
            }
            let text = without_test_modules(&std::fs::read_to_string(&path).unwrap());
            for module in imports(&text) {
                let below = ORDER.iter().position(|m| *m == module).unwrap();
                if below < rank {
                    wrong.push(format!("{} imports {module}", relative.display()));
                }
            }
        }
        assert!(wrong.is_empty(), "imports that run upwards: {wrong:#?}");
    }
}
