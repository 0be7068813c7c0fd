use super::*;

fn env_from(pairs: &[(&str, &str)]) -> Env {
    // figment's Env reads the process environment; tests give it a
    // private prefix so they don't race with each other.
    let prefix = format!("SSEHUB_TEST_{}_", fastrand::u64(..));
    for (key, value) in pairs {
        // SAFETY: each test uses a unique variable prefix, so no other
        // thread reads these variables concurrently.
        unsafe { std::env::set_var(format!("{prefix}{key}"), value) };
    }
    Env::prefixed(&prefix).split("__")
}

#[test]
fn defaults_are_valid_and_local() {
    let config = Config::load_from(None, env_from(&[])).unwrap();
    assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.heartbeat.interval, HEARTBEAT_DEFAULT);
}

#[test]
fn file_then_env_layering() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ssehub.toml");
    std::fs::write(
        &path,
        "listen = \"0.0.0.0:9000\"\n[heartbeat]\ninterval = \"5s\"\n[history]\nsize = 10\n",
    )
    .unwrap();
    let config = Config::load_from(
        Some(&path),
        env_from(&[("HISTORY__SIZE", "20"), ("STREAM__RETRY", "500ms")]),
    )
    .unwrap();
    assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.heartbeat.interval, Duration::from_secs(5));
    assert_eq!(config.history.size, 20, "env wins over file");
    assert_eq!(config.stream.retry, Duration::from_millis(500));
}

#[test]
fn the_console_is_on_by_default_and_can_be_turned_off() {
    assert!(Config::default().console.enabled);
    let config = Config::load_from(None, env_from(&[("CONSOLE__ENABLED", "false")])).unwrap();
    assert!(!config.console.enabled);
    let error = Config::load_from(None, env_from(&[("CONSOLE__ENABLED", "maybe")])).unwrap_err();
    assert!(error.to_string().contains("console.enabled"), "{error}");
}

#[test]
fn stream_shards_default_to_one_per_two_cores_and_are_bounded() {
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_eq!(Config::default().stream.shards, (cores / 2).max(1));
    let off = Config::load_from(None, env_from(&[("STREAM__SHARDS", "0")])).unwrap();
    assert_eq!(off.stream.shards, 0);
    let error = Config::load_from(None, env_from(&[("STREAM__SHARDS", "1000")])).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("stream.shards") && message.contains("at most 256"),
        "{message}"
    );
    let error = Config::load_from(None, env_from(&[("STREAM__SHARDS", "many")])).unwrap_err();
    assert!(error.to_string().contains("shards"), "{error}");
}

#[test]
fn stream_coalesce_is_off_by_default_and_bounded() {
    assert_eq!(Config::default().stream.coalesce, Duration::ZERO);
    let config = Config::load_from(None, env_from(&[("STREAM__COALESCE", "5ms")])).unwrap();
    assert_eq!(config.stream.coalesce, Duration::from_millis(5));
    let error = Config::load_from(None, env_from(&[("STREAM__COALESCE", "2s")])).unwrap_err();
    assert!(error.to_string().contains("stream.coalesce"), "{error}");
}

#[test]
fn batch_cap_and_what_publish_limits_count() {
    let config = Config::default();
    assert_eq!(
        config.limits.max_events_per_request,
        MAX_EVENTS_PER_REQUEST_DEFAULT
    );
    assert_eq!(config.rate_limits.publish_counts, PublishCount::Events);
    let config = Config::load_from(
        None,
        env_from(&[
            ("LIMITS__MAX_EVENTS_PER_REQUEST", "20"),
            ("RATE_LIMITS__PUBLISH_COUNTS", "requests"),
        ]),
    )
    .unwrap();
    assert_eq!(config.limits.max_events_per_request, 20);
    assert_eq!(config.rate_limits.publish_counts, PublishCount::Requests);
    let error =
        Config::load_from(None, env_from(&[("LIMITS__MAX_EVENTS_PER_REQUEST", "0")])).unwrap_err();
    assert!(
        error.to_string().contains("limits.max_events_per_request"),
        "{error}"
    );
    let error =
        Config::load_from(None, env_from(&[("RATE_LIMITS__PUBLISH_COUNTS", "bytes")])).unwrap_err();
    assert!(
        error.to_string().contains("rate_limits.publish_counts"),
        "{error}"
    );
}

#[test]
fn history_bounds_have_defaults_and_refuse_what_cannot_hold_an_event() {
    let config = Config::default();
    assert_eq!(config.history.max_topics, HISTORY_MAX_TOPICS_DEFAULT);
    assert_eq!(config.history.max_bytes, HISTORY_MAX_BYTES_DEFAULT);
    let config = Config::load_from(
        None,
        env_from(&[
            ("HISTORY__MAX_TOPICS", "10"),
            ("HISTORY__MAX_BYTES", "1048576"),
        ]),
    )
    .unwrap();
    assert_eq!(
        (config.history.max_topics, config.history.max_bytes),
        (10, 1 << 20)
    );
    let error = Config::load_from(None, env_from(&[("HISTORY__MAX_TOPICS", "0")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`history.max_topics`: is 0; must be"),
        "{error}"
    );
    let error = Config::load_from(None, env_from(&[("HISTORY__MAX_BYTES", "1000")]))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("`history.max_bytes`: is 1000; must be a number of bytes of at least limits.max_event_bytes (65536)"),
        "{error}"
    );
    let error = Config::load_from(None, env_from(&[("HISTORY__MAX_BYTES", "lots")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("history.max_bytes"), "{error}");
}

#[test]
fn missing_explicit_file_is_an_error() {
    let error = Config::load_from(Some(Path::new("no/such/file.toml")), env_from(&[])).unwrap_err();
    assert!(matches!(error, ConfigError::MissingFile(_)), "{error}");
}

#[test]
fn bad_values_name_their_key() {
    let error = Config::load_from(None, env_from(&[("HISTORY__SIZE", "many")])).unwrap_err();
    assert!(error.to_string().contains("history.size"), "{error}");
    let error = Config::load_from(None, env_from(&[("HISTORY__SIZE", "0")])).unwrap_err();
    assert!(error.to_string().contains("history.size"), "{error}");
    let error = Config::load_from(None, env_from(&[("HEARTBEAT__INTERVAL", "soon")])).unwrap_err();
    assert!(error.to_string().contains("heartbeat.interval"), "{error}");
}

#[test]
fn mercure_keys_load_and_bad_ones_name_their_key() {
    let secret = "a-mercure-secret-of-thirty-two-bytes!";
    let config = Config::load_from(
        None,
        env_from(&[
            ("MERCURE__ENABLED", "true"),
            ("MERCURE__PUBLISHER_JWT__KEY", secret),
            ("MERCURE__ANONYMOUS", "true"),
        ]),
    )
    .unwrap();
    assert!(config.mercure_settings().unwrap().is_some());
    let error = Config::load_from(None, env_from(&[("MERCURE__ENABLED", "true")])).unwrap_err();
    assert!(
        error.to_string().contains("mercure.publisher_jwt.key"),
        "{error}"
    );
    let error =
        Config::load_from(None, env_from(&[("MERCURE__PUBLISHER_JWT__ALG", "XS1")])).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.contains("mercure.publisher_jwt.alg") && shown.contains("XS1"),
        "{shown}"
    );
    let error =
        Config::load_from(None, env_from(&[("EVENT_STREAM__TOPIC", "~mercure")])).unwrap_err();
    assert!(error.to_string().contains("event_stream.topic"), "{error}");
    let error = Config::load_from(
        None,
        env_from(&[("MERCURE__PROTOCOL_VERSION_COMPATIBILITY", "9")]),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("mercure.protocol_version_compatibility"),
        "{error}"
    );
}

#[test]
fn mercure_subscriptions_loads_and_a_bad_value_names_the_key() {
    assert!(!Config::default().mercure.subscriptions, "off by default");
    let config = Config::load_from(None, env_from(&[("MERCURE__SUBSCRIPTIONS", "true")])).unwrap();
    assert!(config.mercure.subscriptions);
    let error =
        Config::load_from(None, env_from(&[("MERCURE__SUBSCRIPTIONS", "sometimes")])).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.contains("mercure.subscriptions") && shown.contains("sometimes"),
        "{shown}"
    );
}

#[test]
fn masked_output_hides_secrets() {
    let mut config = Config::default();
    config.auth.publish_keys = vec!["s3cret".into()];
    config.auth.metrics_keys = vec!["metrics-s3cret".into()];
    config.auth.jwt.secret = Some("jwt-s3cret".into());
    config.mercure.publisher_jwt.key = Some("mercure-pub-s3cret".into());
    config.mercure.subscriber_jwt.key = Some("mercure-sub-s3cret".into());
    config.auth.jwt.jwks = Some("https://user:jwks-pw@idp.example/jwks.json".into());
    config.backplane.redis.url = "redis://user:pw@localhost:6379".into();
    let shown = config.to_masked_toml();
    for secret in ["s3cret", "pw@", "jwks-pw"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("https://***@idp.example/jwks.json"),
        "{shown}"
    );
    assert!(shown.contains("redis://***@localhost:6379"), "{shown}");
}

#[test]
fn redis_keys_load_and_validate() {
    let config = Config::load_from(
        None,
        env_from(&[
            ("BACKPLANE__KIND", "redis"),
            ("BACKPLANE__REDIS__URL", "rediss://app:pw@redis:6380/2"),
            ("BACKPLANE__REDIS__COMMAND_TIMEOUT", "250ms"),
            ("BACKPLANE__REDIS__KEY_PREFIX", "tenant-a:"),
        ]),
    )
    .unwrap();
    assert_eq!(config.backplane.kind, BackplaneKind::Redis);
    assert_eq!(
        config.backplane.redis.command_timeout,
        Duration::from_millis(250)
    );
    assert_eq!(config.backplane.redis.key_prefix, "tenant-a:");
    for (key, value, named) in [
        ("BACKPLANE__REDIS__URL", "", "backplane.redis.url"),
        (
            "BACKPLANE__REDIS__URL",
            "http://redis:6379",
            "backplane.redis.url",
        ),
        (
            "BACKPLANE__REDIS__URL",
            "redis://pw@host:notaport",
            "backplane.redis.url",
        ),
        (
            "BACKPLANE__REDIS__CONNECT_TIMEOUT",
            "0s",
            "backplane.redis.connect_timeout",
        ),
        (
            "BACKPLANE__REDIS__KEY_PREFIX",
            "",
            "backplane.redis.key_prefix",
        ),
    ] {
        let mut pairs = vec![
            ("BACKPLANE__KIND", "redis"),
            ("BACKPLANE__REDIS__URL", "redis://localhost"),
        ];
        pairs.push((key, value));
        let error = Config::load_from(None, env_from(&pairs)).unwrap_err();
        assert!(error.to_string().contains(named), "{key}={value}: {error}");
        assert!(!error.to_string().contains("pw@"), "{error}");
    }
}

#[test]
fn sentinel_and_replicas_ack_keys_load_and_validate() {
    let sentinel = [
        ("BACKPLANE__KIND", "redis"),
        ("BACKPLANE__REDIS__SENTINEL__MASTER_NAME", "mymaster"),
        (
            "BACKPLANE__REDIS__SENTINEL__ADDRESSES",
            "[sentinel-0:26379,\"[::1]:26380\"]",
        ),
    ];
    let config = Config::load_from(
        None,
        env_from(
            &[
                &sentinel[..],
                &[
                    ("BACKPLANE__REDIS__URL", "rediss://:data-pw@mymaster/2"),
                    ("BACKPLANE__REDIS__SENTINEL__PASSWORD", "sentinel-pw"),
                    ("BACKPLANE__REDIS__REPLICAS_ACK", "1"),
                    ("BACKPLANE__REDIS__REPLICAS_ACK_TIMEOUT", "250ms"),
                ],
            ]
            .concat(),
        ),
    )
    .unwrap();
    let redis = &config.backplane.redis;
    assert_eq!(
        redis.sentinel.addresses,
        ["sentinel-0:26379", "[::1]:26380"]
    );
    assert_eq!(redis.replicas_ack, 1);
    assert_eq!(redis.replicas_ack_timeout, Duration::from_millis(250));
    let shown = config.to_masked_toml();
    assert!(
        !shown.contains("sentinel-pw") && !shown.contains("data-pw"),
        "{shown}"
    );
    // Sentinel without a URL: plain TCP, no password, database 0.
    Config::load_from(None, env_from(&sentinel)).unwrap();
    assert_eq!(Config::default().backplane.redis.replicas_ack, 0);

    for (extra, named, says) in [
        (
            vec![("BACKPLANE__REDIS__SENTINEL__ADDRESSES", "[]")],
            "backplane.redis.sentinel.addresses",
            "is empty",
        ),
        (
            vec![("BACKPLANE__REDIS__SENTINEL__ADDRESSES", "[sentinel-0]")],
            "backplane.redis.sentinel.addresses",
            "\"sentinel-0\" is not host:port",
        ),
        (
            vec![("BACKPLANE__REDIS__SENTINEL__ADDRESSES", "[\"a:0\"]")],
            "backplane.redis.sentinel.addresses",
            "\"a:0\" is not host:port",
        ),
        (
            vec![("BACKPLANE__REDIS__SENTINEL__ADDRESSES", "[\"::1:26379\"]")],
            "backplane.redis.sentinel.addresses",
            "is not host:port",
        ),
        (
            vec![("BACKPLANE__REDIS__SENTINEL__MASTER_NAME", "")],
            "backplane.redis.sentinel.master_name",
            "is not a master name",
        ),
        (
            vec![("BACKPLANE__REDIS__URL", "redis://:pw@redis:6379/0")],
            "backplane.redis.url",
            "host must be the master's name",
        ),
        (
            vec![("BACKPLANE__REDIS__URL", "redis://:pw@mymaster:6379/0")],
            "backplane.redis.url",
            "no port",
        ),
        (
            vec![
                ("BACKPLANE__REDIS__REPLICAS_ACK", "1"),
                ("BACKPLANE__REDIS__REPLICAS_ACK_TIMEOUT", "0s"),
            ],
            "backplane.redis.replicas_ack_timeout",
            "longer than 0s",
        ),
        (
            vec![("BACKPLANE__REDIS__REPLICAS_ACK", "-1")],
            "backplane.redis.replicas_ack",
            "",
        ),
    ] {
        let pairs = [&sentinel[..], &extra[..]].concat();
        let error = Config::load_from(None, env_from(&pairs)).unwrap_err();
        let error = error.to_string();
        assert!(
            error.contains(named) && error.contains(says),
            "{extra:?}: {error}"
        );
        assert!(!error.contains("pw@"), "{error}");
    }
    // Sentinel credentials without sentinels.
    let error = Config::load_from(
        None,
        env_from(&[
            ("BACKPLANE__KIND", "redis"),
            ("BACKPLANE__REDIS__URL", "redis://localhost"),
            ("BACKPLANE__REDIS__SENTINEL__PASSWORD", "sentinel-pw"),
        ]),
    )
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("backplane.redis.sentinel.password"),
        "{error}"
    );
    assert!(!error.to_string().contains("sentinel-pw"), "{error}");
}

#[test]
fn telemetry_keys_load_and_validate() {
    let config = Config::load_from(
        None,
        env_from(&[
            ("TELEMETRY__OTLP_ENDPOINT", "http://collector:4317"),
            ("TELEMETRY__PROTOCOL", "grpc"),
            ("TELEMETRY__SAMPLE_RATIO", "0.25"),
        ]),
    )
    .unwrap();
    assert_eq!(config.telemetry.protocol, OtlpProtocol::Grpc);
    assert_eq!(config.telemetry.sample_ratio, 0.25);
    let error = Config::load_from(None, env_from(&[("TELEMETRY__SAMPLE_RATIO", "2")])).unwrap_err();
    assert!(
        error.to_string().contains("telemetry.sample_ratio"),
        "{error}"
    );
    let error =
        Config::load_from(None, env_from(&[("TELEMETRY__PROTOCOL", "http/json")])).unwrap_err();
    assert!(error.to_string().contains("telemetry.protocol"), "{error}");
    let error = Config::load_from(
        None,
        env_from(&[("TELEMETRY__OTLP_ENDPOINT", "collector:4317")]),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("telemetry.otlp_endpoint"),
        "{error}"
    );
}

#[test]
fn idempotency_window_and_keys_are_bounded_and_named_when_wrong() {
    let config = Config::default();
    assert_eq!(config.limits.idempotency_window, IDEMPOTENCY_WINDOW_DEFAULT);
    assert_eq!(config.limits.idempotency_keys, IDEMPOTENCY_KEYS_DEFAULT);
    let config = Config::load_from(
        None,
        env_from(&[
            ("LIMITS__IDEMPOTENCY_WINDOW", "90s"),
            ("LIMITS__IDEMPOTENCY_KEYS", "10"),
        ]),
    )
    .unwrap();
    assert_eq!(config.limits.idempotency_window, Duration::from_secs(90));
    assert_eq!(config.limits.idempotency_keys, 10);
    for (key, value, expected) in [
        ("LIMITS__IDEMPOTENCY_WINDOW", "0s", "from 1s to 24h"),
        ("LIMITS__IDEMPOTENCY_WINDOW", "2days", "is 2days"),
        ("LIMITS__IDEMPOTENCY_KEYS", "0", "at least 1"),
    ] {
        let error = Config::load_from(None, env_from(&[(key, value)])).unwrap_err();
        let message = error.to_string();
        let named = key.to_lowercase().replace("__", ".");
        assert!(message.contains(&named), "{message}");
        assert!(message.contains(expected), "{message}");
    }
}

#[test]
fn zero_turns_a_duration_feature_off() {
    let off = Config::load_from(
        None,
        env_from(&[
            ("HEARTBEAT__INTERVAL", "0s"),
            ("STREAM__WRITE_TIMEOUT", "0s"),
            ("STREAM__COALESCE", "0s"),
        ]),
    )
    .unwrap();
    assert_eq!(off.heartbeat.interval(), None);
    assert_eq!(off.stream.write_timeout(), None);
    assert_eq!(off.stream.coalesce(), None);
    let on = Config::load_from(
        None,
        env_from(&[
            ("HEARTBEAT__INTERVAL", "5s"),
            ("STREAM__WRITE_TIMEOUT", "7s"),
            ("STREAM__COALESCE", "3ms"),
        ]),
    )
    .unwrap();
    assert_eq!(on.heartbeat.interval(), Some(Duration::from_secs(5)));
    assert_eq!(on.stream.write_timeout(), Some(Duration::from_secs(7)));
    assert_eq!(on.stream.coalesce(), Some(Duration::from_millis(3)));
}

/// A value of the wrong form is named with its key, the value found and
/// the expected form with an example (serde alone says "expected a
/// sequence", "expected usize").
#[test]
fn a_value_of_the_wrong_form_gets_an_example_of_the_right_one() {
    for (variable, value, says) in [
        (
            "HEARTBEAT__INTERVAL",
            "often",
            &[
                "`heartbeat.interval`",
                "found \"often\"",
                "a duration like \"30s\"",
                "SSEHUB_HEARTBEAT__INTERVAL=30s",
            ][..],
        ),
        (
            "HISTORY__TTL",
            "10",
            &["`history.ttl`", "found 10", "\"1m\""][..],
        ),
        (
            "CORS__ALLOWED_ORIGINS",
            "https://a.example",
            &[
                "`cors.allowed_origins`",
                "found \"https://a.example\"",
                "a list like [\"a\", \"b\"]",
                "SSEHUB_CORS__ALLOWED_ORIGINS='[\"a\",\"b\"]'",
            ][..],
        ),
        (
            "HISTORY__SIZE",
            "lots",
            &[
                "`history.size`",
                "found \"lots\"",
                "a whole number",
                "like 100",
            ][..],
        ),
        (
            "CONSOLE__ENABLED",
            "maybe",
            &["`console.enabled`", "found \"maybe\"", "true or false"][..],
        ),
        (
            "AUTH__SUBSCRIBE",
            "tokens",
            &[
                "`auth.subscribe`",
                "found \"tokens\"",
                "one of \"open\", \"jwt\"",
            ][..],
        ),
        (
            "HISTORY__SIZZE",
            "1",
            &["unknown key `history.sizze`", "\"size\", \"ttl\""][..],
        ),
        (
            "HISTORY",
            "3",
            &["`history`", "a table of settings", "SSEHUB_HISTORY__<KEY>"][..],
        ),
    ] {
        let error = Config::load_from(None, env_from(&[(variable, value)]))
            .unwrap_err()
            .to_string();
        for words in says {
            assert!(
                error.contains(words),
                "{variable}={value}: {words:?} in {error}"
            );
        }
        assert!(
            !error.contains("sequence") && !error.contains("usize"),
            "no serde type names: {error}"
        );
    }
}

#[test]
fn a_list_in_the_environment_is_written_as_in_the_example() {
    let config = Config::load_from(
        None,
        env_from(&[(
            "CORS__ALLOWED_ORIGINS",
            r#"["https://a.example","https://b.example"]"#,
        )]),
    )
    .unwrap();
    assert_eq!(
        config.cors.allowed_origins,
        ["https://a.example", "https://b.example"]
    );
}
