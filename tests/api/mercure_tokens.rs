//! Mercure's tokens, keys and protocol version, from the spec: each place
//! a token may travel (header, draft-07's query parameter, both drafts'
//! cookies) and which wins; each kind of key (HMAC secret, PEM public key,
//! JWKS by URL and by file); each bad token (expired, wrong alg, wrong key,
//! wrong `iss` / `aud`, a key not in the JWKS); and what
//! `protocol_version_compatibility = 8` refuses, naming what to use instead.

use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use ssehub::config::Config;

use crate::support::helpers::{TestApp, assert_problem, spawn_app_with, wait_ready};
use crate::support::jwt::{JwksServer, Minter, key_path, now};

const PUBLISHER_KEY: &str = "the-publisher-secret-of-32-bytes-or-more";
const SUBSCRIBER_KEY: &str = "the-subscriber-secret-of-32-bytes-or-more";
const PATH: &str = "/.well-known/mercure";
const ISSUER: &str = "https://app.example";
const AUDIENCE: &str = "https://hub.example/.well-known/mercure";
const DRAFT_08_COOKIE: &str = "__Secure-mercure_access_token";
const DRAFT_07_COOKIE: &str = "mercureAuthorization";

/// Mercure on, subscribers need a token (so a 200 proves one was read),
/// HMAC keys for both roles.
fn enable(config: &mut Config) {
    config.mercure.enabled = true;
    config.mercure.anonymous = false;
    config.mercure.publisher_jwt.key = Some(PUBLISHER_KEY.to_owned());
    config.mercure.subscriber_jwt.key = Some(SUBSCRIBER_KEY.to_owned());
}

/// The issuer and audience draft-08 tokens are checked against.
fn with_issuer_and_audience(config: &mut Config) {
    for jwt in [
        &mut config.mercure.publisher_jwt,
        &mut config.mercure.subscriber_jwt,
    ] {
        jwt.issuer = Some(ISSUER.to_owned());
        jwt.audience = Some(AUDIENCE.to_owned());
    }
}

fn sign(algorithm: Algorithm, key: &EncodingKey, typ: Option<&str>, claims: &Value) -> String {
    let header = Header {
        typ: typ.map(str::to_owned),
        ..Header::new(algorithm)
    };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(secret: &str) -> EncodingKey {
    EncodingKey::from_secret(secret.as_bytes()).unwrap()
}

/// A draft-07 token (no `typ`) with a `mercure` claim.
fn draft_07(secret: &str, mercure: Value) -> String {
    sign(
        Algorithm::HS256,
        &hs256(secret),
        Some("JWT"),
        &json!({ "mercure": mercure }),
    )
}

/// Draft-08 claims granting `actions` on every topic.
fn draft_08_claims(actions: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "urn:uuid:subscriber-1",
        "exp": now() + 600,
        "authorization_details": [{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": actions,
            "topics": [{"match": "*"}],
        }],
    })
}

fn draft_08(secret: &str, actions: &[&str]) -> String {
    sign(
        Algorithm::HS256,
        &hs256(secret),
        Some("at+jwt"),
        &draft_08_claims(actions),
    )
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

fn subscribe_url(app: &TestApp, query: &[(&str, &str)]) -> String {
    format!("{}?{}", app.url(PATH), form(query))
}

/// A subscribe's response (a 200 is a stream, dropped once its head came).
async fn subscribe(app: &TestApp, query: &[(&str, &str)], token: Token<'_>) -> reqwest::Response {
    let mut query = query.to_vec();
    if let Token::Query(token) = token {
        query.push(("authorization", token));
    }
    let request = app.client.get(subscribe_url(app, &query));
    let request = match token {
        Token::Query(_) => request,
        Token::Header(token) => request.bearer_auth(token),
        Token::Cookie(name, token) => request.header("cookie", format!("{name}={token}")),
    };
    request.send().await.unwrap()
}

async fn publish(app: &TestApp, token: Token<'_>) -> reqwest::Response {
    let request = app
        .client
        .post(app.url(PATH))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("topic", "https://example.com/books/1"),
            ("data", "x"),
        ]));
    let request = match token {
        Token::Header(token) => request.bearer_auth(token),
        Token::Cookie(name, token) => request.header("cookie", format!("{name}={token}")),
        Token::Query(_) => unreachable!("publishers' tokens never travel in the query"),
    };
    request.send().await.unwrap()
}

#[derive(Clone, Copy)]
enum Token<'a> {
    Header(&'a str),
    Cookie(&'static str, &'a str),
    Query(&'a str),
}

const EVERY_TOPIC: &[(&str, &str)] = &[("topic", "*")];

/// The problem's detail, after checking the status and (401) that the
/// challenge says `invalid_token`.
async fn refused_token(response: reqwest::Response) -> String {
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let problem = assert_problem(response, 401).await;
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    problem["detail"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn draft_07_subscriber_tokens_travel_in_the_header_the_query_and_both_cookies() {
    let app = spawn_app_with(enable).await;
    let token = draft_07(SUBSCRIBER_KEY, json!({"subscribe": ["*"]}));
    for (how, presented) in [
        ("header", Token::Header(&token)),
        ("query", Token::Query(&token)),
        ("draft-07 cookie", Token::Cookie(DRAFT_07_COOKIE, &token)),
        ("draft-08 cookie", Token::Cookie(DRAFT_08_COOKIE, &token)),
    ] {
        let response = subscribe(&app, EVERY_TOPIC, presented).await;
        assert_eq!(response.status(), 200, "{how}");
    }
    let response = subscribe(&app, EVERY_TOPIC, Token::Cookie("other_cookie", &token)).await;
    let problem = assert_problem(response, 401).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(DRAFT_08_COOKIE) && detail.contains(DRAFT_07_COOKIE),
        "the 401 names both cookies: {detail}"
    );
}

#[tokio::test]
async fn a_header_wins_over_the_query_and_cookies_and_the_query_over_cookies() {
    let app = spawn_app_with(enable).await;
    let good = draft_07(SUBSCRIBER_KEY, json!({"subscribe": ["*"]}));
    let bad = draft_07(PUBLISHER_KEY, json!({"subscribe": ["*"]}));
    let url = |token: &str| subscribe_url(&app, &[("topic", "*"), ("authorization", token)]);
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    // A good header with a bad query and a bad cookie: the header is used.
    let cookies = format!("{DRAFT_08_COOKIE}={bad}; {DRAFT_07_COOKIE}={bad}");
    let request = app
        .client
        .get(url(&bad))
        .bearer_auth(&good)
        .header("cookie", &cookies);
    assert_eq!(status(request).await, 200);
    // A bad header with a good cookie: still the header, refused.
    let request = app
        .client
        .get(subscribe_url(&app, EVERY_TOPIC))
        .bearer_auth(&bad)
        .header("cookie", format!("{DRAFT_08_COOKIE}={good}"));
    assert_eq!(status(request).await, 401);
    // A good query with bad cookies: the query (draft-07's order).
    let request = app.client.get(url(&good)).header("cookie", &cookies);
    assert_eq!(status(request).await, 200);
    // Draft-08's cookie before draft-07's.
    let request = app.client.get(subscribe_url(&app, EVERY_TOPIC)).header(
        "cookie",
        format!("{DRAFT_07_COOKIE}={bad}; {DRAFT_08_COOKIE}={good}"),
    );
    assert_eq!(status(request).await, 200);
}

#[tokio::test]
async fn publisher_tokens_travel_in_the_header_or_either_cookie_never_the_query() {
    let app = spawn_app_with(enable).await;
    let token = draft_07(PUBLISHER_KEY, json!({"publish": ["*"]}));
    for presented in [
        Token::Header(&token),
        Token::Cookie(DRAFT_07_COOKIE, &token),
        Token::Cookie(DRAFT_08_COOKIE, &token),
    ] {
        assert_eq!(publish(&app, presented).await.status(), 200);
    }
    let response = app
        .client
        .post(format!("{}?authorization={token}", app.url(PATH)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[("topic", "a"), ("data", "x")]))
        .send()
        .await
        .unwrap();
    assert_problem(response, 401).await;
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token() {
    let app = spawn_app_with(|config| {
        enable(config);
        with_issuer_and_audience(config);
    })
    .await;
    let valid = |claims: Value| {
        let mut claims = claims;
        claims["iss"] = json!(ISSUER);
        claims["aud"] = json!(AUDIENCE);
        claims
    };
    let subscribe_all = json!({"mercure": {"subscribe": ["*"]}});
    let good = sign(
        Algorithm::HS256,
        &hs256(SUBSCRIBER_KEY),
        None,
        &valid(subscribe_all.clone()),
    );
    assert_eq!(
        subscribe(&app, EVERY_TOPIC, Token::Header(&good))
            .await
            .status(),
        200
    );
    let mut expired = valid(subscribe_all.clone());
    expired["exp"] = json!(now() - 60);
    let mut wrong_issuer = valid(subscribe_all.clone());
    wrong_issuer["iss"] = json!("https://someone-else.example");
    let mut wrong_audience = valid(subscribe_all.clone());
    wrong_audience["aud"] = json!("https://another-hub.example/.well-known/mercure");
    let mut no_issuer = valid(subscribe_all.clone());
    no_issuer.as_object_mut().unwrap().remove("iss");
    let mut draft_08_without_exp = draft_08_claims(&["subscribe"]);
    draft_08_without_exp.as_object_mut().unwrap().remove("exp");
    let mut payload_not_an_object = draft_08_claims(&["subscribe"]);
    payload_not_an_object["authorization_details"][0]["payload"] = json!(["not", "an", "object"]);
    let cases = [
        (
            "expired",
            sign(Algorithm::HS256, &hs256(SUBSCRIBER_KEY), None, &expired),
            "ExpiredSignature",
        ),
        (
            "wrong alg (HS384 where HS256 is configured)",
            sign(
                Algorithm::HS384,
                &hs256(SUBSCRIBER_KEY),
                None,
                &valid(subscribe_all.clone()),
            ),
            "InvalidAlgorithm",
        ),
        (
            "wrong key (the publisher's)",
            sign(
                Algorithm::HS256,
                &hs256(PUBLISHER_KEY),
                None,
                &valid(subscribe_all.clone()),
            ),
            "InvalidSignature",
        ),
        (
            "wrong iss",
            sign(
                Algorithm::HS256,
                &hs256(SUBSCRIBER_KEY),
                None,
                &wrong_issuer,
            ),
            "InvalidIssuer",
        ),
        (
            "no iss",
            sign(Algorithm::HS256, &hs256(SUBSCRIBER_KEY), None, &no_issuer),
            "iss",
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                &hs256(SUBSCRIBER_KEY),
                None,
                &wrong_audience,
            ),
            "InvalidAudience",
        ),
        (
            "draft-08 without exp",
            sign(
                Algorithm::HS256,
                &hs256(SUBSCRIBER_KEY),
                Some("at+jwt"),
                &draft_08_without_exp,
            ),
            "exp",
        ),
        (
            "a draft-08 payload that is not an object",
            sign(
                Algorithm::HS256,
                &hs256(SUBSCRIBER_KEY),
                Some("at+jwt"),
                &payload_not_an_object,
            ),
            "`payload` is not a JSON object",
        ),
        (
            "an exp past the year 9999 (would overflow the clock)",
            sign(Algorithm::HS256, &hs256(SUBSCRIBER_KEY), None, &{
                let mut claims = valid(subscribe_all.clone());
                claims["exp"] = json!(u64::MAX);
                claims
            }),
            "the latest the hub accepts",
        ),
        ("not a JWT", "not-a-jwt".to_owned(), "refused"),
    ];
    for (case, token, named) in cases {
        let detail = refused_token(subscribe(&app, EVERY_TOPIC, Token::Header(&token)).await).await;
        assert!(detail.contains(named), "{case}: {detail}");
        // The same token in a cookie is judged the same.
        let response = subscribe(&app, EVERY_TOPIC, Token::Cookie(DRAFT_08_COOKIE, &token)).await;
        assert_eq!(response.status(), 401, "{case} (cookie)");
    }
    // Publishers' tokens are checked alike.
    let expired_publisher = sign(
        Algorithm::HS256,
        &hs256(PUBLISHER_KEY),
        None,
        &json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() - 60, "mercure": {"publish": ["*"]}}),
    );
    let detail = refused_token(publish(&app, Token::Header(&expired_publisher)).await).await;
    assert!(detail.contains("ExpiredSignature"), "{detail}");
}

#[tokio::test]
async fn a_pem_public_key_verifies_rs256_es256_and_eddsa_tokens_and_no_other_key() {
    for (alg, public, minter, stranger) in [
        (
            "RS256",
            "rsa-public.pem",
            Minter::rs256(),
            Some(Minter::rsa("rsa2-private.pem")),
        ),
        ("ES256", "ec-public.pem", Minter::es256(), None),
        ("EdDSA", "ed-public.pem", Minter::eddsa(), None),
    ] {
        let pem = std::fs::read_to_string(key_path(public)).unwrap();
        let app = spawn_app_with(|config| {
            enable(config);
            config.mercure.subscriber_jwt.alg = alg.to_owned();
            config.mercure.subscriber_jwt.key = Some(pem);
        })
        .await;
        let claims = json!({"mercure": {"subscribe": ["*"]}});
        let token = minter.token(&claims);
        let response = subscribe(&app, EVERY_TOPIC, Token::Header(&token)).await;
        assert_eq!(response.status(), 200, "{alg}");
        // The HMAC secret of the publisher does not verify subscribers.
        let hmac = draft_07(PUBLISHER_KEY, json!({"subscribe": ["*"]}));
        let detail = refused_token(subscribe(&app, EVERY_TOPIC, Token::Header(&hmac)).await).await;
        assert!(detail.contains("InvalidAlgorithm"), "{alg}: {detail}");
        if let Some(stranger) = stranger {
            let token = stranger.token(&claims);
            let detail =
                refused_token(subscribe(&app, EVERY_TOPIC, Token::Header(&token)).await).await;
            assert!(detail.contains("InvalidSignature"), "{alg}: {detail}");
        }
    }
}

#[tokio::test]
async fn a_jwks_url_verifies_tokens_by_kid_and_a_key_not_in_it_is_refused() {
    let trusted = Minter::es256().with_kid("trusted");
    let jwks = JwksServer::start(vec![trusted.jwk()]).await;
    let url = jwks.url();
    let app = spawn_app_with(|config| {
        enable(config);
        config.mercure.publisher_jwt.alg = "ES256".to_owned();
        config.mercure.publisher_jwt.key = Some(url);
    })
    .await;
    let claims = json!({"mercure": {"publish": ["*"]}});
    let token = trusted.token(&claims);
    let response = publish(&app, Token::Header(&token)).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    // A kid the set doesn't hold (re-read once, still absent).
    let stranger = Minter::es256().with_kid("not-in-the-set").token(&claims);
    let detail = refused_token(publish(&app, Token::Header(&stranger)).await).await;
    assert!(
        detail.contains("\"not-in-the-set\" is not in the key set"),
        "{detail}"
    );
    // No kid: every key of the set that verifies ES256 is tried.
    let without_kid = Minter::es256().token(&claims);
    assert_eq!(
        publish(&app, Token::Header(&without_kid)).await.status(),
        200
    );
    // The trusted kid on a token of another algorithm.
    let rs256 = Minter::rs256().with_kid("trusted").token(&claims);
    let detail = refused_token(publish(&app, Token::Header(&rs256)).await).await;
    assert!(detail.contains("InvalidAlgorithm"), "{detail}");
    assert!(jwks.requests() >= 1, "the set was fetched");
}

#[tokio::test]
async fn a_jwks_file_verifies_tokens_and_a_key_not_in_it_is_refused() {
    let trusted = Minter::rs256().with_kid("trusted");
    let directory = std::env::temp_dir().join(format!("ssehub-mercure-tokens-{}", now()));
    std::fs::create_dir_all(&directory).unwrap();
    let file = directory.join("jwks.json");
    std::fs::write(&file, json!({"keys": [trusted.jwk()]}).to_string()).unwrap();
    let location = format!("file://{}", file.display());
    let app = spawn_app_with(|config| {
        enable(config);
        config.mercure.subscriber_jwt.alg = "RS256".to_owned();
        config.mercure.subscriber_jwt.key = Some(location);
    })
    .await;
    let claims = json!({"mercure": {"subscribe": ["*"]}});
    let response = subscribe(&app, EVERY_TOPIC, Token::Header(&trusted.token(&claims))).await;
    assert_eq!(response.status(), 200);
    let other = Minter::rsa("rsa2-private.pem").with_kid("other");
    let detail =
        refused_token(subscribe(&app, EVERY_TOPIC, Token::Header(&other.token(&claims))).await)
            .await;
    assert!(
        detail.contains("\"other\" is not in the key set"),
        "{detail}"
    );
    // Another key claiming the trusted kid: its signature doesn't verify.
    let impostor = Minter::rsa("rsa2-private.pem").with_kid("trusted");
    let detail =
        refused_token(subscribe(&app, EVERY_TOPIC, Token::Header(&impostor.token(&claims))).await)
            .await;
    assert!(detail.contains("InvalidSignature"), "{detail}");
    std::fs::remove_dir_all(&directory).unwrap();
}

/// A hub that speaks draft-08 only.
async fn draft_08_app() -> TestApp {
    spawn_app_with(|config| {
        enable(config);
        with_issuer_and_audience(config);
        config.mercure.protocol_version_compatibility = 8;
    })
    .await
}

#[tokio::test]
async fn protocol_8_accepts_draft_08_tokens_by_header_and_its_cookie() {
    let app = draft_08_app().await;
    let subscriber = draft_08(SUBSCRIBER_KEY, &["subscribe"]);
    let query = &[
        ("match", "https://example.com/books/1"),
        ("last_event_id", "earliest"),
    ];
    for presented in [
        Token::Header(&subscriber),
        Token::Cookie(DRAFT_08_COOKIE, &subscriber),
    ] {
        assert_eq!(subscribe(&app, query, presented).await.status(), 200);
    }
    let publisher = draft_08(PUBLISHER_KEY, &["publish"]);
    for presented in [
        Token::Header(&publisher),
        Token::Cookie(DRAFT_08_COOKIE, &publisher),
    ] {
        assert_eq!(publish(&app, presented).await.status(), 200);
    }
}

#[tokio::test]
async fn protocol_8_refuses_draft_07_tokens_and_cookie_naming_what_to_use() {
    let app = draft_08_app().await;
    let query = &[("match", "*")];
    // A draft-07 token, valid in every other way (iss, aud, exp, key).
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600,
        "mercure": {"subscribe": ["*"], "publish": ["*"]},
    });
    let subscriber = sign(Algorithm::HS256, &hs256(SUBSCRIBER_KEY), None, &claims);
    let detail = refused_token(subscribe(&app, query, Token::Header(&subscriber)).await).await;
    assert!(
        detail.contains("typ: at+jwt") && detail.contains("= 8"),
        "{detail}"
    );
    let publisher = sign(
        Algorithm::HS256,
        &hs256(PUBLISHER_KEY),
        Some("JWT"),
        &claims,
    );
    let detail = refused_token(publish(&app, Token::Header(&publisher)).await).await;
    assert!(detail.contains("typ: at+jwt"), "{detail}");
    // Draft-07's cookie is not read, even with a draft-08 token in it.
    let token = draft_08(SUBSCRIBER_KEY, &["subscribe"]);
    let response = subscribe(&app, query, Token::Cookie(DRAFT_07_COOKIE, &token)).await;
    let problem = assert_problem(response, 401).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(DRAFT_07_COOKIE) && detail.contains(DRAFT_08_COOKIE),
        "{detail}"
    );
}

#[tokio::test]
async fn protocol_8_refuses_draft_07_selectors_and_query_names_with_400() {
    let app = draft_08_app().await;
    let token = draft_08(SUBSCRIBER_KEY, &["subscribe"]);
    for (query, named, instead) in [
        (vec![("topic", "*")], "`topic`", "`match`"),
        (
            vec![("match", "*"), ("Last-Event-ID", "earliest")],
            "`Last-Event-ID`",
            "`last_event_id`",
        ),
        (
            vec![("match", "*"), ("lastEventID", "earliest")],
            "`lastEventID`",
            "`last_event_id`",
        ),
    ] {
        let response = subscribe(&app, &query, Token::Header(&token)).await;
        let problem = assert_problem(response, 400).await;
        assert_eq!(problem["type"], "urn:ssehub:problem:bad-mercure-request");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(named) && detail.contains(instead),
            "{detail}"
        );
    }
    // A token in the query: 400 whose challenge says `invalid_request`.
    let response = subscribe(&app, &[("match", "*")], Token::Query(&token)).await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("error=\"invalid_request\""),
        "{challenge}"
    );
    let problem = assert_problem(response, 400).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:invalid-token-request");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("`authorization`") && detail.contains("Authorization: Bearer"),
        "{detail}"
    );
}

#[tokio::test]
async fn protocol_7_accepts_draft_07_and_draft_08_tokens_side_by_side() {
    let app = spawn_app_with(|config| {
        enable(config);
        with_issuer_and_audience(config);
    })
    .await;
    let draft_07_token = sign(
        Algorithm::HS256,
        &hs256(SUBSCRIBER_KEY),
        None,
        &json!({"iss": ISSUER, "aud": AUDIENCE, "mercure": {"subscribe": ["*"]}}),
    );
    let draft_08_token = draft_08(SUBSCRIBER_KEY, &["subscribe"]);
    for token in [&draft_07_token, &draft_08_token] {
        for query in [
            &[("topic", "*"), ("lastEventID", "earliest")][..],
            &[("match", "*"), ("last_event_id", "earliest")][..],
        ] {
            let response = subscribe(&app, query, Token::Header(token)).await;
            assert_eq!(response.status(), 200, "{query:?}");
        }
    }
}

#[test]
fn bad_mercure_token_settings_exit_64_naming_key_value_and_form() {
    type Env<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Env, &str, &str); 4] = [
        (
            &[("SSEHUB_MERCURE__PROTOCOL_VERSION_COMPATIBILITY", "9")],
            "mercure.protocol_version_compatibility",
            "must be 7",
        ),
        (
            &[(
                "SSEHUB_MERCURE__SUBSCRIBER_JWT__KEY",
                "https://idp.example/jwks.json",
            )],
            "mercure.subscriber_jwt.key",
            "\"HS256\"",
        ),
        (
            &[
                ("SSEHUB_MERCURE__PUBLISHER_JWT__ALG", "ES256"),
                ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", "/no/such/jwks.json"),
            ],
            "mercure.publisher_jwt.key",
            "/no/such/jwks.json",
        ),
        (
            &[
                ("SSEHUB_MERCURE__ENABLED", "true"),
                ("SSEHUB_MERCURE__ANONYMOUS", "true"),
                ("SSEHUB_MERCURE__PROTOCOL_VERSION_COMPATIBILITY", "8"),
                ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", PUBLISHER_KEY),
            ],
            "mercure.publisher_jwt.issuer",
            "= 8",
        ),
    ];
    for (env, key, says) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SSEHUB_") || name.starts_with("OTEL_") {
                command.env_remove(name);
            }
        }
        let output = command
            .env("SSEHUB_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{env:?}: {stderr}");
        assert!(
            stderr.contains(key) && stderr.contains(says),
            "{env:?}: {stderr}"
        );
    }
}

/// `ssehub token ARGS` with `env` on top of a clean environment.
fn token_command(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    for (name, _) in std::env::vars() {
        if name.starts_with("SSEHUB_") || name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    command
        .arg("token")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ssehub token")
}

fn minted(env: &[(&str, &str)], args: &[&str]) -> String {
    let output = token_command(env, args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().next().expect("a token").to_owned()
}

fn header_and_claims(token: &str) -> (Header, Value) {
    let header = jsonwebtoken::decode_header(token).unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token).unwrap();
    (header, claims)
}

const SHARED_KEY_ENV: [(&str, &str); 3] = [
    ("SSEHUB_MERCURE__ENABLED", "true"),
    ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", PUBLISHER_KEY),
    ("SSEHUB_MERCURE__SUBSCRIBER_JWT__KEY", SUBSCRIBER_KEY),
];

#[tokio::test]
async fn ssehub_token_mints_draft_07_tokens_the_hub_accepts_each_with_its_roles_key() {
    let publisher = minted(&SHARED_KEY_ENV, &["--mercure", "7", "--publish", "*"]);
    let subscriber = minted(
        &SHARED_KEY_ENV,
        &[
            "--mercure",
            "7",
            "--subscribe",
            "https://example.com/books/{id}",
            "--payload",
            r#"{"user": 42}"#,
        ],
    );
    let (header, claims) = header_and_claims(&subscriber);
    assert_eq!(header.typ.as_deref(), Some("JWT"), "not an access token");
    assert_eq!(
        claims["mercure"],
        json!({"subscribe": ["https://example.com/books/{id}"], "payload": {"user": 42}})
    );
    assert!(claims["exp"].as_i64().unwrap() > now());
    let app = spawn_app_with(enable).await;
    assert_eq!(publish(&app, Token::Header(&publisher)).await.status(), 200);
    let query = &[("topic", "https://example.com/books/{id}")];
    let response = subscribe(&app, query, Token::Header(&subscriber)).await;
    assert_eq!(response.status(), 200);
    // Each token is signed with its role's key, and no other.
    let response = subscribe(&app, query, Token::Header(&publisher)).await;
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn ssehub_token_mints_draft_08_access_tokens_a_draft_08_hub_accepts() {
    let mut env = SHARED_KEY_ENV.to_vec();
    env.extend([
        ("SSEHUB_MERCURE__PROTOCOL_VERSION_COMPATIBILITY", "8"),
        ("SSEHUB_MERCURE__PUBLISHER_JWT__ISSUER", ISSUER),
        ("SSEHUB_MERCURE__PUBLISHER_JWT__AUDIENCE", AUDIENCE),
        ("SSEHUB_MERCURE__SUBSCRIBER_JWT__ISSUER", ISSUER),
        ("SSEHUB_MERCURE__SUBSCRIBER_JWT__AUDIENCE", AUDIENCE),
    ]);
    let publisher = minted(&env, &["--mercure", "8", "--publish", "*"]);
    let subscriber = minted(
        &env,
        &[
            "--mercure",
            "8",
            "--sub",
            "user-42",
            "--subscribe-urlpattern",
            "https://example.com/books/:id",
            "--payload",
            r#"{"tenant": "a"}"#,
        ],
    );
    let (header, claims) = header_and_claims(&subscriber);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    for claim in ["iss", "aud", "exp", "sub", "client_id", "iat", "jti"] {
        assert!(
            claims.get(claim).is_some(),
            "RFC 9068 claim {claim}: {claims}"
        );
    }
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "user-42");
    assert_eq!(
        claims["authorization_details"],
        json!([{
            "type": "https://mercure.rocks/authorization-detail",
            "actions": ["subscribe"],
            "topics": [{"match": "https://example.com/books/:id", "match_type": "urlpattern"}],
            "payload": {"tenant": "a"},
        }])
    );
    let app = draft_08_app().await;
    assert_eq!(publish(&app, Token::Header(&publisher)).await.status(), 200);
    let query = &[("match_urlpattern", "https://example.com/books/:id")];
    let response = subscribe(&app, query, Token::Header(&subscriber)).await;
    assert_eq!(response.status(), 200);
    // A draft-07 token minted for that hub is refused there, with a warning.
    let output = token_command(&env, &["--mercure", "7", "--publish", "*"]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--mercure 8"));
}

#[tokio::test]
async fn ssehub_token_signs_with_a_private_key_for_a_public_key_hub() {
    let public = std::fs::read_to_string(key_path("ed-public.pem")).unwrap();
    let private = key_path("ed-private.pem").display().to_string();
    let env = [
        ("SSEHUB_MERCURE__ENABLED", "true"),
        ("SSEHUB_MERCURE__ANONYMOUS", "true"),
        ("SSEHUB_MERCURE__PUBLISHER_JWT__ALG", "EdDSA"),
        ("SSEHUB_MERCURE__PUBLISHER_JWT__KEY", public.as_str()),
    ];
    let token = minted(
        &env,
        &[
            "--mercure",
            "7",
            "--publish",
            "*",
            "--key",
            private.as_str(),
        ],
    );
    let app = spawn_app_with(|config| {
        config.mercure.enabled = true;
        config.mercure.anonymous = true;
        config.mercure.publisher_jwt.alg = "EdDSA".to_owned();
        config.mercure.publisher_jwt.key = Some(public.clone());
    })
    .await;
    assert_eq!(publish(&app, Token::Header(&token)).await.status(), 200);
    // Without --key there is nothing to sign with.
    let output = token_command(&env, &["--mercure", "7", "--publish", "*"]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--key FILE"), "{stderr}");
}

#[test]
fn ssehub_token_refuses_what_it_cannot_mint_for_mercure_with_exit_64() {
    let env = SHARED_KEY_ENV;
    let cases: [(&[&str], &str); 6] = [
        (&["--mercure", "9", "--publish", "*"], "expected 7"),
        (
            &["--mercure", "8", "--publish", "*"],
            "mercure.publisher_jwt.issuer",
        ),
        (
            &["--mercure", "7", "--publish-urlpattern", "/books/:id"],
            "--mercure 8",
        ),
        (&["--payload", "{}", "--publish", "orders.*"], "--mercure"),
        (
            &["--mercure", "7", "--subscribe", "*", "--payload", "[1]"],
            "JSON object",
        ),
        (
            &["--mercure", "7", "--publish", "*", "--subscribe", "*"],
            "differ",
        ),
    ];
    for (args, says) in cases {
        let output = token_command(&env, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(0), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn the_hub_is_not_ready_until_a_mercure_jwks_named_by_url_is_read() {
    // Nothing listens there: the set can't be read.
    let unreadable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/jwks.json", listener.local_addr().unwrap())
    };
    let app = spawn_app_with(|config| {
        enable(config);
        config.mercure.subscriber_jwt.alg = "ES256".to_owned();
        config.mercure.subscriber_jwt.key = Some(unreadable);
    })
    .await;
    let problem = assert_problem(app.get("/readyz").await, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:keys-unavailable");
    assert!(
        problem["detail"].as_str().unwrap().contains("mercure"),
        "{problem}"
    );

    let jwks = JwksServer::start(vec![Minter::es256().with_kid("k").jwk()]).await;
    let url = jwks.url();
    let app = spawn_app_with(|config| {
        enable(config);
        config.mercure.subscriber_jwt.alg = "ES256".to_owned();
        config.mercure.subscriber_jwt.key = Some(url);
    })
    .await;
    wait_ready(&app, true).await;
    assert!(jwks.requests() >= 1);
}
