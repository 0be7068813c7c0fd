//! `GET /metrics`: parses as Prometheus text, and the counters move by the
//! right amounts after known publishes and subscriptions.

use std::time::Duration;

use prometheus_parse::{Scrape, Value};
use serde_json::json;

use crate::support::helpers::{PATIENCE, TestApp, body_text, spawn_app, spawn_app_with};

/// One scrape, parsed by a Prometheus text parser.
pub(crate) struct Metrics(Scrape);

impl Metrics {
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> &Value {
        let sample = self
            .0
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
        &sample.value
    }

    /// A counter's value; fails unless the parser typed it as a counter.
    pub(crate) fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels) {
            Value::Counter(value) => *value,
            other => panic!("{name} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(name, labels) {
            Value::Gauge(value) => *value,
            other => panic!("{name} is not a gauge: {other:?}"),
        }
    }

    /// Observations of a histogram (its `+Inf` bucket).
    fn histogram_count(&self, name: &str) -> f64 {
        match self.find(name, &[]) {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|bucket| bucket.less_than.is_infinite())
                .map(|bucket| bucket.count)
                .expect("a +Inf bucket"),
            other => panic!("{name} is not a histogram: {other:?}"),
        }
    }
}

pub(crate) async fn scrape(app: &TestApp) -> Metrics {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|line| Ok(line.to_owned()));
    Metrics(Scrape::parse(lines).expect("Prometheus text"))
}

#[tokio::test]
async fn publishes_and_deliveries_are_counted() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    assert_eq!(
        before.gauge(
            "ssehub_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );

    let mut first = app.subscribe(&["counted"]).await;
    let mut second = app.subscribe(&["counted"]).await;
    for n in 0..3 {
        app.publish("counted", json!(n)).await;
    }
    first.take(3).await;
    second.take(3).await;

    let after = scrape(&app).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.counter(name, labels) - before.counter(name, labels)
    };
    assert_eq!(
        delta("ssehub_deliveries_total", &[]),
        6.0,
        "3 events x 2 subscribers"
    );
    assert_eq!(
        delta("ssehub_events_published_total", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(
        delta("ssehub_publish_requests_total", &[("outcome", "accepted")]),
        3.0
    );
    assert_eq!(delta("ssehub_subscriptions_opened_total", &[]), 2.0);
    // Each frame is `id: …\ndata: n\n\n`; the stream open line comes on top.
    assert!(delta("ssehub_sent_bytes_total", &[]) > 6.0 * 10.0);
    assert_eq!(after.gauge("ssehub_subscribers_connected", &[]), 2.0);
    assert_eq!(after.gauge("ssehub_live_topics", &[]), 1.0);
    assert_eq!(
        after.histogram_count("ssehub_publish_request_duration_seconds")
            - before.histogram_count("ssehub_publish_request_duration_seconds"),
        3.0
    );
    assert_eq!(
        after.histogram_count("ssehub_fanout_latency_seconds")
            - before.histogram_count("ssehub_fanout_latency_seconds"),
        3.0
    );
    assert_eq!(
        after.gauge("ssehub_drain_phase", &[("phase", "serving")]),
        1.0
    );
}

#[tokio::test]
async fn rejected_publishes_are_counted_by_outcome() {
    let app = spawn_app_with(|config| {
        config.limits.max_event_bytes = 16;
        config.auth.publish_keys = vec!["key".into()];
    })
    .await;
    let before = scrape(&app).await;
    let publish = |body: serde_json::Value, key: Option<&str>| {
        let mut request = app.client.post(app.url("/v1/topics/t/events")).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(
        publish(json!({"data": "x".repeat(17)}), Some("key"))
            .await
            .unwrap()
            .status(),
        413
    );
    assert_eq!(
        publish(json!({"data": 1}), Some("wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        publish(json!({"nodata": 1}), Some("key"))
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        publish(json!({"data": 1}), Some("key"))
            .await
            .unwrap()
            .status(),
        202
    );

    let after = scrape(&app).await;
    let delta = |name: &str, outcome: &str| {
        after.counter(name, &[("outcome", outcome)]) - before.counter(name, &[("outcome", outcome)])
    };
    assert_eq!(
        delta("ssehub_publish_requests_total", "rejected_too_large"),
        1.0
    );
    assert_eq!(
        delta("ssehub_publish_requests_total", "rejected_unauthorized"),
        1.0
    );
    assert_eq!(
        delta("ssehub_publish_requests_total", "rejected_invalid"),
        1.0
    );
    assert_eq!(delta("ssehub_publish_requests_total", "accepted"), 1.0);
    // Events the hub saw: the oversized one and the accepted one.
    assert_eq!(
        delta("ssehub_events_published_total", "rejected_too_large"),
        1.0
    );
    assert_eq!(delta("ssehub_events_published_total", "accepted"), 1.0);
    assert_eq!(delta("ssehub_events_published_total", "unavailable"), 0.0);
}

#[tokio::test]
async fn subscriptions_are_closed_by_reason() {
    let app = spawn_app_with(|config| config.limits.max_subscribers = 1).await;
    let before = scrape(&app).await;
    let closed = |metrics: &Metrics, reason: &str| {
        metrics.counter("ssehub_subscriptions_closed_total", &[("reason", reason)])
            - before.counter("ssehub_subscriptions_closed_total", &[("reason", reason)])
    };

    let subscriber = app.subscribe(&["seats"]).await;
    // At capacity: shed with 200 + retry.
    let shed = app.get("/v1/events?topic=seats").await;
    assert!(body_text(shed, PATIENCE).await.starts_with("retry:"));
    // The client goes away; the hub notices when a write to it fails.
    drop(subscriber);
    let mut after = scrape(&app).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while closed(&after, "client_gone") < 1.0 && tokio::time::Instant::now() < deadline {
        app.publish("seats", json!("wake")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = scrape(&app).await;
    }
    assert_eq!(closed(&after, "client_gone"), 1.0);
    assert_eq!(closed(&after, "shed_capacity"), 1.0);
    assert_eq!(closed(&after, "drained"), 0.0);
    assert_eq!(
        after.counter("ssehub_subscriptions_opened_total", &[])
            - before.counter("ssehub_subscriptions_opened_total", &[]),
        2.0,
        "shed streams count as opened and closed"
    );
    assert_eq!(after.gauge("ssehub_subscribers_connected", &[]), 0.0);

    // Draining: the phase gauge moves and a subscribe is shed for it.
    app.hub.lifecycle().begin_draining();
    let draining = scrape(&app).await;
    assert_eq!(
        draining.gauge("ssehub_drain_phase", &[("phase", "draining")]),
        1.0
    );
    assert_eq!(
        draining.gauge("ssehub_drain_phase", &[("phase", "serving")]),
        0.0
    );
}

#[tokio::test]
async fn resumes_gaps_and_lag_are_counted() {
    let app = spawn_app_with(|config| config.stream.queue = 4).await;
    let before = scrape(&app).await;
    let delta = |after: &Metrics, name: &str, labels: &[(&str, &str)]| {
        after.counter(name, labels) - before.counter(name, labels)
    };
    app.publish("history", json!("kept")).await;
    // An id from another system: history from the start, after a gap frame.
    let mut resumed = app
        .subscribe_with(&["history"], Some("elsewhere-1"), None)
        .await;
    assert_eq!(resumed.next().await.event, "gap");
    let after = scrape(&app).await;
    assert_eq!(
        delta(
            &after,
            "ssehub_history_replays_total",
            &[("trigger", "resume")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &after,
            "ssehub_gap_frames_total",
            &[("reason", "unknown_epoch")]
        ),
        1.0
    );

    // A flood the subscriber's task can't see until it is over (this test's
    // runtime has one thread and publishing never yields): it lags a whole
    // queue behind and catches up from history.
    let mut slow = app.subscribe(&["flood"]).await;
    for n in 0..20 {
        app.publish_in_process("flood", n.to_string()).await;
    }
    let events = slow.take(20).await;
    assert!(
        events.iter().all(|event| event.event == "message"),
        "caught up without a gap"
    );
    let after = scrape(&app).await;
    assert_eq!(delta(&after, "ssehub_lagged_subscribers_total", &[]), 1.0);
    assert_eq!(
        delta(
            &after,
            "ssehub_history_replays_total",
            &[("trigger", "lagged")]
        ),
        1.0
    );
    assert_eq!(
        delta(&after, "ssehub_gap_frames_total", &[("reason", "lagged")]),
        0.0
    );
}

#[tokio::test]
async fn openmetrics_on_request_and_no_topic_names_anywhere() {
    let app = spawn_app().await;
    app.publish("a-very-particular-topic", json!(1)).await;
    let response = app
        .client
        .get(app.url("/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE ssehub_deliveries counter"), "{text}");
    assert!(!text.contains("a-very-particular-topic"), "{text}");

    let spec: serde_json::Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(
        spec["paths"]["/metrics"]["get"].is_object(),
        "documented in the spec"
    );
}

#[tokio::test]
async fn the_grafana_dashboard_shows_every_metric_and_queries_only_metrics_that_exist() {
    let app = spawn_app().await;
    let names: std::collections::HashSet<String> = scrape(&app)
        .await
        .0
        .samples
        .iter()
        .map(|sample| sample.metric.clone())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/helm/ssehub/dashboards/ssehub.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = 0;
    let mut shown = std::collections::HashSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for (start, _) in expr.match_indices("ssehub_") {
                let name: String = expr[start..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                // Histograms: the parser files `_bucket` samples under the
                // family name.
                let family = name.strip_suffix("_bucket").unwrap_or(&name);
                assert!(
                    names.contains(family),
                    "panel {:?} queries {name}, which /metrics does not have",
                    panel["title"]
                );
                shown.insert(family.to_owned());
                queried += 1;
            }
        }
    }
    assert!(queried > 15, "the dashboard queries {queried} series");
    let unshown: Vec<_> = names
        .iter()
        // A histogram's `_sum` and `_count` come with its buckets.
        .filter(|name| !name.ends_with("_sum") && !name.ends_with("_count"))
        .filter(|name| name.starts_with("ssehub_") && !shown.contains(name.as_str()))
        .collect();
    assert!(
        unshown.is_empty(),
        "metrics no dashboard panel shows: {unshown:?}"
    );
}
