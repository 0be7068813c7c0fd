//! Auth over HTTP: tokens minted here (HS256, RS256, ES256, EdDSA; a JWKS
//! on loopback rotated mid-test), every bad-token case the issue lists, the
//! three places a subscriber's token may travel, 401/403/429 answers, the
//! rate-limited subscribe shed, `/metrics` behind a key, and the spec's
//! security schemes.

use std::time::Duration;

use serde_json::{Value, json};
use ssehub::config::{Config, RateConfig, SubscribeAuth};

use crate::metrics::scrape;
use crate::support::helpers::{
    PATIENCE, Subscriber, TestApp, assert_problem, body_text, read_to_end, spawn_app_with,
};
use crate::support::jwt::{JwksServer, Minter, SECRET, b64, claims, key_path, now};

const STATIC_KEY: &str = "static-publisher-key-for-tests";

/// HS256 by secret, RS256 by public key file, a static key beside them,
/// subscribing by JWT with `public.*` open.
fn jwt_hub(config: &mut Config) {
    config.auth.jwt.secret = Some(SECRET.to_owned());
    config.auth.jwt.public_key_file = Some(key_path("rsa-public.pem"));
    config.auth.publish_keys = vec![STATIC_KEY.to_owned()];
    config.auth.subscribe = SubscribeAuth::Jwt;
    config.auth.public_topics = vec!["public.*".to_owned()];
}

async fn publish(app: &TestApp, topic: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/topics/{topic}/events")))
        .json(&json!({"data": "x"}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Place {
    Header,
    Query,
    Cookie,
}

async fn subscribe(
    app: &TestApp,
    topics: &[&str],
    token: Option<(&str, Place)>,
) -> reqwest::Response {
    let mut query: Vec<(&str, &str)> = topics.iter().map(|t| ("topic", *t)).collect();
    if let Some((token, Place::Query)) = token {
        query.push(("access_token", token));
    }
    let mut request = app.client.get(app.url("/v1/events")).query(&query);
    match token {
        Some((token, Place::Header)) => request = request.bearer_auth(token),
        Some((token, Place::Cookie)) => {
            request = request.header("cookie", format!("other=1; ssehub_token={token}"))
        }
        _ => {}
    }
    request.send().await.unwrap()
}

/// A refused token: 401 problem+json, `invalid_token` challenge, and the
/// detail says why.
async fn assert_refused(response: reqwest::Response, detail_says: &str) -> Value {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let problem = assert_problem(response, 401).await;
    assert_eq!(
        challenge,
        "Bearer realm=\"ssehub\", error=\"invalid_token\""
    );
    assert_eq!(problem["type"], "urn:ssehub:problem:invalid-token");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(detail_says),
        "{detail:?} lacks {detail_says:?}"
    );
    problem
}

#[tokio::test]
async fn a_token_publishes_to_its_topics_and_no_others() {
    let app = spawn_app_with(jwt_hub).await;
    let minter = Minter::hs256(SECRET);
    let token = minter.token(&claims("svc", &["orders.*", "news"], &[], 60));
    assert_eq!(publish(&app, "orders.42", Some(&token)).await.status(), 202);
    assert_eq!(publish(&app, "news", Some(&token)).await.status(), 202);

    let problem = assert_problem(publish(&app, "billing.1", Some(&token)).await, 403).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:forbidden");
    assert!(
        problem["detail"].as_str().unwrap().contains("`billing.1`"),
        "403 names the topic: {problem}"
    );
    // A batch with one topic outside the token is refused whole.
    let batch = app
        .client
        .post(app.url("/v1/events"))
        .bearer_auth(&token)
        .json(&json!({"events": [{"topic": "news", "data": 1}, {"topic": "newsroom", "data": 2}]}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(batch, 403).await;
    assert!(problem["detail"].as_str().unwrap().contains("`newsroom`"));
    // The static key keeps working beside JWTs, on every topic.
    assert_eq!(
        publish(&app, "billing.1", Some(STATIC_KEY)).await.status(),
        202
    );
    // So does the seeds' route.
    let seed = app
        .client
        .post(app.url("/event-stream"))
        .bearer_auth(STATIC_KEY)
        .json(&json!({"message": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(seed.status(), 201);
}

#[tokio::test]
async fn patterns_match_exactly_and_near_misses_are_403() {
    let app = spawn_app_with(jwt_hub).await;
    let minter = Minter::hs256(SECRET);
    let token = minter.token(&claims("42", &["orders.4", "user.{sub}"], &[], 60));
    for (topic, status) in [
        ("orders.4", 202),
        ("orders.42", 403),
        ("user.42", 202),
        ("user.43", 403),
        ("user.420", 403),
        ("user.42.extra", 403),
    ] {
        assert_eq!(
            publish(&app, topic, Some(&token)).await.status(),
            status,
            "{topic}"
        );
    }
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_and_says_why() {
    let app = spawn_app_with(|config| {
        jwt_hub(config);
        config.auth.jwt.issuer = Some("https://issuer.test".to_owned());
        config.auth.jwt.audience = Some("ssehub".to_owned());
    })
    .await;
    let hs = Minter::hs256(SECRET);
    let good = |extra: Value| {
        let mut claims = claims("svc", &["t"], &["t"], 60);
        claims["iss"] = json!("https://issuer.test");
        claims["aud"] = json!("ssehub");
        for (key, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    };
    // The control: this token is fine.
    assert_eq!(
        publish(&app, "t", Some(&hs.token(&good(json!({})))))
            .await
            .status(),
        202
    );

    let rsa_public_pem = std::fs::read(key_path("rsa-public.pem")).unwrap();
    let header_none = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(good(json!({})).to_string().as_bytes());
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            hs.token(&good(json!({"exp": now() - 120}))),
            "expired",
        ),
        (
            "not yet valid",
            hs.token(&good(json!({"nbf": now() + 120}))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            hs.token(&good(json!({"iss": "https://other.test"}))),
            "`iss`",
        ),
        ("no issuer", hs.token(&good(json!({"iss": null}))), "`iss`"),
        (
            "wrong audience",
            hs.token(&good(json!({"aud": "someone-else"}))),
            "`aud`",
        ),
        (
            "no audience",
            hs.token(&good(json!({"aud": null}))),
            "`aud`",
        ),
        (
            "wrong signature",
            Minter::hs256("another-secret-of-at-least-32-bytes!!").token(&good(json!({}))),
            "signature",
        ),
        (
            "signature of another token",
            {
                let token = hs.token(&good(json!({})));
                let other = hs.token(&good(json!({"sub": "admin"})));
                let (head, _) = token.rsplit_once('.').unwrap();
                format!("{head}.{}", other.rsplit_once('.').unwrap().1)
            },
            "signature",
        ),
        (
            "alg none",
            format!("{header_none}.{payload}."),
            "not a well-formed JWT",
        ),
        (
            "alg confusion: HS256 signed with the RSA public key",
            Minter::hs256(std::str::from_utf8(&rsa_public_pem).unwrap()).token(&good(json!({}))),
            "signature",
        ),
        (
            "RS256 signed by a key that is not configured",
            Minter::rsa("rsa2-private.pem").token(&good(json!({}))),
            "signature",
        ),
        (
            "not a JWT at all",
            "abc".to_owned(),
            "not one of the configured keys",
        ),
        (
            "three empty parts",
            "..".to_owned(),
            "not a well-formed JWT",
        ),
        ("two parts", format!("{header_none}.{payload}"), "not a JWT"),
        (
            "header not JSON",
            format!("{}.{payload}.c2ln", b64(b"not json")),
            "not a well-formed JWT",
        ),
        (
            "bad base64",
            "e30=.e30=.!!!".to_owned(),
            "not a well-formed JWT",
        ),
        (
            "no exp",
            hs.token(&good(json!({"exp": null}))),
            "`exp` is required",
        ),
        (
            "exp not a number",
            hs.token(&good(json!({"exp": "tomorrow"}))),
            "claims are not usable",
        ),
        (
            "ssehub.publish not a list",
            hs.token(&good(json!({"ssehub": {"publish": "t"}}))),
            "claims are not usable",
        ),
        (
            "a regex for a pattern",
            hs.token(&good(
                json!({"ssehub": {"publish": ["t.*", "orders.4[0-9]"]}}),
            )),
            "claims are not usable",
        ),
        (
            "a wrong static key",
            format!("{STATIC_KEY}x"),
            "not one of the configured keys",
        ),
    ];
    for (case, token, says) in &cases {
        let response = publish(&app, "t", Some(token)).await;
        assert_eq!(response.status(), 401, "{case}");
        assert_refused(response, says).await;
        // The same token can't open a private stream either.
        let response = subscribe(&app, &["t"], Some((token, Place::Query))).await;
        assert_eq!(response.status(), 401, "{case} (subscribe)");
    }
    // No token: 401 with a plain challenge (nothing was refused).
    let response = publish(&app, "t", None).await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"ssehub\""
    );
    let problem = assert_problem(response, 401).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:unauthorized");
    // Not a Bearer scheme: as good as none.
    let basic = app
        .client
        .post(app.url("/v1/topics/t/events"))
        .basic_auth("user", Some("pw"))
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();
    assert_problem(basic, 401).await;

    let metrics = scrape(&app).await;
    for (reason, at_least) in [
        ("expired", 1.0),
        ("not_yet_valid", 1.0),
        ("wrong_issuer", 2.0),
        ("wrong_audience", 2.0),
        ("bad_signature", 4.0),
        ("malformed", 4.0),
        ("invalid_claims", 4.0),
        ("unknown_static_key", 3.0),
        ("missing_token", 2.0),
    ] {
        let counted = metrics.counter(
            "ssehub_auth_rejections_total",
            &[("action", "publish"), ("reason", reason)],
        );
        assert!(counted >= at_least, "{reason}: {counted}");
    }
    eprintln!(
        "bad-token cases: {}",
        cases.iter().map(|c| c.0).collect::<Vec<_>>().join("; ")
    );
}

#[tokio::test]
async fn an_hs256_token_is_not_accepted_where_only_public_keys_are_configured() {
    let app = spawn_app_with(|config| {
        config.auth.jwt.public_key_file = Some(key_path("rsa-public.pem"));
    })
    .await;
    let pem = std::fs::read_to_string(key_path("rsa-public.pem")).unwrap();
    let forged = Minter::hs256(&pem).token(&claims("svc", &["*"], &[], 60));
    assert_refused(
        publish(&app, "t", Some(&forged)).await,
        "`alg` is not accepted",
    )
    .await;
    let real = Minter::rs256().token(&claims("svc", &["*"], &[], 60));
    assert_eq!(publish(&app, "t", Some(&real)).await.status(), 202);
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_verify_with_their_pem_public_keys() {
    for (file, minter, other) in [
        ("rsa-public.pem", Minter::rs256(), Minter::es256()),
        ("ec-public.pem", Minter::es256(), Minter::eddsa()),
        ("ed-public.pem", Minter::eddsa(), Minter::rs256()),
    ] {
        let app = spawn_app_with(|config| {
            config.auth.jwt.public_key_file = Some(key_path(file));
        })
        .await;
        let token = minter.token(&claims("svc", &["t"], &[], 60));
        assert_eq!(
            publish(&app, "t", Some(&token)).await.status(),
            202,
            "{file}"
        );
        // A token of another key type finds no key that accepts its alg.
        let token = other.token(&claims("svc", &["t"], &[], 60));
        assert_eq!(
            publish(&app, "t", Some(&token)).await.status(),
            401,
            "{file}"
        );
    }
}

#[tokio::test]
async fn a_subscriber_token_works_in_the_header_the_query_and_a_cookie() {
    let app = spawn_app_with(jwt_hub).await;
    let token = Minter::hs256(SECRET).token(&claims("42", &[], &["user.{sub}"], 60));
    for place in [Place::Header, Place::Query, Place::Cookie] {
        let response = subscribe(&app, &["user.42"], Some((&token, place))).await;
        let mut subscriber = Subscriber::from_response(response).await;
        let id = app
            .publish_raw("user.42", json!({"data": format!("{place:?}")}))
            .await;
        assert_eq!(id.status(), 401, "publishing still needs a token");
        let accepted = publish(&app, "user.42", Some(STATIC_KEY)).await;
        assert_eq!(accepted.status(), 202);
        let event = subscriber.next().await;
        assert_eq!(event.data, "x", "{place:?}");
    }
    // Another subject's topic, with any placement: 403 naming it.
    for place in [Place::Header, Place::Query, Place::Cookie] {
        let response = subscribe(&app, &["user.43"], Some((&token, place))).await;
        let problem = assert_problem(response, 403).await;
        assert!(problem["detail"].as_str().unwrap().contains("`user.43`"));
    }
}

#[tokio::test]
async fn public_topics_stay_open_and_private_ones_need_a_token() {
    let app = spawn_app_with(jwt_hub).await;
    let response = subscribe(&app, &["public.news"], None).await;
    Subscriber::from_response(response).await;
    // A stale cookie on a page that only follows public topics is ignored.
    let response = subscribe(
        &app,
        &["public.news"],
        Some(("stale.garbage.cookie", Place::Cookie)),
    )
    .await;
    Subscriber::from_response(response).await;

    let response = subscribe(&app, &["private"], None).await;
    let challenge = response.headers()["www-authenticate"].clone();
    let problem = assert_problem(response, 401).await;
    assert_eq!(challenge, "Bearer realm=\"ssehub\"");
    assert!(problem["detail"].as_str().unwrap().contains("access_token"));

    // Public and private together: the token must cover the private one.
    let token = Minter::hs256(SECRET).token(&claims("42", &[], &["orders.42"], 60));
    let response = subscribe(
        &app,
        &["public.news", "orders.4"],
        Some((&token, Place::Header)),
    )
    .await;
    let problem = assert_problem(response, 403).await;
    assert!(problem["detail"].as_str().unwrap().contains("`orders.4`"));
    let response = subscribe(
        &app,
        &["public.news", "orders.42"],
        Some((&token, Place::Header)),
    )
    .await;
    Subscriber::from_response(response).await;
    // The seeds' stream is a topic like any other (`event-stream`, private here).
    let seed = app.get("/event-stream").await;
    assert_problem(seed, 401).await;
}

/// Each claim problem reads differently: which check, and how it failed
/// (the time, the value found and the one expected), never a key.
#[tokio::test]
async fn each_token_problem_says_which_check_failed_and_how() {
    let app = spawn_app_with(|config| {
        jwt_hub(config);
        config.auth.jwt.issuer = Some("https://issuer.test".to_owned());
        config.auth.jwt.audience = Some("ssehub".to_owned());
    })
    .await;
    let hs = Minter::hs256(SECRET);
    let token = |extra: Value| {
        let mut claims = claims("svc", &["t"], &["t"], 60);
        claims["iss"] = json!("https://issuer.test");
        claims["aud"] = json!("ssehub");
        for (key, value) in extra.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        hs.token(&claims)
    };
    let cases: Vec<(&str, String, &[&str])> = vec![
        (
            "expired",
            token(json!({"exp": 1_767_225_600})),
            &[
                "has expired",
                "expired at 2026-01-01T00:00:00Z (1767225600)",
            ],
        ),
        (
            "not yet valid",
            token(json!({"nbf": 4_102_444_800u64})),
            &["not valid yet", "not valid until 2100-01-01T00:00:00Z"],
        ),
        (
            "wrong issuer",
            token(json!({"iss": "https://other.test"})),
            &["its `iss` is \"https://other.test\"; expected \"https://issuer.test\""],
        ),
        (
            "no issuer",
            token(json!({"iss": null})),
            &["its `iss` is missing; expected \"https://issuer.test\""],
        ),
        (
            "wrong audience",
            token(json!({"aud": "someone-else"})),
            &["its `aud` is \"someone-else\"; expected \"ssehub\""],
        ),
        (
            "no exp",
            token(json!({"exp": null})),
            &["the claim `exp` is missing"],
        ),
        (
            "a bad pattern",
            token(json!({"ssehub": {"publish": ["orders.4[0-9]"]}})),
            &["`ssehub.publish`", "orders.4[0-9]"],
        ),
        (
            "wrong signature",
            Minter::hs256("another-secret-of-at-least-32-bytes!!").token(&claims(
                "svc",
                &["t"],
                &[],
                60,
            )),
            &["signature does not verify", "HS256 with auth.jwt.secret"],
        ),
        (
            "an algorithm no key takes",
            Minter::es256().token(&claims("svc", &["t"], &[], 60)),
            &["its `alg` is ES256", "RS256", "(auth.jwt.public_key_file)"],
        ),
        (
            "a header that is not JSON",
            format!("{}.e30.c2ln", b64(b"not json")),
            &["its header is not base64url-encoded JSON"],
        ),
    ];
    for (case, token, says) in &cases {
        let response = publish(&app, "t", Some(token)).await;
        let problem = assert_problem(response, 401).await;
        assert_eq!(
            problem["type"], "urn:ssehub:problem:invalid-token",
            "{case}"
        );
        let detail = problem["detail"].as_str().unwrap();
        for words in *says {
            assert!(detail.contains(words), "{case}: {words:?} in {detail}");
        }
        assert!(
            !detail.contains(SECRET),
            "{case}: the secret leaked: {detail}"
        );
    }
}

#[tokio::test]
async fn a_jwks_served_on_loopback_is_followed_through_a_rotation() {
    let first = Minter::rs256().with_kid("key-1");
    let second = Minter::es256().with_kid("key-2");
    let jwks = JwksServer::start(vec![first.jwk()]).await;
    let app = spawn_app_with(|config| {
        config.auth.jwt.jwks = Some(jwks.url());
        // Only the unknown-kid re-read can pick up the rotation in time.
        config.auth.jwt.jwks_refresh = Duration::from_secs(3600);
        config.auth.jwt.jwks_refetch_cooldown = Duration::ZERO;
    })
    .await;
    wait_ready(&app).await;
    let token_1 = first.token(&claims("svc", &["t"], &[], 60));
    let token_2 = second.token(&claims("svc", &["t"], &[], 60));
    assert_eq!(publish(&app, "t", Some(&token_1)).await.status(), 202);
    let fetches = jwks.requests();

    // The provider rotates: key-2 in, key-1 out.
    jwks.serve(vec![second.jwk()]);
    assert_eq!(
        publish(&app, "t", Some(&token_2)).await.status(),
        202,
        "re-read for key-2"
    );
    assert!(
        jwks.requests() > fetches,
        "the unknown kid made the hub re-read"
    );
    assert_refused(publish(&app, "t", Some(&token_1)).await, "`kid`").await;
    // A kid nobody published, and a token claiming key-2's kid but signed by key-1.
    let stranger = Minter::rs256()
        .with_kid("key-9")
        .token(&claims("svc", &["t"], &[], 60));
    assert_refused(
        publish(&app, "t", Some(&stranger)).await,
        "its `kid` \"key-9\" is not in the key set",
    )
    .await;
    let impostor = Minter::rs256()
        .with_kid("key-2")
        .token(&claims("svc", &["t"], &[], 60));
    assert_eq!(publish(&app, "t", Some(&impostor)).await.status(), 401);
}

#[tokio::test]
async fn a_jwks_is_re_read_in_the_background() {
    let first = Minter::eddsa().with_kid("ed-1");
    let second = Minter::rs256().with_kid("rsa-2");
    let jwks = JwksServer::start(vec![first.jwk()]).await;
    let app = spawn_app_with(|config| {
        config.auth.jwt.jwks = Some(jwks.url());
        config.auth.jwt.jwks_refresh = Duration::from_millis(100);
        // No re-read for unknown kids: only the periodic one can see key rsa-2.
        config.auth.jwt.jwks_refetch_cooldown = Duration::from_secs(3600);
    })
    .await;
    wait_ready(&app).await;
    assert_eq!(
        publish(&app, "t", Some(&first.token(&claims("s", &["t"], &[], 60))))
            .await
            .status(),
        202
    );
    jwks.serve(vec![first.jwk(), second.jwk()]);
    let token = second.token(&claims("s", &["t"], &[], 60));
    let started = std::time::Instant::now();
    loop {
        let status = publish(&app, "t", Some(&token)).await.status();
        if status == 202 {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the new key never arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readiness_waits_for_a_jwks_url_to_be_read() {
    // Nothing listens at this address yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = spawn_app_with(|config| {
        config.auth.jwt.jwks = Some(format!("http://127.0.0.1:{port}/jwks.json"));
        config.auth.jwt.jwks_refresh = Duration::from_secs(3600);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let problem = assert_problem(app.get("/readyz").await, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:keys-unavailable");
    assert_eq!(
        app.get("/healthz").await.status(),
        200,
        "alive all the same"
    );
}

async fn wait_ready(app: &TestApp) {
    let started = std::time::Instant::now();
    while app.get("/readyz").await.status() != 200 {
        assert!(started.elapsed() < PATIENCE, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn publishes_over_a_rate_limit_get_429_with_retry_after() {
    let app = spawn_app_with(|config| {
        config.rate_limits.publish_per_address = RateConfig {
            per_second: 0.5,
            burst: 3,
        };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(publish(&app, "t", None).await.status(), 202);
    }
    let response = publish(&app, "t", None).await;
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem = assert_problem(response, 429).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:rate-limited");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("publish_per_address")
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_rate_limited_total",
            &[("limit", "publish_per_address")]
        ),
        1.0
    );
    assert_eq!(
        metrics.counter(
            "ssehub_publish_requests_total",
            &[("outcome", "rejected_rate_limited")]
        ),
        1.0
    );
}

#[tokio::test]
async fn each_publisher_has_its_own_budget() {
    let app = spawn_app_with(|config| {
        jwt_hub(config);
        config.rate_limits.publish_per_publisher = RateConfig {
            per_second: 0.1,
            burst: 2,
        };
    })
    .await;
    let minter = Minter::hs256(SECRET);
    let alice = minter.token(&claims("alice", &["t"], &[], 60));
    let bob = minter.token(&claims("bob", &["t"], &[], 60));
    for _ in 0..2 {
        assert_eq!(publish(&app, "t", Some(&alice)).await.status(), 202);
    }
    assert_problem(publish(&app, "t", Some(&alice)).await, 429).await;
    // Another token of the same subject shares the budget; another subject doesn't.
    let alice_again = minter.token(&claims("alice", &["t"], &[], 120));
    assert_problem(publish(&app, "t", Some(&alice_again)).await, 429).await;
    assert_eq!(publish(&app, "t", Some(&bob)).await.status(), 202);
    assert_eq!(publish(&app, "t", Some(STATIC_KEY)).await.status(), 202);
}

#[tokio::test]
async fn subscribes_over_the_rate_are_shed_and_trusted_proxies_name_the_client() {
    let app = spawn_app_with(|config| {
        config.rate_limits.subscribe_per_address = RateConfig {
            per_second: 0.01,
            burst: 1,
        };
        config.rate_limits.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    let from = |client: &'static str| {
        app.client
            .get(app.url("/v1/events?topic=t"))
            .header("x-forwarded-for", client)
            .send()
    };
    let first = from("203.0.113.1").await.unwrap();
    Subscriber::from_response(first).await;
    // Over the rate: 200, a jittered retry hint, and the end (EventSource
    // comes back later; an error status would make it give up).
    let shed = from("203.0.113.1").await.unwrap();
    assert_eq!(shed.status(), 200);
    let text = body_text(shed, Duration::from_secs(5)).await;
    let millis: u64 = text
        .strip_prefix("retry: ")
        .and_then(|rest| rest.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("not a lone retry hint: {text:?}"));
    assert!((3000..=6000).contains(&millis), "{millis}");
    // Another client behind the same proxy has its own budget; a forged
    // entry left of the proxy's own is not believed.
    let other = from("198.51.100.7").await.unwrap();
    Subscriber::from_response(other).await;
    let forged = from("198.51.100.99, 203.0.113.1").await.unwrap();
    assert!(
        body_text(forged, Duration::from_secs(5))
            .await
            .starts_with("retry: ")
    );

    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_subscriptions_closed_total",
            &[("reason", "shed_rate_limited")]
        ),
        2.0
    );
    assert_eq!(
        metrics.counter(
            "ssehub_rate_limited_total",
            &[("limit", "subscribe_per_address")]
        ),
        2.0
    );
}

#[tokio::test]
async fn metrics_can_need_a_key_and_probes_stay_open() {
    let app = spawn_app_with(|config| {
        jwt_hub(config);
        config.auth.metrics_keys = vec!["scraper-key".to_owned()];
    })
    .await;
    assert_problem(app.get("/metrics").await, 401).await;
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(STATIC_KEY)
        .send()
        .await
        .unwrap();
    assert_problem(wrong, 401).await;
    let scraped = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("scraper-key")
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped
            .text()
            .await
            .unwrap()
            .contains("ssehub_auth_rejections_total")
    );
    for probe in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(app.get(probe).await.status(), 200, "{probe}");
    }
}

#[tokio::test]
async fn the_spec_describes_the_security_schemes_so_swagger_ui_can_authorize() {
    let app = spawn_app_with(|_| {}).await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let schemes = &spec["components"]["securitySchemes"];
    assert_eq!(schemes["publisherBearer"]["type"], "http");
    assert_eq!(schemes["publisherBearer"]["scheme"], "bearer");
    assert_eq!(schemes["subscriberAccessToken"]["in"], "query");
    assert_eq!(schemes["subscriberAccessToken"]["name"], "access_token");
    assert_eq!(schemes["subscriberCookie"]["in"], "cookie");
    assert_eq!(schemes["metricsBearer"]["scheme"], "bearer");
    let security = |path: &str, method: &str| spec["paths"][path][method]["security"].clone();
    for (path, method) in [
        ("/v1/topics/{topic}/events", "post"),
        ("/v1/events", "post"),
        ("/event-stream", "post"),
    ] {
        let security = security(path, method);
        assert!(
            security
                .as_array()
                .unwrap()
                .contains(&json!({"publisherBearer": []})),
            "{path}: {security}"
        );
    }
    let subscribe = security("/v1/events", "get");
    for scheme in [
        "subscriberBearer",
        "subscriberAccessToken",
        "subscriberCookie",
    ] {
        assert!(
            subscribe
                .as_array()
                .unwrap()
                .contains(&json!({ scheme: [] })),
            "{subscribe}"
        );
    }
    for status in ["401", "403", "429"] {
        assert!(
            spec["paths"]["/v1/topics/{topic}/events"]["post"]["responses"][status].is_object(),
            "{status} documented"
        );
    }
}

#[tokio::test]
async fn a_stream_ends_at_its_token_expiry_and_resumes_with_a_new_token() {
    let app = spawn_app_with(jwt_hub).await;
    let minter = Minter::hs256(SECRET);
    // `exp` is in whole seconds: this token lives between 1 and 2 s.
    let exp = now() + 2;
    let mut short = claims("42", &[], &["user.{sub}"], 0);
    short["exp"] = json!(exp);
    let token = minter.token(&short);
    let started = std::time::SystemTime::now();
    let response = subscribe(&app, &["user.42"], Some((&token, Place::Query))).await;
    assert_eq!(response.status(), 200);
    let id = {
        let accepted = publish(&app, "user.42", Some(STATIC_KEY)).await;
        let body: Value = accepted.json().await.unwrap();
        body["id"].as_str().unwrap().to_owned()
    };
    let end = read_to_end(response).await;
    let ended = std::time::SystemTime::now();
    assert!(end.clean, "a clean end of the response: {:?}", end.text);
    let exp_time = std::time::UNIX_EPOCH + Duration::from_secs(exp as u64);
    assert!(ended >= exp_time, "ended before exp");
    assert!(
        ended.duration_since(started).unwrap() < PATIENCE,
        "ended long after exp"
    );
    assert!(end.text.contains(&format!("id: {id}\n")), "{:?}", end.text);
    assert!(
        end.text.ends_with(&format!(
            "event: token_expired\ndata: {{\"exp\":{exp},\"reason\":\"token_expired\"}}\n\n"
        )),
        "{:?}",
        end.text
    );
    // The old token can't reopen it; a new one resumes after the last id.
    let again = subscribe(&app, &["user.42"], Some((&token, Place::Query))).await;
    assert_refused(again, "expired").await;
    let missed = publish(&app, "user.42", Some(STATIC_KEY)).await;
    assert_eq!(missed.status(), 202);
    let fresh = minter.token(&claims("42", &[], &["user.{sub}"], 60));
    let response = app
        .client
        .get(app.url("/v1/events"))
        .query(&[
            ("topic", "user.42"),
            ("lastEventId", &id),
            ("access_token", &fresh),
        ])
        .send()
        .await
        .unwrap();
    let mut subscriber = Subscriber::from_response(response).await;
    assert_eq!(
        subscriber.next().await.data,
        "x",
        "the event published meanwhile"
    );
    let metrics = scrape(&app).await;
    assert_eq!(
        metrics.counter(
            "ssehub_subscriptions_closed_total",
            &[("reason", "token_expired")]
        ),
        1.0
    );
}
