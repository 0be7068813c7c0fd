//! Chromium's `EventSource` on a page of another origin subscribes to a
//! private topic through nginx, with its token in the `access_token` query
//! parameter and in a cookie (`withCredentials`), and gives up on a 401.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use ssehub::config::SubscribeAuth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::ChromeDriver;
use crate::nginx::{Nginx, Variant};
use crate::support::helpers::spawn_app_with;
use crate::support::jwt::{Minter, SECRET, claims};

const STATIC_KEY: &str = "static-publisher-key-for-the-browser-test";

/// The page: its query names the API, the topic, and where the token goes.
const PAGE: &str = r#"<!doctype html><title>ssehub auth</title><script>
const params = new URLSearchParams(location.search);
const mode = params.get('mode');
window.state = { events: [], opens: 0, errors: 0, readyState: -1 };
let url = params.get('api') + '/v1/events?topic=' + encodeURIComponent(params.get('topic'));
if (mode === 'query') url += '&access_token=' + encodeURIComponent(params.get('token'));
const source = new EventSource(url, { withCredentials: mode === 'cookie' });
source.onopen = () => { state.opens += 1; };
source.onerror = () => { state.errors += 1; state.readyState = source.readyState; };
source.onmessage = (e) => { state.events.push(e.data); };
// The hub ends a stream at its token's exp with this frame: a real page
// fetches a new token here and reopens with lastEventId.
source.addEventListener('token_expired', (e) => { state.expired = JSON.parse(e.data); source.close(); });
</script>"#;

/// Serves [`PAGE`] on its own port: another origin than nginx's.
async fn serve_page() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 2048];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (addr, task)
}

fn page_url(page: SocketAddr, api: &str, topic: &str, mode: &str, token: &str) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("api", api)
        .append_pair("topic", topic)
        .append_pair("mode", mode)
        .append_pair("token", token)
        .finish();
    format!("http://{page}/?{query}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_another_origin_subscribes_with_a_token_in_the_query_or_a_cookie() {
    let (page, _page_server) = serve_page().await;
    let page_origin = format!("http://{page}");
    let app = spawn_app_with(|config| {
        config.auth.jwt.secret = Some(SECRET.to_owned());
        config.auth.publish_keys = vec![STATIC_KEY.to_owned()];
        config.auth.subscribe = SubscribeAuth::Jwt;
        config.cors.allowed_origins = vec![page_origin.clone()];
        config.cors.allow_credentials = true;
    })
    .await;
    let nginx = Nginx::start(app.addr, Variant::default());
    let api = nginx.url("");
    let token = Minter::hs256(SECRET).token(&claims("42", &[], &["user.{sub}"], 300));
    let browser = ChromeDriver::start().await;
    let publish = |data: &'static str| {
        app.client
            .post(app.url("/v1/topics/user.42/events"))
            .bearer_auth(STATIC_KEY)
            .json(&json!({ "data": data }))
            .send()
    };

    // The token in the query string.
    browser
        .open(&page_url(page, &api, "user.42", "query", &token))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    assert_eq!(publish("by query").await.unwrap().status(), 202);
    let events = browser
        .wait_for("state.events", |v| !v.as_array().unwrap().is_empty())
        .await;
    assert_eq!(events, json!(["by query"]));

    // The token in a cookie of the API's host, sent by `withCredentials`.
    browser.open(&nginx.url("/healthz")).await;
    let session = browser.session.clone().unwrap();
    browser
        .call(
            "POST",
            &format!("/session/{session}/cookie"),
            json!({"cookie": {"name": "ssehub_token", "value": token, "path": "/"}}),
        )
        .await;
    browser
        .open(&page_url(page, &api, "user.42", "cookie", ""))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    assert_eq!(publish("by cookie").await.unwrap().status(), 202);
    let events = browser
        .wait_for("state.events", |v| !v.as_array().unwrap().is_empty())
        .await;
    assert_eq!(events, json!(["by cookie"]));

    // Another subject's topic: 403, and EventSource gives up (CLOSED = 2)
    // instead of retrying a request that can't succeed.
    browser
        .open(&page_url(page, &api, "user.43", "cookie", ""))
        .await;
    let state: Value = browser.wait_for("state", |v| v["readyState"] == 2).await;
    assert_eq!(state["opens"], 0, "{state}");

    // A token that expires while the page listens: the page sees the
    // `token_expired` frame (and closes the stream itself).
    let exp = crate::support::jwt::now() + 2;
    let mut short = claims("42", &[], &["user.{sub}"], 0);
    short["exp"] = json!(exp);
    let short = Minter::hs256(SECRET).token(&short);
    browser
        .open(&page_url(page, &api, "user.42", "query", &short))
        .await;
    browser.wait_for("state.opens", |v| v == 1).await;
    let expired = browser
        .wait_for("state.expired || null", |v| !v.is_null())
        .await;
    assert_eq!(expired, json!({"reason": "token_expired", "exp": exp}));

    // Neither the ssehub log nor nginx's access log holds the token.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let access_log = nginx.access_log();
    assert!(access_log.contains("/v1/events"), "{access_log}");
    assert!(
        !access_log.contains(&token),
        "nginx logged the token: {access_log}"
    );
    assert!(!access_log.contains("access_token"), "{access_log}");
}
