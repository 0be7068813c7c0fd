//! Test harness: the real server on port 0, a real HTTP client and a
//! spec-compliant SSE parser (`eventsource-stream`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use ssehub::app::App;
use ssehub::config::Config;
use ssehub::hub::Hub;
use ssehub::shutdown::DrainReport;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub hub: Hub,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<DrainReport>>>,
}

/// Test defaults: port 0, quick drain, otherwise the shipped defaults.
pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        drain: ssehub::config::DrainConfig {
            delay: Duration::ZERO,
            spread: Duration::from_millis(100),
            timeout: Duration::from_secs(5),
        },
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    config.validate().expect("test config is valid");
    let listener = std::net::TcpListener::bind(&config.listen).expect("bind port 0");
    let app = App::build(config, listener).await.expect("app builds");
    let addr = app.local_addr();
    let hub = app.hub().clone();
    let (shutdown, signal) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(async {
        let _ = signal.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(16)
            .build()
            .unwrap(),
        hub,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// `GET path` on the hub.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET request")
    }

    /// Publishes `data` to `topic`; returns the response.
    pub async fn publish_raw(&self, topic: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/v1/topics/{topic}/events")))
            .json(&body)
            .send()
            .await
            .expect("publish request")
    }

    /// Publishes `data` on `topic` straight through the hub, without HTTP:
    /// a loop of these outruns any subscriber (a flood, a lag).
    pub async fn publish_in_process(&self, topic: &str, data: String) {
        let draft = ssehub::model::EventDraft {
            topic: ssehub::model::TopicName::parse(topic).unwrap(),
            event_type: None,
            retry: None,
            data,
            trace: None,
            mirror: false,
        };
        self.hub.publish(vec![draft]).await.unwrap();
    }

    /// Publishes and returns the new event's id; panics unless 202.
    pub async fn publish(&self, topic: &str, data: Value) -> String {
        let response = self.publish_raw(topic, json!({ "data": data })).await;
        assert_eq!(response.status(), 202, "publish to {topic} failed");
        let body: Value = response.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn subscribe(&self, topics: &[&str]) -> Subscriber {
        self.subscribe_with(topics, None, None).await
    }

    /// Subscribes, optionally resuming by header or by query parameter.
    pub async fn subscribe_with(
        &self,
        topics: &[&str],
        last_event_id_header: Option<&str>,
        last_event_id_query: Option<&str>,
    ) -> Subscriber {
        let mut query: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
        if let Some(id) = last_event_id_query {
            query.push(("lastEventId", id));
        }
        let mut request = self.client.get(self.url("/v1/events")).query(&query);
        if let Some(id) = last_event_id_header {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("subscribe request");
        Subscriber::from_response(response).await
    }

    /// Sends the shutdown signal and waits for the drain to finish.
    pub async fn shut_down(mut self) -> DrainReport {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.server.take().unwrap())
            .await
            .expect("drain finishes")
            .expect("server task")
            .expect("server ran")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// An SSE client: the response must be 200 `text/event-stream`.
pub struct Subscriber {
    pub events: std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>,
}

impl Subscriber {
    pub async fn from_response(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|event| event.expect("well-formed SSE"));
        Self {
            events: Box::pin(events),
        }
    }

    /// The next event, or `None` if the stream ended or nothing came in time.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.events.next())
            .await
            .ok()
            .flatten()
    }

    pub async fn next(&mut self) -> Event {
        self.next_within(PATIENCE)
            .await
            .expect("an event within the test's patience")
    }

    pub async fn take(&mut self, count: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(count);
        for _ in 0..count {
            events.push(self.next().await);
        }
        events
    }
}

/// Reads a whole response body as text, up to `wait`; for streams the hub
/// ends by itself (shed, drain) and for raw wire checks.
pub async fn body_text(response: reqwest::Response, wait: Duration) -> String {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await;
    text
}

/// Reads raw SSE text until `until` matches or `wait` passes.
pub async fn read_until(
    response: reqwest::Response,
    wait: Duration,
    until: impl Fn(&str) -> bool,
) -> String {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    let _ = tokio::time::timeout(wait, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if until(&text) {
                break;
            }
        }
    })
    .await;
    text
}

/// Checks a problem+json answer and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "status");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], status);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:ssehub:problem:"),
        "{problem}"
    );
    assert!(!problem["detail"].as_str().unwrap().is_empty(), "{problem}");
    problem
}

/// One subscriber's view of its stream until the end.
pub struct StreamEnd {
    pub text: String,
    /// The body ended with HTTP/1.1's terminator rather than a cut connection.
    pub clean: bool,
    pub ended_at: std::time::Instant,
}

pub async fn read_to_end(response: reqwest::Response) -> StreamEnd {
    let mut text = String::new();
    let mut body = response.bytes_stream();
    let mut clean = true;
    let limit = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(limit);
    loop {
        tokio::select! {
            chunk = body.next() => match chunk {
                Some(Ok(bytes)) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
                Some(Err(_)) => { clean = false; break; }
                None => break,
            },
            _ = &mut limit => { clean = false; break; }
        }
    }
    StreamEnd {
        text,
        clean,
        ended_at: std::time::Instant::now(),
    }
}

/// Waits until `/readyz` says `ready` (200) or not (503).
pub async fn wait_ready(app: &TestApp, ready: bool) {
    let started = std::time::Instant::now();
    loop {
        let status = app.get("/readyz").await.status();
        if (status == 200) == ready {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "readiness stayed {status} (wanted ready = {ready})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `condition` until it holds or `limit` passes; returns how long it
/// took, or `None`.
pub async fn within<F, Fut>(limit: Duration, mut condition: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
