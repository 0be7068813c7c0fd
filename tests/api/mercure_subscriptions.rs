//! Mercure's active subscriptions (`mercure.subscriptions`), from the
//! spec's "Active Subscriptions" section (draft-07, as Mercure 0.x speaks
//! it): a private update when a subscription opens and when it ends, with
//! the token's `mercure.payload`; the subscriptions API (the list, one
//! selector's, one subscription), authorised by the subscriber token's
//! selectors; and on Redis the list of the whole cluster: a subscriber on
//! one replica listed by another, gone when it leaves, and gone within the
//! presence TTL when its replica is killed.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ssehub::config::Config;

use crate::redis::replica;
use crate::redis::replicas::redis_server;
use crate::redis::server::Persistence;
use crate::support::helpers::{
    PATIENCE, Subscriber, TestApp, assert_problem, spawn_app_with, within,
};
use crate::support::jwt::Minter;
use crate::support::process::HubProcess;

const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
const PATH: &str = "/.well-known/mercure";
const SUBSCRIPTIONS: &str = "/.well-known/mercure/subscriptions";
/// The selectors that cover every path of the subscriptions API (and so
/// every subscription event's topic), in URI templates of level 1.
const EVERY_SUBSCRIPTION: [&str; 3] = [
    "/.well-known/mercure/subscriptions",
    "/.well-known/mercure/subscriptions/{topic}",
    "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
];
/// The longest a crashed replica's subscriptions stay listed: the presence
/// TTL (10 s) after its last refresh (every 3 s), with room for a slow CI.
const CRASHED_REPLICA_LISTED_AT_MOST: Duration = Duration::from_secs(25);

fn enable(config: &mut Config, subscriptions: bool) {
    config.mercure.enabled = true;
    config.mercure.anonymous = true;
    config.mercure.subscriptions = subscriptions;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

async fn hub(subscriptions: bool) -> TestApp {
    spawn_app_with(|config| enable(config, subscriptions)).await
}

fn token(subscribe: &[&str], payload: Option<Value>) -> String {
    let mut mercure = json!({ "subscribe": subscribe });
    if let Some(payload) = payload {
        mercure["payload"] = payload;
    }
    Minter::hs256(SUBSCRIBER_KEY).token(&json!({ "mercure": mercure }))
}

fn percent_encoded(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// A Mercure subscription at `base` (a hub's URL) to `topics`.
async fn subscribe_at(base: &str, topics: &[&str], token: Option<&str>) -> Subscriber {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(topics.iter().map(|topic| ("topic", *topic)))
        .finish();
    let mut request = reqwest::Client::new().get(format!("{base}{PATH}?{query}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Subscriber::from_response(request.send().await.unwrap()).await
}

async fn subscribe(app: &TestApp, topics: &[&str], token: Option<&str>) -> Subscriber {
    subscribe_at(&app.url(""), topics, token).await
}

/// A watcher of every subscription event.
async fn watcher(app: &TestApp) -> Subscriber {
    let token = token(&EVERY_SUBSCRIPTION, None);
    subscribe(app, &[EVERY_SUBSCRIPTION[2]], Some(&token)).await
}

/// Publishes a public update on `topic`.
async fn publish(app: &TestApp, topic: &str, data: &str) {
    let token = Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"publish": ["*"]}}));
    let response = app
        .client
        .post(app.url(PATH))
        .bearer_auth(token)
        .form(&[("topic", topic), ("data", data)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The next subscription event about `topic`, skipping others (the
/// watcher's own).
async fn event_about(watcher: &mut Subscriber, topic: &str) -> Value {
    loop {
        let event = watcher.next().await;
        let document: Value = serde_json::from_str(&event.data).expect("a JSON-LD document");
        if document["topic"] == topic {
            assert_eq!(event.event, "message", "no SSE type, as Mercure 0.x");
            return document;
        }
    }
}

/// `GET` on the subscriptions API at `base` with a token covering it all.
async fn read_at(base: &str, path: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token(&EVERY_SUBSCRIPTION, None))
        .send()
        .await
        .unwrap()
}

/// The subscriptions of the whole list at `base` whose topic is `topic`.
async fn listed_at(base: &str, topic: &str) -> Vec<Value> {
    let response = read_at(base, SUBSCRIPTIONS).await;
    let status = response.status();
    let list: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{list}");
    list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|subscription| subscription["topic"] == topic)
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_subscription_is_announced_on_connect_and_disconnect_with_its_payload() {
    let app = hub(true).await;
    let mut watcher = watcher(&app).await;
    let topic = "https://example.com/books/{id}";
    let payload = json!({"user": "https://example.com/users/alice", "tab": 2});
    let subject = subscribe(
        &app,
        &[topic, "https://example.com/authors/1"],
        Some(&token(&[], Some(payload.clone()))),
    )
    .await;

    let opened = event_about(&mut watcher, topic).await;
    let subscriber = opened["subscriber"].as_str().unwrap().to_owned();
    assert!(subscriber.starts_with("urn:uuid:"), "{subscriber}");
    assert_eq!(
        opened,
        json!({
            "@context": "https://mercure.rocks/",
            "id": format!(
                "{SUBSCRIPTIONS}/https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D/{}",
                percent_encoded(&subscriber)
            ),
            "type": "Subscription",
            "topic": topic,
            "subscriber": subscriber,
            "active": true,
            "payload": payload,
        })
    );
    let other = event_about(&mut watcher, "https://example.com/authors/1").await;
    assert_eq!(
        other["subscriber"], subscriber,
        "one subscriber per connection"
    );

    drop(subject);
    let closed = event_about(&mut watcher, topic).await;
    assert_eq!(closed["active"], false);
    assert_eq!(closed["id"], opened["id"]);
    assert_eq!(closed["payload"], payload);
}

#[tokio::test]
async fn subscription_events_are_private() {
    let app = hub(true).await;
    // Anonymous, and a token whose selectors don't cover the events' topics.
    let mut anonymous = subscribe(&app, &["*"], None).await;
    let mut unauthorised = subscribe(
        &app,
        &["*"],
        Some(&token(&["https://example.com/{any}"], None)),
    )
    .await;
    let _subject = subscribe(&app, &["https://example.com/books/1"], None).await;
    publish(&app, "marker", "after the subscription").await;
    for subscriber in [&mut anonymous, &mut unauthorised] {
        let first = subscriber.next().await;
        assert_eq!(
            first.data, "after the subscription",
            "no subscription event first"
        );
    }
}

#[tokio::test]
async fn off_by_default_no_event_and_no_api() {
    let app = hub(false).await;
    let mut all = subscribe(&app, &["*"], Some(&token(&["*"], None))).await;
    let _subject = subscribe(&app, &["https://example.com/books/1"], None).await;
    publish(&app, "marker", "only this").await;
    assert_eq!(all.next().await.data, "only this");
    for path in [
        SUBSCRIPTIONS.to_owned(),
        format!("{SUBSCRIPTIONS}/a"),
        format!("{SUBSCRIPTIONS}/a/b"),
    ] {
        let problem = assert_problem(read_at(&app.url(""), &path).await, 404).await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("mercure.subscriptions"),
            "{problem}"
        );
    }
    // And with the protocol itself off.
    let off = spawn_app_with(|_| {}).await;
    assert_problem(read_at(&off.url(""), SUBSCRIPTIONS).await, 404).await;
}

#[tokio::test]
async fn the_api_lists_every_subscription_those_of_a_selector_and_one() {
    let app = hub(true).await;
    let base = app.url("");
    let books = "https://example.com/books/{id}";
    let authors = "https://example.com/authors/1";
    let mut watcher = watcher(&app).await;
    let _alice = subscribe(&app, &[books], Some(&token(&[], Some(json!("alice"))))).await;
    let alice = event_about(&mut watcher, books).await;
    let _bob = subscribe(&app, &[authors], None).await;
    let bob = event_about(&mut watcher, authors).await;

    let response = read_at(&base, SUBSCRIPTIONS).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["@context"], "https://mercure.rocks/");
    assert_eq!(list["id"], SUBSCRIPTIONS);
    assert_eq!(list["type"], "Subscriptions");
    let cursor = list["lastEventID"].as_str().unwrap().to_owned();
    assert!(cursor.starts_with("urn:ssehub:"), "{cursor}");
    let mut topics: Vec<&str> = list["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|subscription| subscription["topic"].as_str().unwrap())
        .collect();
    topics.sort_unstable();
    assert_eq!(
        topics,
        [EVERY_SUBSCRIPTION[2], authors, books],
        "the watcher's, bob's and alice's"
    );

    let of_books = format!("{SUBSCRIPTIONS}/{}", percent_encoded(books));
    let list: Value = read_at(&base, &of_books).await.json().await.unwrap();
    assert_eq!(list["id"], of_books);
    let mut expected = alice.clone();
    expected.as_object_mut().unwrap().remove("@context");
    assert_eq!(list["subscriptions"], json!([expected]));

    let one_path = alice["id"].as_str().unwrap();
    let response = read_at(&base, one_path).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/ld+json");
    let one: Value = response.json().await.unwrap();
    let mut expected = alice.clone();
    expected["lastEventID"] = one["lastEventID"].clone();
    assert_eq!(one, expected);
    assert!(
        one["lastEventID"]
            .as_str()
            .unwrap()
            .starts_with("urn:ssehub:")
    );

    // Another subscriber's id under alice's selector names nothing.
    let elsewhere = format!(
        "{of_books}/{}",
        percent_encoded(bob["subscriber"].as_str().unwrap())
    );
    assert_problem(read_at(&base, &elsewhere).await, 404).await;

    // The cursor resumes the events after the list: bob's end, not before.
    let mut follower = {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("topic", EVERY_SUBSCRIPTION[2])
            .append_pair("lastEventID", &cursor)
            .finish();
        let response = app
            .client
            .get(app.url(&format!("{PATH}?{query}")))
            .bearer_auth(token(&EVERY_SUBSCRIPTION, None))
            .send()
            .await
            .unwrap();
        Subscriber::from_response(response).await
    };
    drop(_bob);
    let ended = event_about(&mut follower, authors).await;
    assert_eq!(
        (ended["id"].clone(), ended["active"].clone()),
        (bob["id"].clone(), json!(false))
    );
    assert!(
        within(PATIENCE, || async {
            read_at(&base, bob["id"].as_str().unwrap()).await.status() == 404
        })
        .await
        .is_some(),
        "bob's subscription is gone once it ended"
    );
}

#[tokio::test]
async fn the_api_needs_a_token_whose_selectors_cover_the_path() {
    let app = hub(true).await;
    let mut watcher = watcher(&app).await;
    let _subject = subscribe(&app, &["a"], None).await;
    let one = event_about(&mut watcher, "a").await;
    let one_path = one["id"].as_str().unwrap();
    let get = |path: String, token: Option<String>| {
        let mut request = app.client.get(app.url(&path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };

    assert_problem(get(SUBSCRIPTIONS.to_owned(), None).await.unwrap(), 401).await;
    let forged = Minter::hs256(PUBLISHER_KEY).token(&json!({"mercure": {"subscribe": ["*"]}}));
    assert_problem(
        get(SUBSCRIPTIONS.to_owned(), Some(forged)).await.unwrap(),
        401,
    )
    .await;
    let elsewhere = token(&["https://example.com/{any}"], None);
    let problem = assert_problem(
        get(SUBSCRIPTIONS.to_owned(), Some(elsewhere))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains(SUBSCRIPTIONS),
        "{problem}"
    );

    // A token for exactly one subscription reads that one, not the list.
    let exact = token(&[one_path], None);
    let response = get(one_path.to_owned(), Some(exact.clone())).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_problem(
        get(SUBSCRIPTIONS.to_owned(), Some(exact)).await.unwrap(),
        403,
    )
    .await;
    // `*` covers everything; the cookie and the query carry tokens too.
    let response = app
        .client
        .get(app.url(SUBSCRIPTIONS))
        .header(
            "cookie",
            format!("mercureAuthorization={}", token(&["*"], None)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("authorization", &token(&["*"], None))
        .finish();
    let response = get(format!("{SUBSCRIPTIONS}?{query}"), None).await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn the_spec_documents_the_subscriptions_routes() {
    let app = hub(false).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    for path in [
        "/.well-known/mercure/subscriptions",
        "/.well-known/mercure/subscriptions/{topic}",
        "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
    ] {
        let operation = &spec["paths"][path]["get"];
        assert_eq!(operation["tags"][0], "Mercure", "{path}");
        let content = &operation["responses"]["200"]["content"];
        assert!(
            content.get("application/ld+json").is_some(),
            "{path}: {content}"
        );
        for status in ["401", "403", "404"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{path}: {status}"
            );
        }
    }
}

#[test]
fn the_key_is_in_print_config_and_a_bad_value_exits_64_naming_it() {
    let ssehub = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
        for (key, _) in std::env::vars() {
            if key.starts_with("SSEHUB_") {
                command.env_remove(key);
            }
        }
        command
    };
    let output = ssehub()
        .env("SSEHUB_MERCURE__SUBSCRIPTIONS", "maybe")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("mercure.subscriptions") && stderr.contains("maybe"),
        "{stderr}"
    );

    let output = ssehub()
        .arg("--print-config")
        .env("SSEHUB_MERCURE__SUBSCRIPTIONS", "true")
        .output()
        .unwrap();
    assert!(output.status.success());
    let shown: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_eq!(shown["mercure"]["subscriptions"].as_bool(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_the_list_is_the_clusters_and_a_leaver_leaves_it() {
    let server = redis_server(Persistence::None).await;
    let a = replica(&server, |config| enable(config, true)).await;
    let b = replica(&server, |config| enable(config, true)).await;
    let topic = "https://example.com/on-a";
    let mut watcher_on_b = watcher(&b).await;

    let subject = subscribe(&a, &[topic], Some(&token(&[], Some(json!("from a"))))).await;
    let announced = event_about(&mut watcher_on_b, topic).await;
    assert_eq!(announced["active"], true, "the event crossed to replica B");
    let listed = within(PATIENCE, || async {
        listed_at(&b.url(""), topic).await.len() == 1
    })
    .await
    .expect("replica B lists the subscriber of replica A");
    println!("listed on the other replica after {listed:?}");
    let mut expected = announced.clone();
    expected.as_object_mut().unwrap().remove("@context");
    assert_eq!(listed_at(&b.url(""), topic).await, [expected]);
    let one = read_at(&b.url(""), announced["id"].as_str().unwrap()).await;
    assert_eq!(
        one.status(),
        200,
        "one subscription, read on the other replica"
    );

    drop(subject);
    assert_eq!(event_about(&mut watcher_on_b, topic).await["active"], false);
    let gone = within(PATIENCE, || async {
        listed_at(&b.url(""), topic).await.is_empty()
    })
    .await
    .expect("gone from replica B's list once it disconnected from A");
    println!("gone from the other replica's list after {gone:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_records_lost_from_redis_are_written_again() {
    let server = redis_server(Persistence::None).await;
    let a = replica(&server, |config| enable(config, true)).await;
    let b = replica(&server, |config| enable(config, true)).await;
    let topic = "https://example.com/survives-a-lost-hash";
    let _subject = subscribe(&a, &[topic], None).await;
    within(PATIENCE, || async {
        listed_at(&b.url(""), topic).await.len() == 1
    })
    .await
    .expect("listed on the other replica");

    // As if the hash had expired while Redis was out of reach.
    let deleted = server.cli(&[
        "EVAL",
        "local n = 0 for _, key in ipairs(redis.call('KEYS', ARGV[1])) do \
         n = n + redis.call('DEL', key) end return n",
        "0",
        "ssehub:p:*",
    ]);
    assert_ne!(deleted, "0", "the presence hashes were deleted");
    let back = within(PATIENCE, || async {
        listed_at(&b.url(""), topic).await.len() == 1
    })
    .await
    .expect("the replica writes its records again");
    println!("listed again {back:?} after its hash was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_a_killed_replicas_subscriptions_expire_from_the_list() {
    let server = redis_server(Persistence::None).await;
    let url = server.url();
    let crashing = tokio::task::spawn_blocking(move || {
        HubProcess::start(&[
            ("SSEHUB_BACKPLANE__KIND", "redis"),
            ("SSEHUB_BACKPLANE__REDIS__URL", &url),
            ("SSEHUB_MERCURE__ENABLED", "true"),
            ("SSEHUB_MERCURE__ANONYMOUS", "true"),
            ("SSEHUB_MERCURE__SUBSCRIPTIONS", "true"),
            ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", PUBLISHER_KEY),
            ("SSEHUB_MERCURE__SUBSCRIBER_JWT__KEY", SUBSCRIBER_KEY),
        ])
    })
    .await
    .unwrap();
    let survivor = replica(&server, |config| enable(config, true)).await;
    let ready = within(PATIENCE, || async {
        reqwest::get(crashing.url("/readyz"))
            .await
            .is_ok_and(|response| response.status() == 200)
    })
    .await;
    assert!(ready.is_some(), "the replica to kill never got ready");
    let topic = "https://example.com/on-the-crashing-replica";
    let _subject = subscribe_at(&crashing.url(""), &[topic], None).await;
    within(PATIENCE, || async {
        listed_at(&survivor.url(""), topic).await.len() == 1
    })
    .await
    .expect("the survivor lists the subscriber of the other replica");

    crashing.signal("KILL");
    let killed = Instant::now();
    // Nobody was left to remove it: only the TTL does.
    assert_eq!(
        listed_at(&survivor.url(""), topic).await.len(),
        1,
        "still listed right after the kill"
    );
    let gone = within(CRASHED_REPLICA_LISTED_AT_MOST, || async {
        listed_at(&survivor.url(""), topic).await.is_empty()
    })
    .await;
    assert!(
        gone.is_some(),
        "a killed replica's subscription still listed {:?} after the kill",
        killed.elapsed()
    );
    println!(
        "a killed replica's subscription left the list {:?} after the kill",
        killed.elapsed()
    );
}
