//! ssehub behind a real nginx (Debian package), run with the project's own
//! `nginx/` config on a free port and its own prefix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use ssehub::config::SubscribeAuth;

use crate::support::helpers::{PATIENCE, Subscriber, read_to_end, spawn_app_with};
use crate::support::jwt::{Minter, SECRET, claims};
use crate::support::process::HubProcess;

pub struct Nginx {
    addr: SocketAddr,
    child: Child,
    prefix: tempfile::TempDir,
}

/// Changes to `nginx/ssehub.conf` for a test: each replaces a line that
/// occurs exactly once outside comments (see nginx/README.md).
#[derive(Default)]
pub struct Variant {
    /// Turns buffering on for the stream location and for the whole server.
    pub buffering_on: bool,
    /// `proxy_read_timeout` of the stream location.
    pub read_timeout: Option<&'static str>,
    /// An HTML page nginx serves at `/browser-test.html` (same origin as
    /// the API, so the page needs no CORS).
    pub page: Option<&'static str>,
    /// Also serves ssehub under `/ssehub/`, with `nginx/snippet-prefix.conf`.
    pub path_prefix: bool,
    /// More servers in `upstream ssehub`, after the one `start` names (as
    /// with several replicas; nothing else of the config changes).
    pub more_upstreams: Vec<SocketAddr>,
}

fn nginx_binary() -> PathBuf {
    let candidates = ["/usr/sbin/nginx", "/usr/bin/nginx"];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("nginx is not installed: run scripts/install-test-deps.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn replace_once(config: &str, line: &str, with: &str) -> String {
    let hits = config.lines().filter(|l| l.trim() == line).count();
    assert_eq!(hits, 1, "`{line}` must occur once in nginx/ssehub.conf");
    config
        .lines()
        .map(|l| {
            if l.trim() == line {
                with.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Nginx {
    pub fn start(upstream: SocketAddr, variant: Variant) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx");
        let prefix = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut site = std::fs::read_to_string(root.join("ssehub.conf"))
            .unwrap()
            .replace(
                "server @SSEHUB_UPSTREAM@;",
                &std::iter::once(&upstream)
                    .chain(&variant.more_upstreams)
                    .map(|server| format!("server {server};"))
                    .collect::<Vec<_>>()
                    .join("\n    "),
            )
            .replace("@LISTEN_PORT@", &format!("127.0.0.1:{port}"));
        if variant.buffering_on {
            site = replace_once(&site, "proxy_buffering off;", "proxy_buffering on;");
            site = site.replacen(
                "server_name _;",
                "server_name _;\n    proxy_buffering on;",
                1,
            );
        }
        if let Some(timeout) = variant.read_timeout {
            site = replace_once(
                &site,
                "proxy_read_timeout 120s;",
                &format!("proxy_read_timeout {timeout};"),
            );
        }
        if let Some(page) = variant.page {
            std::fs::create_dir_all(prefix.path().join("html")).unwrap();
            std::fs::write(prefix.path().join("html/browser-test.html"), page).unwrap();
            site = site.replacen(
                "server_name _;",
                "server_name _;\n    location = /browser-test.html { root html; default_type text/html; }",
                1,
            );
        }
        if variant.path_prefix {
            std::fs::copy(
                root.join("snippet-prefix.conf"),
                prefix.path().join("snippet-prefix.conf"),
            )
            .unwrap();
            site = site.replacen(
                "server_name _;",
                "server_name _;\n    include snippet-prefix.conf;",
                1,
            );
        }
        std::fs::write(prefix.path().join("ssehub.conf"), site).unwrap();
        let main = std::fs::read_to_string(root.join("nginx.conf"))
            .unwrap()
            // One worker is plenty for a test and starts faster.
            .replace("worker_processes auto;", "worker_processes 1;");
        std::fs::write(prefix.path().join("nginx.conf"), main).unwrap();

        let prefix_arg = format!("{}/", prefix.path().display());
        let child = Command::new(nginx_binary())
            .args(["-p", &prefix_arg, "-c", "nginx.conf", "-e", "error.log"])
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(prefix.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            addr,
            child,
            prefix,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// What nginx wrote to its error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }

    /// What nginx wrote to its access log so far.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers; a
        // killed master would leave them running.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.prefix;
    }
}

async fn publish_via(client: &reqwest::Client, url: &str, data: serde_json::Value) -> String {
    let response = client
        .post(url)
        .json(&json!({ "data": data }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Publishes through nginx and times each event's arrival at a subscriber
/// that is also behind nginx; returns the latencies.
async fn latencies_through(nginx: &Nginx) -> Vec<Duration> {
    let client = reqwest::Client::new();
    let response = client
        .get(nginx.url("/v1/events?topic=latency"))
        .send()
        .await
        .unwrap();
    // nginx consumes X-Accel-Buffering (it acts on it, it doesn't forward it).
    assert!(response.headers().get("x-accel-buffering").is_none());
    let mut subscriber = Subscriber::from_response(response).await;
    let mut latencies = Vec::new();
    for n in 0..10 {
        let sent = Instant::now();
        publish_via(&client, &nginx.url("/v1/topics/latency/events"), json!(n)).await;
        let event = subscriber.next().await;
        latencies.push(sent.elapsed());
        assert_eq!(event.data, n.to_string());
    }
    latencies.sort();
    latencies
}

#[tokio::test]
async fn events_pass_through_nginx_at_once() {
    let app = spawn_app_with(|_| {}).await;
    let nginx = Nginx::start(app.addr, Variant::default());
    let latencies = latencies_through(&nginx).await;
    println!("publish→event through nginx: {latencies:?}");
    let median = latencies[latencies.len() / 2];
    assert!(median < Duration::from_millis(100), "median {median:?}");
}

#[tokio::test]
async fn x_accel_buffering_wins_over_proxy_buffering_on() {
    let app = spawn_app_with(|_| {}).await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            buffering_on: true,
            ..Variant::default()
        },
    );
    let latencies = latencies_through(&nginx).await;
    println!("publish→event through nginx with proxy_buffering on: {latencies:?}");
    let median = latencies[latencies.len() / 2];
    assert!(median < Duration::from_millis(100), "median {median:?}");
}

/// Holds a stream through nginx idle for `idle`, then checks whether it is
/// still open by publishing one event.
async fn survives_idle(heartbeat: Duration, idle: Duration) -> bool {
    let app = spawn_app_with(|c| c.heartbeat.interval = heartbeat).await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            read_timeout: Some("2s"),
            ..Variant::default()
        },
    );
    let client = reqwest::Client::new();
    let response = client
        .get(nginx.url("/v1/events?topic=idle"))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + idle;
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => break,
            Ok(Some(Ok(chunk))) => text.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(_) => return false,
        }
    }
    app.publish("idle", json!("still here")).await;
    let rest = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if text.contains("still here") {
                return true;
            }
        }
        false
    })
    .await;
    rest.unwrap_or(false)
}

#[tokio::test]
async fn a_heartbeat_keeps_an_idle_stream_open_past_proxy_read_timeout() {
    assert!(
        survives_idle(Duration::from_millis(500), Duration::from_secs(5)).await,
        "the stream died although heartbeats (0.5 s) beat proxy_read_timeout (2 s)"
    );
}

#[tokio::test]
async fn without_heartbeats_nginx_closes_the_idle_stream() {
    // The control: the test above would pass for the wrong reason if nginx
    // did not enforce its timeout.
    assert!(
        !survives_idle(Duration::ZERO, Duration::from_secs(5)).await,
        "nginx kept a silent stream open past proxy_read_timeout"
    );
}

#[tokio::test]
async fn last_event_id_resume_works_through_nginx() {
    let app = spawn_app_with(|_| {}).await;
    let nginx = Nginx::start(app.addr, Variant::default());
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(publish_via(&client, &nginx.url("/v1/topics/r/events"), json!(n)).await);
    }
    let response = client
        .get(nginx.url("/v1/events?topic=r"))
        .header("Last-Event-ID", &ids[1])
        .send()
        .await
        .unwrap();
    let mut subscriber = Subscriber::from_response(response).await;
    let replayed: Vec<_> = subscriber.take(3).await.into_iter().map(|e| e.id).collect();
    assert_eq!(replayed, ids[2..]);
    let query = client
        .get(nginx.url(&format!("/v1/events?topic=r&lastEventId={}", ids[3])))
        .send()
        .await
        .unwrap();
    let mut subscriber = Subscriber::from_response(query).await;
    assert_eq!(subscriber.next().await.id, ids[4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ends_streams_cleanly_through_nginx() {
    let hub = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "500ms"),
    ]);
    let nginx = Nginx::start(hub.addr, Variant::default());
    let client = reqwest::Client::new();
    let response = client
        .get(nginx.url("/v1/events?topic=d"))
        .send()
        .await
        .unwrap();
    publish_via(&client, &nginx.url("/v1/topics/d/events"), json!("before")).await;
    hub.signal("TERM");
    let end = read_to_end(response).await;
    // nginx passes a clean end on; a cut upstream would make it cut the
    // client's response too.
    assert!(end.clean, "the stream was cut: {:?}", end.text);
    assert!(end.text.contains("data: before\n"), "{:?}", end.text);
    assert!(
        end.text.ends_with("\n\n") && end.text.contains("\nretry: "),
        "{:?}",
        end.text
    );
    let (status, _, _) = hub.exit_within(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_replica_closes_nginx_pooled_connections_so_publishes_go_to_the_other() {
    let mut draining = HubProcess::start(&[
        ("SSEHUB_DRAIN__DELAY", "0s"),
        ("SSEHUB_DRAIN__SPREAD", "4s"),
    ]);
    let other = HubProcess::start(&[]);
    // The project's config as it ships (a 503 is passed on to the client,
    // not retried), with both replicas in the upstream.
    let nginx = Nginx::start(
        draining.addr,
        Variant {
            more_upstreams: vec![other.addr],
            ..Variant::default()
        },
    );
    let client = reqwest::Client::new();
    let url = nginx.url("/v1/topics/pool/events");
    // nginx's pool now holds idle connections to both replicas.
    for i in 0..10 {
        publish_via(&client, &url, json!(i)).await;
    }
    // Streams on the draining replica keep its drain going for the spread.
    let mut streams = Vec::new();
    for _ in 0..6 {
        let response = client
            .get(draining.url("/v1/events?topic=pool"))
            .send()
            .await
            .unwrap();
        streams.push(tokio::spawn(read_to_end(response)));
    }
    draining.signal("TERM");
    draining.wait_until_refused().await;
    // nginx sees the pooled connections close as they close.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut statuses = Vec::new();
    for i in 0..20 {
        let response = client.post(&url).json(&json!({ "data": i })).send().await;
        statuses.push(response.unwrap().status().as_u16());
    }
    assert!(
        draining.wait_exit(Duration::from_millis(1)).is_none(),
        "the replica finished its drain before the publishes: the test showed nothing"
    );
    // Before, each publish nginx sent to the draining replica went over a
    // pooled connection to it and came back 503.
    assert!(
        statuses.iter().all(|&status| status == 202),
        "publishes during the other replica's drain: {statuses:?}"
    );
    for stream in streams {
        assert!(stream.await.unwrap().clean);
    }
    let (status, _, _) = draining.exit_within(Duration::from_secs(15)).await;
    assert_eq!(status.code(), Some(0));
}

/// Subscribes through `nginx` at `path` (`/v1/events` or the prefixed one)
/// with `token` in the query; returns the status.
async fn subscribe_with_token(nginx: &Nginx, path: &str, token: Option<&str>) -> u16 {
    let mut query = vec![("topic", "private")];
    if let Some(token) = token {
        query.push(("access_token", token));
    }
    let response = reqwest::Client::new()
        .get(nginx.url(path))
        .query(&query)
        .timeout(PATIENCE)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn a_subscribers_token_stays_out_of_nginx_error_log() {
    let minter = Minter::hs256(SECRET);
    let token = minter.token(&claims("alice", &[], &["private"], 600));
    let publisher = minter.token(&claims("publisher", &["private"], &[], 600));
    // The upstream is down: every request is an upstream error nginx logs.
    let nothing_there = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let nginx = Nginx::start(
        nothing_there,
        Variant {
            path_prefix: true,
            ..Variant::default()
        },
    );
    for path in ["/v1/events", "/event-stream", "/ssehub/v1/events"] {
        assert_eq!(subscribe_with_token(&nginx, path, Some(&token)).await, 502);
    }
    // The control: a request without a token is logged as before.
    assert_eq!(subscribe_with_token(&nginx, "/v1/events", None).await, 502);
    let errors = nginx.error_log();
    assert!(
        errors.contains("connect() failed") && errors.contains("topic=private"),
        "nginx logged no upstream error at all:\n{errors}"
    );
    assert!(
        !errors.contains(&token),
        "a subscriber token in nginx's error.log:\n{errors}"
    );
    assert!(!nginx.access_log().contains(&token));
    println!(
        "nginx error.log with the upstream down: {} line(s), none with the token",
        errors.lines().count()
    );

    // With the upstream up, the token still reaches the hub and is checked.
    let app = spawn_app_with(|config| {
        config.auth.jwt.secret = Some(SECRET.to_owned());
        config.auth.subscribe = SubscribeAuth::Jwt;
    })
    .await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            path_prefix: true,
            ..Variant::default()
        },
    );
    for path in ["/v1/events", "/ssehub/v1/events"] {
        assert_eq!(
            subscribe_with_token(&nginx, path, None).await,
            401,
            "{path}"
        );
        let response = reqwest::Client::new()
            .get(nginx.url(path))
            .query(&[("topic", "private"), ("access_token", &token)])
            .send()
            .await
            .unwrap();
        let mut subscriber = Subscriber::from_response(response).await;
        let published = reqwest::Client::new()
            .post(app.url("/v1/topics/private/events"))
            .bearer_auth(&publisher)
            .json(&json!({ "data": path }))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 202);
        assert_eq!(subscriber.next().await.data, path);
    }
}
