//! The Mercure hub (`/.well-known/mercure`) behind a real nginx with the
//! project's `nginx/` config: the stream is served by the SSE location
//! (buffering off, its read timeout, heartbeats keep it open), the form
//! publish passes with the publish body limit, and a subscriber's
//! `?authorization=` token stays out of nginx's error log.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use ssehub::config::Config;

use crate::nginx::{Nginx, Variant};
use crate::support::helpers::{PATIENCE, Subscriber, spawn_app_with};
use crate::support::jwt::Minter;

pub(crate) const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
pub(crate) const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
pub(crate) const HUB_PATH: &str = "/.well-known/mercure";

/// Turns the Mercure hub on with both keys.
pub(crate) fn enable_mercure(config: &mut Config, anonymous: bool) {
    config.mercure.enabled = true;
    config.mercure.anonymous = anonymous;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

/// A draft-07 publisher token whose `mercure.publish` is `publish`.
pub(crate) fn publisher_token(publish: &[&str]) -> String {
    Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"publish": publish}}))
}

/// A draft-07 subscriber token whose `mercure.subscribe` is `subscribe`.
pub(crate) fn subscriber_token(subscribe: &[&str]) -> String {
    Minter::hs256(SUBSCRIBER_KEY).token(&json!({"mercure": {"subscribe": subscribe}}))
}

/// A form body from pairs, encoded as a browser would.
pub(crate) fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Publishes `fields` to the hub at `url` with a token that may publish
/// anything; returns the response.
pub(crate) async fn mercure_publish(url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(publisher_token(&["*"]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .unwrap()
}

fn subscribe_url(nginx: &Nginx, pairs: &[(&str, &str)]) -> String {
    format!("{}?{}", nginx.url(HUB_PATH), form(pairs))
}

#[tokio::test]
async fn mercure_updates_pass_through_nginx_with_their_fields() {
    let app = spawn_app_with(|config| enable_mercure(config, true)).await;
    let nginx = Nginx::start(app.addr, Variant::default());
    let topic = "https://example.com/books/1";
    let response = reqwest::Client::new()
        .get(subscribe_url(
            &nginx,
            &[("topic", "https://example.com/books/{id}")],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // nginx acts on X-Accel-Buffering (it doesn't forward it).
    assert!(response.headers().get("x-accel-buffering").is_none());
    let mut subscriber = Subscriber::from_response(response).await;
    let mut latencies = Vec::new();
    for n in 0..10 {
        let data = format!("update {n}");
        let sent = Instant::now();
        let published = mercure_publish(
            &nginx.url(HUB_PATH),
            &[("topic", topic), ("data", &data), ("type", "book")],
        )
        .await;
        assert_eq!(published.status(), 200);
        let id = published.text().await.unwrap();
        let event = subscriber.next().await;
        latencies.push(sent.elapsed());
        assert_eq!(
            (event.id, event.event, event.data),
            (id, "book".into(), data)
        );
    }
    // A figure, not an assertion: the machine may be busy.
    latencies.sort();
    println!(
        "Mercure publish→update through nginx: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

/// Holds a Mercure stream through nginx (`proxy_read_timeout 2s` in the
/// SSE location) idle for 5 s, then checks whether it is still open by
/// publishing one update.
async fn mercure_stream_survives_idle(heartbeat: Duration) -> bool {
    let app = spawn_app_with(|config| {
        enable_mercure(config, true);
        config.heartbeat.interval = heartbeat;
    })
    .await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            read_timeout: Some("2s"),
            ..Variant::default()
        },
    );
    let response = reqwest::Client::new()
        .get(subscribe_url(&nginx, &[("topic", "idle")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, body.next()).await {
            Err(_) => break,
            Ok(Some(Ok(chunk))) => text.push_str(std::str::from_utf8(&chunk).unwrap()),
            Ok(_) => return false,
        }
    }
    let published = mercure_publish(
        &app.url(HUB_PATH),
        &[("topic", "idle"), ("data", "still here")],
    )
    .await;
    assert_eq!(published.status(), 200);
    tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(std::str::from_utf8(&chunk).unwrap());
            if text.contains("still here") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn the_mercure_stream_is_served_by_the_sse_location() {
    // The control: nginx's own default read timeout is 60 s, so a silent
    // Mercure stream closed after 2 s proves the SSE location serves it.
    assert!(
        !mercure_stream_survives_idle(Duration::ZERO).await,
        "a silent Mercure stream outlived the SSE location's 2 s proxy_read_timeout: \
         /.well-known/mercure is not served by it"
    );
    assert!(
        mercure_stream_survives_idle(Duration::from_millis(500)).await,
        "the Mercure stream died although heartbeats (0.5 s) beat proxy_read_timeout (2 s)"
    );
}

#[tokio::test]
async fn the_mercure_publish_passes_nginx_up_to_the_publish_body_limit() {
    let app = spawn_app_with(|config| {
        enable_mercure(config, true);
        // Room for a large update, so that nginx's limit is the one met.
        config.limits.max_event_bytes = 1024 * 1024;
        config.limits.max_body_bytes = 1024 * 1024;
    })
    .await;
    let nginx = Nginx::start(app.addr, Variant::default());
    // 256 KiB: over the 16k nginx allows anywhere but the publish routes.
    let large = "x".repeat(256 * 1024);
    let response = mercure_publish(
        &nginx.url(HUB_PATH),
        &[("topic", "large"), ("data", &large)],
    )
    .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    // Over 1 MiB (client_max_body_size 1m = limits.max_body_bytes): 413.
    let over = "x".repeat(1024 * 1024 + 1);
    let response =
        mercure_publish(&nginx.url(HUB_PATH), &[("topic", "large"), ("data", &over)]).await;
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn a_mercure_subscribers_query_token_stays_out_of_nginx_error_log() {
    let token = subscriber_token(&["private"]);
    // The upstream is down: every request is an upstream error nginx logs.
    let nothing_there = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nginx = Nginx::start(
        nothing_there,
        Variant {
            path_prefix: true,
            ..Variant::default()
        },
    );
    for path in [HUB_PATH, "/ssehub/.well-known/mercure"] {
        let url = format!(
            "{}?{}",
            nginx.url(path),
            form(&[("topic", "private"), ("authorization", &token)])
        );
        let response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 502, "{path}");
    }
    // The control: a request without a token is logged as before.
    let response = reqwest::get(subscribe_url(&nginx, &[("topic", "private")]))
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let errors = nginx.error_log();
    assert!(
        errors.contains("connect() failed") && errors.contains("topic=private"),
        "nginx logged no upstream error at all:\n{errors}"
    );
    assert!(
        !errors.contains(&token),
        "a Mercure subscriber token in nginx's error.log:\n{errors}"
    );
    assert!(!nginx.access_log().contains(&token));

    // With the upstream up, the token still reaches the hub (no anonymous
    // subscribers: only the token lets the stream open) and is checked.
    let app = spawn_app_with(|config| enable_mercure(config, false)).await;
    let nginx = Nginx::start(
        app.addr,
        Variant {
            path_prefix: true,
            ..Variant::default()
        },
    );
    for path in [HUB_PATH, "/ssehub/.well-known/mercure"] {
        let without = reqwest::get(format!("{}?topic=private", nginx.url(path)))
            .await
            .unwrap();
        assert_eq!(without.status(), 401, "{path}");
        let url = format!(
            "{}?{}",
            nginx.url(path),
            form(&[("topic", "private"), ("authorization", &token)])
        );
        let mut subscriber = Subscriber::from_response(reqwest::get(url).await.unwrap()).await;
        let published = mercure_publish(
            &app.url(HUB_PATH),
            &[("topic", "private"), ("data", path), ("private", "on")],
        )
        .await;
        assert_eq!(published.status(), 200);
        assert_eq!(subscriber.next().await.data, path);
    }
}
