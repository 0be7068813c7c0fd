//! Rate limits (GCRA, by `governor`): publishes per publisher and per client
//! address, new subscriptions per client address.
//!
//! Each limit is a rate and a burst: a client may spend `burst` at once,
//! then one more every `1 / per_second`. A limit with `per_second = 0` is
//! off. State is kept per key only while it differs from a fresh one;
//! [`RateLimiters::forget_idle`] drops the rest, so a scan of many addresses
//! costs memory only for as long as their limits are in effect.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::client_address::client_key;
use super::error::RateLimit;
use super::grant::PublisherId;
use crate::config::RateConfig;

/// One keyed limit.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    limit: RateLimit,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(config: &RateConfig, limit: RateLimit) -> Option<Self> {
        let quota = quota(config)?;
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            limit,
        })
    }

    fn check(&self, key: &K, clock: &DefaultClock) -> Result<(), Limited> {
        self.limiter.check_key(key).map_err(|not_until| Limited {
            limit: self.limit,
            retry_after: not_until.wait_time_from(clock.now()),
        })
    }

    fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The quota a configured limit stands for; `None` when it is off.
pub fn quota(config: &RateConfig) -> Option<Quota> {
    if config.per_second <= 0.0 {
        return None;
    }
    let period = Duration::from_secs_f64(1.0 / config.per_second);
    let burst = NonZeroU32::new(config.burst.max(1)).expect("at least 1");
    Quota::with_period(period).map(|quota| quota.allow_burst(burst))
}

/// A request over a limit, and when one more would be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub limit: RateLimit,
    pub retry_after: Duration,
}

/// The limits of one hub.
pub struct RateLimiters {
    publish_per_publisher: Option<Keyed<PublisherId>>,
    publish_per_address: Option<Keyed<IpAddr>>,
    subscribe_per_address: Option<Keyed<IpAddr>>,
    clock: DefaultClock,
}

/// What each limit allows, from the configuration.
pub struct RateSettings<'a> {
    pub publish_per_publisher: &'a RateConfig,
    pub publish_per_address: &'a RateConfig,
    pub subscribe_per_address: &'a RateConfig,
}

impl RateLimiters {
    pub fn new(settings: RateSettings<'_>) -> Self {
        Self {
            publish_per_publisher: Keyed::new(
                settings.publish_per_publisher,
                RateLimit::PublishPerPublisher,
            ),
            publish_per_address: Keyed::new(
                settings.publish_per_address,
                RateLimit::PublishPerAddress,
            ),
            subscribe_per_address: Keyed::new(
                settings.subscribe_per_address,
                RateLimit::SubscribePerAddress,
            ),
            clock: DefaultClock::default(),
        }
    }

    /// Whether any limit is on (for the startup log).
    pub fn any(&self) -> bool {
        self.publish_per_publisher.is_some()
            || self.publish_per_address.is_some()
            || self.subscribe_per_address.is_some()
    }

    /// One publish request from `address`, checked before its credentials
    /// are (so a flood of bad tokens is limited too).
    pub fn publish_from(&self, address: IpAddr) -> Result<(), Limited> {
        match &self.publish_per_address {
            Some(limit) => limit.check(&client_key(address), &self.clock),
            None => Ok(()),
        }
    }

    /// One publish request by an authenticated publisher.
    pub fn publish_by(&self, publisher: &PublisherId) -> Result<(), Limited> {
        match &self.publish_per_publisher {
            Some(limit) => limit.check(publisher, &self.clock),
            None => Ok(()),
        }
    }

    /// One new subscription from `address`.
    pub fn subscribe_from(&self, address: IpAddr) -> Result<(), Limited> {
        match &self.subscribe_per_address {
            Some(limit) => limit.check(&client_key(address), &self.clock),
            None => Ok(()),
        }
    }

    /// Drops the state of keys whose limit is back to fresh.
    pub fn forget_idle(&self) {
        if let Some(limit) = &self.publish_per_publisher {
            limit.forget_idle();
        }
        if let Some(limit) = &self.publish_per_address {
            limit.forget_idle();
        }
        if let Some(limit) = &self.subscribe_per_address {
            limit.forget_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: f64, burst: u32) -> RateConfig {
        RateConfig { per_second, burst }
    }

    #[test]
    fn a_burst_is_allowed_then_the_next_request_waits_for_the_rate() {
        let off = rate(0.0, 1);
        let limited = rate(1.0, 3);
        let limiters = RateLimiters::new(RateSettings {
            publish_per_publisher: &off,
            publish_per_address: &limited,
            subscribe_per_address: &off,
        });
        let address: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..3 {
            limiters.publish_from(address).unwrap();
        }
        let limited = limiters.publish_from(address).unwrap_err();
        assert_eq!(limited.limit, RateLimit::PublishPerAddress);
        assert!(
            limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(1),
            "{limited:?}"
        );
        // Another address has its own budget; limits that are off never say no.
        limiters
            .publish_from("203.0.113.10".parse().unwrap())
            .unwrap();
        for _ in 0..100 {
            limiters.subscribe_from(address).unwrap();
            limiters.publish_by(&PublisherId::StaticKey(0)).unwrap();
        }
        assert!(limiters.any());
    }

    #[test]
    fn addresses_of_one_ipv6_network_share_a_budget() {
        let off = rate(0.0, 1);
        let one = rate(0.001, 1);
        let limiters = RateLimiters::new(RateSettings {
            publish_per_publisher: &off,
            publish_per_address: &off,
            subscribe_per_address: &one,
        });
        limiters
            .subscribe_from("2001:db8::1".parse().unwrap())
            .unwrap();
        assert!(
            limiters
                .subscribe_from("2001:db8::2".parse().unwrap())
                .is_err()
        );
    }
}
