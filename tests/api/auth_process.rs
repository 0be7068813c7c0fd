//! Auth settings of the real binary: bad values and key files exit 64
//! naming their key, and no token, key or secret ever reaches the log.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::support::jwt::{Minter, SECRET, claims, key_path};
use crate::support::process::HubProcess;

fn ssehub() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SSEHUB_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    // Key files are read after binding: never the default port.
    command.env("SSEHUB_LISTEN", "127.0.0.1:0");
    command
}

#[test]
fn bad_auth_settings_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(
        &not_pem,
        "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    let bad_jwks = dir.path().join("jwks.json");
    std::fs::write(&bad_jwks, r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#).unwrap();
    let short_secret = dir.path().join("secret");
    std::fs::write(&short_secret, "short\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![(
                "SSEHUB_AUTH__JWT__PUBLIC_KEY_FILE",
                missing.display().to_string(),
            )],
            "auth.jwt.public_key_file",
        ),
        (
            vec![(
                "SSEHUB_AUTH__JWT__PUBLIC_KEY_FILE",
                not_pem.display().to_string(),
            )],
            "auth.jwt.public_key_file",
        ),
        (
            vec![("SSEHUB_AUTH__JWT__JWKS", bad_jwks.display().to_string())],
            "auth.jwt.jwks",
        ),
        (
            vec![(
                "SSEHUB_AUTH__JWT__JWKS",
                "ftp://keys.example/jwks".to_owned(),
            )],
            "auth.jwt.jwks",
        ),
        (
            vec![("SSEHUB_AUTH__JWT__SECRET", "too-short".to_owned())],
            "auth.jwt.secret",
        ),
        (
            vec![(
                "SSEHUB_AUTH__JWT__SECRET_FILE",
                short_secret.display().to_string(),
            )],
            "auth.jwt.secret_file",
        ),
        (
            vec![("SSEHUB_AUTH__SUBSCRIBE", "jwt".to_owned())],
            "auth.subscribe",
        ),
        (
            vec![("SSEHUB_AUTH__SUBSCRIBE", "tokens".to_owned())],
            "auth.subscribe",
        ),
        (
            vec![(
                "SSEHUB_AUTH__PUBLIC_TOPICS",
                r#"["public.*", "orders.4*"]"#.to_owned(),
            )],
            "auth.public_topics",
        ),
        (
            vec![("SSEHUB_AUTH__PUBLIC_TOPICS", r#"["user.{sub}"]"#.to_owned())],
            "auth.public_topics",
        ),
        (
            vec![("SSEHUB_AUTH__COOKIE_NAME", "my cookie".to_owned())],
            "auth.cookie_name",
        ),
        (
            vec![(
                "SSEHUB_RATE_LIMITS__TRUSTED_PROXIES",
                r#"["10.0.0.0/33"]"#.to_owned(),
            )],
            "rate_limits.trusted_proxies",
        ),
        (
            vec![(
                "SSEHUB_RATE_LIMITS__PUBLISH_PER_ADDRESS__PER_SECOND",
                "-1".to_owned(),
            )],
            "rate_limits.publish_per_address",
        ),
        (
            vec![
                (
                    "SSEHUB_RATE_LIMITS__SUBSCRIBE_PER_ADDRESS__PER_SECOND",
                    "5".to_owned(),
                ),
                (
                    "SSEHUB_RATE_LIMITS__SUBSCRIBE_PER_ADDRESS__BURST",
                    "0".to_owned(),
                ),
            ],
            "rate_limits.subscribe_per_address",
        ),
        (
            vec![(
                "SSEHUB_AUTH__METRICS_KEYS_FILE",
                missing.display().to_string(),
            )],
            "auth.metrics_keys_file",
        ),
    ];
    for (env, key) in cases {
        let output = ssehub()
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{env:?}: {stderr}");
        assert!(stderr.contains(key), "{env:?} should name {key}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_key_or_secret_reaches_the_json_log() {
    const STATIC_KEY: &str = "static-key-that-must-not-be-logged";
    let keys = format!("[\"{STATIC_KEY}\"]");
    let public_key = key_path("rsa-public.pem").display().to_string();
    let mut hub = HubProcess::start(&[
        // Everything every crate logs, the access log included.
        ("RUST_LOG", "trace"),
        ("SSEHUB_AUTH__JWT__SECRET", SECRET),
        ("SSEHUB_AUTH__JWT__PUBLIC_KEY_FILE", public_key.as_str()),
        ("SSEHUB_AUTH__PUBLISH_KEYS", keys.as_str()),
        ("SSEHUB_AUTH__SUBSCRIBE", "jwt"),
        (
            "SSEHUB_AUTH__METRICS_KEYS",
            "[\"metrics-key-not-to-be-logged\"]",
        ),
        ("SSEHUB_DRAIN__DELAY", "0s"),
    ]);
    let client = reqwest::Client::new();
    let good = Minter::hs256(SECRET).token(&claims("42", &["t"], &["t"], 60));
    let rsa = Minter::rs256().token(&claims("42", &["t"], &["t"], 60));
    let expired = Minter::hs256(SECRET).token(&claims("42", &["t"], &["t"], -120));
    let forged = Minter::hs256("a-secret-nobody-configured-at-all!!").token(&claims(
        "42",
        &["*"],
        &["*"],
        60,
    ));
    let secrets = [
        good.as_str(),
        rsa.as_str(),
        expired.as_str(),
        forged.as_str(),
        STATIC_KEY,
        SECRET,
        "metrics-key-not-to-be-logged",
    ];

    for token in [&good, &rsa, &expired, &forged] {
        let _ = client
            .post(hub.url("/v1/topics/t/events"))
            .bearer_auth(token)
            .json(&json!({"data": "x"}))
            .send()
            .await
            .unwrap();
        // In the query, in a cookie, in the header; good ones open a stream
        // that is dropped at once.
        for request in [
            client.get(hub.url(&format!("/v1/events?topic=t&access_token={token}"))),
            client
                .get(hub.url("/v1/events?topic=t"))
                .header("cookie", format!("ssehub_token={token}")),
            client.get(hub.url("/v1/events?topic=t")).bearer_auth(token),
        ] {
            let response = request.send().await.unwrap();
            drop(response);
        }
    }
    let bad_query = client
        .get(hub.url(&format!("/v1/events?topic=bad%20topic&access_token={good}")))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_query.status(), 400);
    let _ = client
        .get(hub.url("/metrics"))
        .bearer_auth("metrics-key-not-to-be-logged")
        .send()
        .await
        .unwrap();
    let _ = client
        .post(hub.url("/v1/topics/t/events"))
        .bearer_auth(STATIC_KEY)
        .json(&json!({"data": 1}))
        .send()
        .await
        .unwrap();

    hub.signal("TERM");
    let hub = tokio::task::spawn_blocking(move || {
        assert!(hub.wait_exit(Duration::from_secs(20)).is_some(), "exits");
        hub
    })
    .await
    .unwrap();
    let lines = hub.log.lock().unwrap().clone();
    for line in &lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    let requests = lines
        .iter()
        .filter(|line| line.contains("\"message\":\"request\""))
        .count();
    assert!(requests >= 15, "the access log was on: {requests} lines");
    let text = lines.join("\n");
    for secret in secrets {
        // Any fragment long enough to identify it (a JWT's signature part).
        let signature = secret.rsplit('.').next().unwrap();
        assert!(
            !text.contains(secret) && !text.contains(signature),
            "a secret reached the log: {secret}"
        );
    }
    assert!(
        !text.contains("access_token"),
        "the query string was logged"
    );
}
