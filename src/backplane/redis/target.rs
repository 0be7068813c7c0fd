//! Where the Redis master is: the one `backplane.redis.url` names, or the
//! one Redis Sentinel names at the start of each session.
//!
//! With Sentinel, every session (the first, and each after a failure) asks
//! the sentinels again, through redis-rs's `SentinelClient`: it asks them in
//! turn (any one that answers is enough), skips a master they flag as down,
//! and checks with `ROLE` that the node it returns really is a master. A
//! failover therefore reaches the hub as a failed session (the old master's
//! connections break or it answers `READONLY`), and the next session lands
//! on the new master; a demoted master is never written to twice (see
//! `is_demoted`).

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, TlsMode};

use crate::backplane::RedisConfig;
use crate::backplane::config::parse_host_port;
use crate::setting::mask_userinfo;

pub(super) enum Target {
    /// One Redis at a fixed address.
    Direct(Box<redis::Client>),
    /// The master of `sentinel.master_name`, as the sentinels see it.
    Sentinel(Box<RedisConfig>),
}

impl Target {
    pub fn new(config: &RedisConfig) -> redis::RedisResult<Self> {
        if !config.sentinel.is_enabled() {
            return Ok(Self::Direct(Box::new(redis::Client::open(
                config.url.as_str(),
            )?)));
        }
        sentinel_client(config)?;
        Ok(Self::Sentinel(Box::new(config.clone())))
    }

    /// A client for the master now: asks the sentinels each time.
    pub async fn master(&self) -> redis::RedisResult<redis::Client> {
        match self {
            Self::Direct(client) => Ok((**client).clone()),
            // A client of its own for each lookup: a `SentinelClient` keeps
            // its connections to the sentinels, and with one long-lived
            // client (redis 1.8) a hub whose sentinels had all restarted did
            // not find the master again (tests/api/redis/sentinel.rs). A
            // lookup is once per session; the few connects don't matter.
            Self::Sentinel(config) => sentinel_client(config)?.async_get_client().await,
        }
    }

    /// Whether the master is found through sentinels.
    pub fn is_sentinel(&self) -> bool {
        matches!(self, Self::Sentinel(_))
    }

    /// What to call the target in logs and errors (never a password).
    pub fn describe(&self, config: &RedisConfig) -> String {
        match self {
            Self::Direct(_) => {
                let mut shown = config.url.clone();
                mask_userinfo(&mut shown);
                shown
            }
            Self::Sentinel(_) => format!(
                "master {:?} of sentinels {}",
                config.sentinel.master_name,
                config.sentinel.addresses.join(",")
            ),
        }
    }
}

/// A Sentinel client for the master of `config.sentinel.master_name`.
fn sentinel_client(config: &RedisConfig) -> redis::RedisResult<SentinelClient> {
    let sentinel = &config.sentinel;
    // The data nodes' TLS, user, password and database, from the URL.
    let data = if config.url.is_empty() {
        None
    } else {
        Some(
            redis::Client::open(config.url.as_str())?
                .get_connection_info()
                .clone(),
        )
    };
    let tls = data.as_ref().and_then(|info| match info.addr() {
        ConnectionAddr::TcpTls { insecure, .. } => Some(if *insecure {
            TlsMode::Insecure
        } else {
            TlsMode::Secure
        }),
        _ => None,
    });
    // The sentinels speak TLS when the data nodes do (as Redis's own
    // `tls-replication`/sentinel setups run them).
    let sentinels = sentinel.addresses.iter().map(|address| {
        let (host, port) = parse_host_port(address).expect("validated");
        match tls {
            Some(mode) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: mode == TlsMode::Insecure,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host, port),
        }
    });
    let mut builder =
        SentinelClientBuilder::new(sentinels, &sentinel.master_name, SentinelServerType::Master)?;
    if let Some(mode) = tls {
        builder = builder.set_client_to_redis_tls_mode(mode);
    }
    if let Some(info) = &data {
        let settings = info.redis_settings();
        builder = builder.set_client_to_redis_db(settings.db());
        if let Some(username) = settings.username() {
            builder = builder.set_client_to_redis_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder.set_client_to_redis_password(password);
        }
    }
    if !sentinel.username.is_empty() {
        builder = builder.set_client_to_sentinel_username(&sentinel.username);
    }
    if !sentinel.password.is_empty() {
        builder = builder.set_client_to_sentinel_password(&sentinel.password);
    }
    builder.build()
}

/// Whether Redis refused a write because the node is no longer the master
/// (`READONLY`: a master demoted by a failover answers so). The session on
/// it must end and the master be found again: never retried there.
pub(super) fn is_demoted(error: &redis::RedisError) -> bool {
    error.code() == Some("READONLY")
}
