//! A real browser (headless Chromium, driven over WebDriver by chromedriver)
//! subscribes with `EventSource` through nginx, loses its connection, and
//! resumes with `Last-Event-ID` without missing or repeating an event.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::nginx::{Nginx, Variant};
use crate::support::helpers::spawn_app_with;

/// The page nginx serves: it subscribes and records what the browser sees.
const PAGE: &str = r#"<!doctype html><title>ssehub</title><script>
window.state = { events: [], opens: 0, errors: 0 };
const source = new EventSource('/v1/events?topic=browser');
source.onopen = () => { state.opens += 1; };
source.onerror = () => { state.errors += 1; };
source.onmessage = (e) => { state.events.push([e.lastEventId, e.data]); };
source.addEventListener('gap', (e) => { state.events.push(['gap', e.data]); });
</script>"#;

pub(crate) struct ChromeDriver {
    child: Child,
    url: String,
    client: reqwest::Client,
    pub(crate) session: Option<String>,
    _profile: tempfile::TempDir,
}

fn require(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: run scripts/install-test-deps.sh (Debian packages chromium, chromium-driver)"
    );
    path
}

impl ChromeDriver {
    pub(crate) async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Its own process group, so that Drop can stop the browser that
        // chromedriver starts along with it.
        let child = Command::new(require("/usr/bin/chromedriver"))
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            let ready = client.get(format!("{url}/status")).send().await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    break;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver not ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut driver = Self {
            child,
            url,
            client,
            session: None,
            _profile: profile,
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", driver._profile.path().display()),
        ];
        let session = driver
            .call(
                "POST",
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": require("/usr/bin/chromium"), "args": args},
                }}}),
            )
            .await;
        driver.session = Some(session["sessionId"].as_str().expect("a session").to_owned());
        driver
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.url);
        let request = match method {
            "POST" => self.client.post(url).json(&body),
            "DELETE" => self.client.delete(url),
            _ => self.client.get(url),
        };
        let response: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            response["value"].get("error").is_none(),
            "WebDriver error: {response}"
        );
        response["value"].clone()
    }

    pub(crate) async fn open(&self, url: &str) {
        let session = self.session.as_deref().unwrap();
        self.call(
            "POST",
            &format!("/session/{session}/url"),
            json!({ "url": url }),
        )
        .await;
    }

    /// Runs `return <expression>` in the page.
    pub(crate) async fn eval(&self, expression: &str) -> Value {
        let session = self.session.as_deref().unwrap();
        self.call(
            "POST",
            &format!("/session/{session}/execute/sync"),
            json!({"script": format!("return {expression};"), "args": []}),
        )
        .await
    }

    /// Polls `expression` until `done` says so.
    pub(crate) async fn wait_for(&self, expression: &str, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let value = self.eval(expression).await;
            if done(&value) {
                return value;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "timed out waiting on {expression}: {value}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // SAFETY: plain syscall; the group is the one created at spawn.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_resumes_after_losing_its_connection_without_loss_or_duplicates() {
    // No heartbeat, so nginx's 1 s proxy_read_timeout cuts the idle stream;
    // a 2 s retry keeps the browser away long enough to publish meanwhile.
    let app = spawn_app_with(|c| {
        c.heartbeat.interval = Duration::ZERO;
        c.stream.retry = Duration::from_secs(2);
    })
    .await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            read_timeout: Some("1s"),
            page: Some(PAGE),
            ..Variant::default()
        },
    );
    let browser = ChromeDriver::start().await;
    browser.open(&nginx.url("/browser-test.html")).await;
    browser.wait_for("state.opens", |v| v == 1).await;

    let mut published = Vec::new();
    for n in 0..3 {
        published.push(app.publish("browser", json!(format!("before {n}"))).await);
    }
    browser.wait_for("state.events.length", |v| v == 3).await;

    // nginx cuts the idle stream; while the browser waits to reconnect,
    // more events are published: they can only arrive by resume.
    browser
        .wait_for("state.errors", |v| v.as_u64() >= Some(1))
        .await;
    assert_eq!(browser.eval("state.opens").await, 1, "still disconnected");
    for n in 0..3 {
        published.push(
            app.publish("browser", json!(format!("while away {n}")))
                .await,
        );
    }
    browser
        .wait_for("state.opens", |v| v.as_u64() >= Some(2))
        .await;
    let events = browser
        .wait_for("state.events", |v| v.as_array().unwrap().len() >= 6)
        .await;

    let ids: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| pair[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, published, "every event once, in order, no gap frame");
    let data: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[1].clone())
        .collect();
    assert_eq!(data[3], "while away 0");
}
