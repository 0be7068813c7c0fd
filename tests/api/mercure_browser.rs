//! Chromium's `EventSource` subscribes to the Mercure hub through nginx from
//! a page of another origin, as a Mercure application's page does: with
//! `withCredentials`, and the subscriber token in the `mercureAuthorization`
//! cookie that the application's server sets for the hub's domain (Mercure's
//! "authorization" docs: `Path=/.well-known/mercure; HttpOnly;
//! SameSite=Strict`). An anonymous page gets public updates and never a
//! private one; the cookie opens exactly the private updates its token
//! covers.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::ChromeDriver;
use crate::mercure_nginx::{HUB_PATH, enable_mercure, mercure_publish, subscriber_token};
use crate::nginx::{Nginx, Variant};
use crate::support::helpers::spawn_app_with;

/// The application's page: `?hub=` names the hub, each `topic=` one
/// selector; it records every update the browser delivers.
const PAGE: &str = r#"<!doctype html><title>Mercure</title><script>
const params = new URLSearchParams(location.search);
window.state = { events: [], opens: 0, errors: 0 };
const hub = new URL(params.get('hub'));
for (const topic of params.getAll('topic')) hub.searchParams.append('topic', topic);
const source = new EventSource(hub, { withCredentials: true });
source.onopen = () => { state.opens += 1; };
source.onerror = () => { state.errors += 1; };
source.onmessage = (e) => { state.events.push(e.data); };
</script>"#;

/// Serves [`PAGE`] on its own port (another origin than nginx's, on the same
/// host: a cookie is per host, not per port, as the application's cookie is
/// per domain). `/with-cookie` sets the `mercureAuthorization` cookie with
/// `token`, as the application's server does when it renders the page;
/// `/logout` clears it; `/anonymous` leaves cookies as they are.
async fn serve_application(token: String) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let token = token.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let cookie = if head.starts_with(b"GET /with-cookie") {
                    format!(
                        "set-cookie: mercureAuthorization={token}; Path={HUB_PATH}; HttpOnly; SameSite=Strict\r\n"
                    )
                } else if head.starts_with(b"GET /logout") {
                    format!("set-cookie: mercureAuthorization=; Path={HUB_PATH}; Max-Age=0\r\n")
                } else {
                    String::new()
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n{cookie}content-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, task)
}

fn page_url(application: SocketAddr, path: &str, hub: &str, topics: &[&str]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("hub", hub);
    for topic in topics {
        query.append_pair("topic", topic);
    }
    format!("http://{application}{path}?{}", query.finish())
}

const BOOK: &str = "https://example.com/books/1";
const ALICE: &str = "https://example.com/users/42";
const BOB: &str = "https://example.com/users/43";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_gets_public_updates_and_only_the_private_ones_its_cookie_covers() {
    // Alice's token covers her own topic only.
    let (application, _server) = serve_application(subscriber_token(&[ALICE])).await;
    let origin = format!("http://{application}");
    let app = spawn_app_with(|config| {
        enable_mercure(config, true);
        config.cors.allowed_origins = vec![origin.clone()];
        config.cors.allow_credentials = true;
    })
    .await;
    let nginx = Nginx::start(app.addr, Variant::default());
    let hub = nginx.url(HUB_PATH);
    let publish = |topic: &'static str, data: &'static str, private: bool| {
        let hub = hub.clone();
        async move {
            let mut fields = vec![("topic", topic), ("data", data)];
            if private {
                fields.push(("private", "on"));
            }
            let response = mercure_publish(&hub, &fields).await;
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
        }
    };
    let browser = ChromeDriver::start().await;

    // An anonymous page: public updates only. The public update published
    // after the private one shows the private one had its chance to arrive.
    browser
        .open(&page_url(application, "/anonymous", &hub, &[BOOK, ALICE]))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    publish(BOOK, "public book", false).await;
    publish(ALICE, "private to alice, seen by nobody anonymous", true).await;
    publish(BOOK, "public after the private", false).await;
    let events = browser
        .wait_for("state.events", |v| v.as_array().unwrap().len() >= 2)
        .await;
    assert_eq!(events, json!(["public book", "public after the private"]));

    // The application's page that sets Alice's cookie: her private update
    // arrives, Bob's (which her token doesn't cover) doesn't, though her
    // URI template selects both topics.
    browser
        .open(&page_url(
            application,
            "/with-cookie",
            &hub,
            &["https://example.com/users/{id}", BOOK],
        ))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    publish(BOB, "private to bob", true).await;
    publish(ALICE, "private to alice", true).await;
    publish(BOOK, "public to everyone", false).await;
    let events = browser
        .wait_for("state.events", |v| v.as_array().unwrap().len() >= 2)
        .await;
    assert_eq!(events, json!(["private to alice", "public to everyone"]));

    // Without the cookie again (the application's logout clears it), the
    // same selectors bring public updates only.
    browser
        .open(&page_url(
            application,
            "/logout",
            &hub,
            &["https://example.com/users/{id}", BOOK],
        ))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    publish(ALICE, "private to alice, after logout", true).await;
    publish(BOOK, "public after logout", false).await;
    let events = browser
        .wait_for("state.events", |v| !v.as_array().unwrap().is_empty())
        .await;
    assert_eq!(events, json!(["public after logout"]));
}
