//! `ssehub token`: the real binary mints a token from the hub's own
//! configuration, and a hub started with that configuration accepts it for
//! what it grants and nothing more; every way it can't mint one exits 64
//! saying what to set or pass.

use std::process::{Command, Output};

use crate::support::jwt::{SECRET, key_path};
use crate::support::process::HubProcess;

/// `ssehub token ARGS` with `env` on top of a clean environment.
fn token_command(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    for (key, _) in std::env::vars() {
        if key.starts_with("SSEHUB_") || key.starts_with("OTEL_") {
            command.env_remove(key);
        }
    }
    command
        .arg("token")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run ssehub token")
}

/// The token printed, after checking the command succeeded.
fn minted(env: &[(&str, &str)], args: &[&str]) -> String {
    let output = token_command(env, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout.lines().next().expect("a token").to_owned()
}

async fn publish_status(hub: &HubProcess, topic: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .post(hub.url(&format!("/v1/topics/{topic}/events")))
        .bearer_auth(token)
        .json(&serde_json::json!({"data": "hello"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn subscribe_status(hub: &HubProcess, topic: &str, token: &str) -> u16 {
    let response = reqwest::Client::new()
        .get(hub.url(&format!("/v1/events?topic={topic}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

#[tokio::test]
async fn an_hs256_token_from_the_configured_secret_grants_what_it_says() {
    let env = [
        ("SSEHUB_AUTH__JWT__SECRET", SECRET),
        ("SSEHUB_AUTH__SUBSCRIBE", "jwt"),
        ("SSEHUB_AUTH__JWT__ISSUER", "https://issuer.example"),
        ("SSEHUB_AUTH__JWT__AUDIENCE", "ssehub"),
    ];
    // `iss` and `aud` are left to their defaults: the hub's own.
    let token = minted(
        &env,
        &[
            "--sub",
            "42",
            "--publish",
            "orders.*",
            "--subscribe",
            "user.{sub}",
            "--ttl",
            "10m",
        ],
    );
    let hub = HubProcess::start(&env);
    assert_eq!(publish_status(&hub, "orders.1", &token).await, 202);
    assert_eq!(publish_status(&hub, "invoices.1", &token).await, 403);
    assert_eq!(subscribe_status(&hub, "user.42", &token).await, 200);
    assert_eq!(subscribe_status(&hub, "user.43", &token).await, 403);
}

#[tokio::test]
async fn a_token_signed_with_a_private_key_passes_the_hubs_public_key() {
    for (private, public) in [
        ("ed-private.pem", "ed-public.pem"),
        ("ec-private.pem", "ec-public.pem"),
        ("rsa-private.pem", "rsa-public.pem"),
    ] {
        let public = key_path(public).display().to_string();
        let private = key_path(private).display().to_string();
        let env = [("SSEHUB_AUTH__JWT__PUBLIC_KEY_FILE", public.as_str())];
        let token = minted(&env, &["--key", &private, "--publish", "orders"]);
        let hub = HubProcess::start(&env);
        assert_eq!(
            publish_status(&hub, "orders", &token).await,
            202,
            "{private}"
        );
        assert_eq!(
            publish_status(&hub, "other", &token).await,
            403,
            "{private}"
        );
    }
}

#[tokio::test]
async fn the_curl_line_publishes_on_the_configured_listen_address() {
    let hub = HubProcess::start(&[("SSEHUB_AUTH__JWT__SECRET", SECRET)]);
    let listen = hub.addr.to_string();
    let env = [
        ("SSEHUB_AUTH__JWT__SECRET", SECRET),
        ("SSEHUB_LISTEN", listen.as_str()),
    ];
    let output = token_command(
        &env,
        &["--publish", "orders.*", "--subscribe", "orders.*", "--curl"],
    );
    assert!(output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let publish = stdout
        .lines()
        .find(|line| line.starts_with("curl") && line.contains("-X POST"))
        .unwrap_or_else(|| panic!("a publish line in:\n{stdout}"));
    let subscribe = stdout
        .lines()
        .find(|line| line.starts_with("curl -N"))
        .unwrap_or_else(|| panic!("a subscribe line in:\n{stdout}"));
    assert!(
        subscribe.contains(&format!("http://{listen}/v1/events?topic=orders.example")),
        "{subscribe}"
    );
    let answer = Command::new("sh").args(["-c", publish]).output().unwrap();
    let answer = String::from_utf8_lossy(&answer.stdout);
    assert!(answer.contains("\"topic\":\"orders.example\""), "{answer}");
}

#[test]
fn help_shows_every_flag() {
    let output = token_command(&[], &["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--sub",
        "--publish",
        "--subscribe",
        "--ttl",
        "--aud",
        "--iss",
        "--key",
        "--kid",
        "--curl",
        "--config",
    ] {
        assert!(help.contains(flag), "{flag} in:\n{help}");
    }
}

#[test]
fn each_way_it_cannot_mint_exits_64_saying_what_to_do() {
    let public = key_path("ed-public.pem").display().to_string();
    let secret = [("SSEHUB_AUTH__JWT__SECRET", SECRET)];
    let public_only = [("SSEHUB_AUTH__JWT__PUBLIC_KEY_FILE", public.as_str())];
    /// The environment, the arguments, and words the error must say.
    type Case<'a> = (&'a [(&'a str, &'a str)], Vec<&'a str>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (&[], vec!["--publish", "a"], &["auth.jwt.secret", "--key"]),
        (
            &public_only,
            vec!["--publish", "a"],
            &["auth.jwt.public_key_file", "--key FILE"],
        ),
        (
            &secret,
            vec!["--publish", "a", "--ttl", "soon"],
            &["--ttl", "\"1h\""],
        ),
        (
            &secret,
            vec!["--publish", "a", "--ttl", "0s"],
            &["--ttl", "at least 1s"],
        ),
        (
            &secret,
            vec!["--publish", "a.*.b"],
            &["--publish", "\"a.*.b\"", "last segment"],
        ),
        (
            &secret,
            vec![],
            &["--publish PATTERN", "--subscribe PATTERN"],
        ),
        (
            &secret,
            vec!["--publish", "a", "--key", &public],
            &["--key", "not a PEM private key"],
        ),
        (&secret, vec!["--publish", "a", "--bogus"], &["--bogus"]),
        (
            &[("SSEHUB_AUTH__JWT__SECRET", "short")],
            vec!["--publish", "a"],
            &["auth.jwt.secret", "32 bytes"],
        ),
    ];
    for (env, args, says) in cases {
        let output = token_command(env, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: no token printed");
        for words in says {
            assert!(stderr.contains(words), "{args:?}: {words:?} in {stderr}");
        }
    }
}
