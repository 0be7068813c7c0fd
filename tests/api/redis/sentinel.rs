//! High availability against real processes: a Redis master, its replica
//! and three `redis-sentinel`s. The hub finds the master through any
//! sentinel that answers, keeps serving while sentinels are down, follows a
//! failover to the promoted replica (streams lose nothing acknowledged),
//! never writes to a demoted master (`READONLY` ends the session), and with
//! `backplane.redis.replicas_ack` answers 503 `publish-not-replicated` when
//! the replicas don't confirm a publish.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ssehub::config::{BackplaneKind, Config};

use super::server::{MASTER_NAME, Persistence, RedisServer, SentinelServer};
use crate::support::helpers::{
    PATIENCE, Subscriber, TestApp, assert_problem, spawn_app_with, wait_ready, within,
};

/// A master, one replica in sync with it, and three sentinels that know
/// the replica and each other (so two of them can agree on a failover).
struct Cluster {
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<SentinelServer>,
}

impl Cluster {
    async fn start() -> Self {
        blocking(|| {
            let master = RedisServer::start(Persistence::None);
            let replica = RedisServer::start_replica_of(master.port);
            wait_until("the replica's link is up", || {
                replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
            });
            let sentinels: Vec<_> = (0..3).map(|_| SentinelServer::start(master.port)).collect();
            for sentinel in &sentinels {
                wait_until("the sentinels know the replica and each other", || {
                    let master = sentinel.cli(&["SENTINEL", "MASTER", MASTER_NAME]);
                    field(&master, "num-slaves") == "1"
                        && field(&master, "num-other-sentinels") == "2"
                });
            }
            Cluster {
                master,
                replica,
                sentinels,
            }
        })
        .await
    }

    fn addresses(&self) -> Vec<String> {
        self.sentinels.iter().map(SentinelServer::address).collect()
    }
}

/// A value of `SENTINEL MASTER`'s flat field/value reply.
fn field(reply: &str, name: &str) -> String {
    let lines: Vec<&str> = reply.lines().collect();
    lines
        .iter()
        .position(|line| *line == name)
        .and_then(|at| lines.get(at + 1))
        .map_or_else(String::new, |value| (*value).to_owned())
}

fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_until_within(what, PATIENCE, condition);
}

fn wait_until_within(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.unwrap()
}

/// Points `config` at the sentinels, with timeouts short enough for tests.
fn use_sentinels(config: &mut Config, addresses: Vec<String>) {
    config.backplane.kind = BackplaneKind::Redis;
    config.backplane.redis.sentinel.master_name = MASTER_NAME.to_owned();
    config.backplane.redis.sentinel.addresses = addresses;
    config.backplane.redis.connect_timeout = Duration::from_millis(500);
    config.backplane.redis.command_timeout = Duration::from_millis(500);
}

async fn hub_on(cluster: &Cluster, configure: impl FnOnce(&mut Config)) -> TestApp {
    let addresses = cluster.addresses();
    let app = spawn_app_with(|config| {
        use_sentinels(config, addresses);
        configure(config);
    })
    .await;
    wait_ready(&app, true).await;
    app
}

/// `calls` of a command in `INFO commandstats` (0 if never run).
fn calls(server: &RedisServer, command: &str) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The server's role (`master`, `slave`), or "" while it can't answer
/// (a restarted server starting, or loading the new master's data as it
/// becomes a replica): a condition waited for is then not met yet.
fn role(server: &RedisServer) -> String {
    server
        .try_cli(&["ROLE"])
        .and_then(|reply| reply.lines().next().map(str::to_owned))
        .unwrap_or_default()
}

async fn reconnects(app: &TestApp) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("ssehub_backplane_reconnects_total "))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Reads `count` events: their ids, and whether any was a gap frame.
async fn ids(subscriber: &mut Subscriber, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    while ids.len() < count {
        let event = subscriber.next().await;
        assert_ne!(event.event, "gap", "no gap frame expected: {}", event.data);
        ids.push(event.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_finds_the_master_through_any_sentinel_and_needs_none_while_connected() {
    let mut cluster = Cluster::start().await;
    let app = hub_on(&cluster, |_| {}).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let mut published = vec![app.publish("t", json!(1)).await];

    // One sentinel down: a new session asks the next one.
    cluster.sentinels[0].kill();
    cluster.master.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    let reconnected = within(PATIENCE, || async { reconnects(&app).await == 1 }).await;
    assert!(
        reconnected.is_some(),
        "no reconnect through the other sentinels"
    );
    wait_ready(&app, true).await;
    published.push(app.publish("t", json!(2)).await);

    // All sentinels down: the session it has keeps working.
    cluster.sentinels[1].kill();
    cluster.sentinels[2].kill();
    published.push(app.publish("t", json!(3)).await);

    // A session lost with no sentinel to ask: not ready, publishes refused
    // with an error that names the sentinels; streams stay open.
    cluster.master.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    wait_ready(&app, false).await;
    let response = app.publish_raw("t", json!({"data": "refused"})).await;
    assert!(
        response.headers().contains_key("retry-after"),
        "Retry-After"
    );
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:backplane-unavailable");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains(MASTER_NAME) && detail.contains(&cluster.sentinels[0].address()),
        "{detail}"
    );

    // Sentinels back: ready again, and the stream goes on without a gap.
    let cluster = blocking(move || {
        for sentinel in &mut cluster.sentinels {
            sentinel.restart();
        }
        cluster
    })
    .await;
    let _ = &cluster;
    let back = within(PATIENCE, || async {
        app.get("/readyz").await.status() == 200
    })
    .await;
    println!("ready {back:?} after the sentinels came back");
    wait_ready(&app, true).await;
    published.push(app.publish("t", json!(4)).await);
    assert_eq!(ids(&mut subscriber, published.len()).await, published);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_replaced_and_streams_continue_with_every_acknowledged_event() {
    let cluster = Cluster::start().await;
    let app = hub_on(&cluster, |config| config.backplane.redis.replicas_ack = 1).await;
    let mut subscriber = app.subscribe(&["t"]).await;
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        acknowledged.push(app.publish("t", json!(n)).await);
    }

    let Cluster {
        mut master,
        replica,
        sentinels,
    } = cluster;
    let old_port = master.port;
    let started = Instant::now();
    master.kill();
    let sentinels = blocking(move || {
        wait_until("the sentinels promote the replica", || {
            sentinels[0].master_port() == replica.port
        });
        sentinels
    })
    .await;
    wait_ready(&app, true).await;
    println!(
        "failover: the hub is on the new master after {:?}",
        started.elapsed()
    );
    // The promoted replica was the only one: nothing can be confirmed by a
    // replica now, so nothing is acknowledged.
    let response = app.publish_raw("t", json!({"data": "unconfirmed"})).await;
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:publish-not-replicated");

    // The old master comes back empty and as a master, until the sentinels
    // make it a replica of the new one: the hub never writes to it, and
    // publishes are acknowledged again once it confirms them.
    let restarted = blocking(move || {
        let restarted = RedisServer::start_on(old_port, Persistence::None);
        wait_until_within("the old master becomes a replica", 3 * PATIENCE, || {
            role(&restarted) == "slave"
        });
        restarted
    })
    .await;
    let mut refused = 0;
    loop {
        assert!(started.elapsed() < 6 * PATIENCE, "never acknowledged again");
        let response = app.publish_raw("t", json!({"data": "retried"})).await;
        if response.status() == 202 {
            let body: Value = response.json().await.unwrap();
            acknowledged.push(body["id"].as_str().unwrap().to_owned());
            break;
        }
        assert_eq!(response.status(), 503);
        refused += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "failover: acknowledged again after {:?} ({refused} refusals once the old master was back)",
        started.elapsed()
    );
    acknowledged.push(app.publish("t", json!("after")).await);
    assert_eq!(
        calls(&restarted, "evalsha"),
        0,
        "a script ran on the old master"
    );
    assert_eq!(
        calls(&restarted, "eval"),
        0,
        "a script ran on the old master"
    );
    assert_eq!(sentinels[1].master_port(), replica.port);

    // Every acknowledged event, in order, once, and no gap frame (events
    // answered 503 were stored on the new master too, so they show up).
    let mut seen = Vec::new();
    while seen.last() != acknowledged.last() {
        let event = subscriber.next().await;
        assert_ne!(event.event, "gap", "no gap frame expected: {}", event.data);
        seen.push(event.id);
    }
    let mut sorted = seen.clone();
    sorted.sort_by_key(|id| {
        let (epoch, seq) = id.split_once('-').unwrap();
        (
            u64::from_str_radix(epoch, 16).unwrap(),
            u64::from_str_radix(seq, 16).unwrap(),
        )
    });
    sorted.dedup();
    assert_eq!(seen, sorted, "in order, no duplicate");
    assert!(
        acknowledged.iter().all(|id| seen.contains(id)),
        "{acknowledged:?} in {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_demoted_under_the_hub_answers_readonly_and_is_never_written_to() {
    let (demoted, other) = blocking(|| {
        (
            RedisServer::start(Persistence::None),
            RedisServer::start(Persistence::None),
        )
    })
    .await;
    let app = super::replica(&demoted, |_| {}).await;
    app.publish("t", json!("before")).await;

    // Demoted under the hub's open connections (REPLICAOF keeps them).
    let other_port = other.port.to_string();
    demoted.cli(&["REPLICAOF", "127.0.0.1", &other_port]);
    let scripts_before = calls(&demoted, "evalsha");
    let response = app.publish_raw("t", json!({"data": "refused"})).await;
    let problem = assert_problem(response, 503).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("READONLY"),
        "{problem}"
    );
    wait_ready(&app, false).await;
    for _ in 0..5 {
        let response = app.publish_raw("t", json!({"data": "refused"})).await;
        assert_eq!(response.status(), 503);
    }
    assert_eq!(
        calls(&demoted, "evalsha"),
        scripts_before,
        "a script ran on the replica"
    );

    // A master again: the hub comes back to it.
    demoted.cli(&["REPLICAOF", "NO", "ONE"]);
    wait_ready(&app, true).await;
    app.publish("t", json!("after")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_ack_answers_503_with_retry_after_until_enough_replicas_confirm() {
    let master = blocking(|| RedisServer::start(Persistence::None)).await;
    let app = super::replica(&master, |config| {
        config.backplane.redis.replicas_ack = 1;
        config.backplane.redis.replicas_ack_timeout = Duration::from_millis(200);
    })
    .await;
    let mut subscriber = app.subscribe(&["t"]).await;

    // No replica: stored on the master, but not acknowledged.
    let response = app.publish_raw("t", json!({"data": "alone"})).await;
    assert!(
        response.headers().contains_key("retry-after"),
        "Retry-After"
    );
    let problem = assert_problem(response, 503).await;
    assert_eq!(problem["type"], "urn:ssehub:problem:publish-not-replicated");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("backplane.redis.replicas_ack") && detail.contains("Idempotency-Key"),
        "{detail}"
    );
    // The hub stays ready: the master works, only durability is missing.
    assert_eq!(app.get("/readyz").await.status(), 200);

    // A replica in sync: acknowledged again, single and batch.
    let master_port = master.port;
    let _replica = blocking(move || {
        let replica = RedisServer::start_replica_of(master_port);
        wait_until("the replica's link is up", || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        replica
    })
    .await;
    // The link up is not yet an acknowledged offset: wait until the master
    // lists the replica online with its whole replication stream
    // acknowledged, so the hub's WAIT below is judged on replication, not on
    // how fast a loaded machine finishes the initial sync.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !replica_caught_up(&master.cli(&["INFO", "replication"])) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replica did not catch up with the master within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.publish("t", json!("replicated")).await;
    let batch = app
        .client
        .post(app.url("/v1/events"))
        .json(&json!({"events": [{"topic": "t", "data": 1}, {"topic": "t", "data": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 202);
    // What the 503 refused was stored (and so delivered); then the rest.
    let seen: Vec<_> = subscriber
        .take(4)
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(seen[..2], ["alone", "replicated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_of_the_sentinels_and_of_the_data_nodes_are_used_where_they_belong() {
    let (master, sentinel) = blocking(|| {
        let master = RedisServer::start(Persistence::None);
        let sentinel = SentinelServer::start_with(
            master.port,
            &format!(
                "requirepass sentinel-pw\nsentinel auth-pass {MASTER_NAME} data-pw\n\
                 sentinel sentinel-pass sentinel-pw\n"
            ),
            Some("sentinel-pw"),
        );
        // The master's password only now: its helpers run without one.
        master.cli(&["CONFIG", "SET", "requirepass", "data-pw"]);
        (master, sentinel)
    })
    .await;
    let addresses = vec![sentinel.address()];

    // Both passwords: ready, publishes go through.
    let configure = |config: &mut Config, sentinel_password: &str| {
        use_sentinels(config, addresses.clone());
        config.backplane.redis.url = format!("redis://:data-pw@{MASTER_NAME}/0");
        config.backplane.redis.sentinel.password = sentinel_password.to_owned();
    };
    let app = spawn_app_with(|config| configure(config, "sentinel-pw")).await;
    wait_ready(&app, true).await;
    app.publish("t", json!("authenticated")).await;

    // The sentinels refuse a hub without their password: not ready, and
    // the error names the sentinels (never a password).
    let refused = spawn_app_with(|config| configure(config, "")).await;
    let response = refused.publish_raw("t", json!({"data": "refused"})).await;
    let problem = assert_problem(response, 503).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains(&sentinel.address()), "{detail}");
    assert!(!detail.contains("pw"), "{detail}");
    assert_eq!(refused.get("/readyz").await.status(), 503);
    drop(master);
}

/// `INFO replication` of a master: a replica is online and has acknowledged
/// the master's whole replication stream (`slave0:…,state=online,offset=N`
/// with N = `master_repl_offset`).
fn replica_caught_up(info: &str) -> bool {
    let field = |line: &str, name: &str| {
        line.split(',')
            .find_map(|part| part.strip_prefix(name))
            .map(str::to_owned)
    };
    let master_offset = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("master_repl_offset:"))
        .map(str::to_owned);
    info.lines().any(|line| {
        line.starts_with("slave")
            && field(line, "state=").as_deref() == Some("online")
            && field(line, "offset=") == master_offset
    })
}
