//! Rate limits (GCRA, by `governor`): publishes per publisher and per client
//! address, new subscriptions per client address.
//!
//! Each limit is a rate and a burst: a client may spend `burst` at once,
//! then one more every `1 / per_second`. A limit with `per_second = 0` is
//! off. A publish costs one cell per event (`rate_limits.publish_counts =
//! "events"`, the default) or one per request (`"requests"`): counting
//! events, a batch of 500 spends what 500 single publishes would, so
//! packing events into batches can't multiply what a client may send. A
//! request that costs more than a limit's burst could never pass, however
//! long its sender waited: it gets [`PublishLimited::OverBurst`] (a 413
//! that says to split the batch), not a 429 it would retry forever. State is kept per key only while it differs from a fresh one;
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
use super::{PublishCount, RateConfig};

/// One keyed limit.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    limit: RateLimit,
    /// The most cells one check may take (the quota's burst).
    burst: NonZeroU32,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(quota: Option<Quota>, limit: RateLimit) -> Option<Self> {
        let quota = quota?;
        Some(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            limit,
            burst: quota.burst_size(),
        })
    }

    fn check(&self, key: &K, clock: &DefaultClock) -> Result<(), Limited> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| self.limited(not_until.wait_time_from(clock.now())))
    }

    /// Takes `cost` cells at once, or none.
    fn check_n(
        &self,
        key: &K,
        cost: NonZeroU32,
        clock: &DefaultClock,
    ) -> Result<(), PublishLimited> {
        match self.limiter.check_key_n(key, cost) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(PublishLimited::Wait(
                self.limited(not_until.wait_time_from(clock.now())),
            )),
            Err(_insufficient_capacity) => Err(PublishLimited::OverBurst(OverBurst {
                limit: self.limit,
                cost: cost.get(),
                burst: self.burst.get(),
            })),
        }
    }

    fn limited(&self, retry_after: Duration) -> Limited {
        Limited {
            limit: self.limit,
            retry_after,
        }
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

/// A request that costs more than a limit's whole burst: no wait makes it
/// fit, only a smaller request (or a larger burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBurst {
    pub limit: RateLimit,
    /// Cells the request would take (its events, when counting events).
    pub cost: u32,
    pub burst: u32,
}

/// Why a publish was refused by a rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishLimited {
    /// Over the rate for now.
    Wait(Limited),
    /// Larger than the burst: never allowed as it is.
    OverBurst(OverBurst),
}

/// The limits of one hub.
pub struct RateLimiters {
    publish_counts: PublishCount,
    publish_per_publisher: Option<Keyed<PublisherId>>,
    publish_per_address: Option<Keyed<IpAddr>>,
    subscribe_per_address: Option<Keyed<IpAddr>>,
    clock: DefaultClock,
}

/// What each limit allows (`None`: off), from the checked configuration.
#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    pub publish_counts: PublishCount,
    pub publish_per_publisher: Option<Quota>,
    pub publish_per_address: Option<Quota>,
    pub subscribe_per_address: Option<Quota>,
}

impl RateLimiters {
    pub fn new(settings: RateSettings) -> Self {
        Self {
            publish_counts: settings.publish_counts,
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

    /// Whether `rate_limits.publish_per_publisher` is on (a route that names
    /// its publishers itself skips naming them when it is not).
    pub fn limits_publishers(&self) -> bool {
        self.publish_per_publisher.is_some()
    }

    /// What a publish request of `events` events costs.
    fn publish_cost(&self, events: usize) -> NonZeroU32 {
        match self.publish_counts {
            PublishCount::Requests => NonZeroU32::MIN,
            // Saturates: a count beyond u32 is over any burst anyway.
            PublishCount::Events => u32::try_from(events.max(1))
                .ok()
                .and_then(NonZeroU32::new)
                .unwrap_or(NonZeroU32::MAX),
        }
    }

    /// A publish request of `events` events from `address`, checked before
    /// its credentials are (so a flood of bad tokens is limited too).
    pub fn publish_from(&self, address: IpAddr, events: usize) -> Result<(), PublishLimited> {
        match &self.publish_per_address {
            Some(limit) => {
                limit.check_n(&client_key(address), self.publish_cost(events), &self.clock)
            }
            None => Ok(()),
        }
    }

    /// A publish request of `events` events by an authenticated publisher.
    pub fn publish_by(&self, publisher: &PublisherId, events: usize) -> Result<(), PublishLimited> {
        match &self.publish_per_publisher {
            Some(limit) => limit.check_n(publisher, self.publish_cost(events), &self.clock),
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
            publish_counts: PublishCount::Events,
            publish_per_publisher: quota(&off),
            publish_per_address: quota(&limited),
            subscribe_per_address: quota(&off),
        });
        let address: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..3 {
            limiters.publish_from(address, 1).unwrap();
        }
        let PublishLimited::Wait(limited) = limiters.publish_from(address, 1).unwrap_err() else {
            panic!("a request within the burst waits");
        };
        assert_eq!(limited.limit, RateLimit::PublishPerAddress);
        assert!(
            limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(1),
            "{limited:?}"
        );
        // Another address has its own budget; limits that are off never say no.
        limiters
            .publish_from("203.0.113.10".parse().unwrap(), 1)
            .unwrap();
        for _ in 0..100 {
            limiters.subscribe_from(address).unwrap();
            limiters.publish_by(&PublisherId::StaticKey(0), 1).unwrap();
        }
        assert!(limiters.any());
    }

    #[test]
    fn addresses_of_one_ipv6_network_share_a_budget() {
        let off = rate(0.0, 1);
        let one = rate(0.001, 1);
        let limiters = RateLimiters::new(RateSettings {
            publish_counts: PublishCount::Events,
            publish_per_publisher: quota(&off),
            publish_per_address: quota(&off),
            subscribe_per_address: quota(&one),
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

    fn publish_limits(publish_counts: PublishCount, limit: RateConfig) -> RateLimiters {
        let off = rate(0.0, 1);
        RateLimiters::new(RateSettings {
            publish_counts,
            publish_per_publisher: quota(&limit),
            publish_per_address: quota(&off),
            subscribe_per_address: quota(&off),
        })
    }

    #[test]
    fn counting_events_a_batch_spends_one_cell_per_event() {
        let limiters = publish_limits(PublishCount::Events, rate(0.001, 10));
        let publisher = PublisherId::StaticKey(0);
        limiters.publish_by(&publisher, 6).unwrap();
        limiters.publish_by(&publisher, 4).unwrap();
        assert!(
            matches!(
                limiters.publish_by(&publisher, 1),
                Err(PublishLimited::Wait(_))
            ),
            "ten events spent the burst of ten"
        );
    }

    #[test]
    fn a_batch_over_the_burst_is_refused_for_good_not_told_to_wait() {
        let limiters = publish_limits(PublishCount::Events, rate(1000.0, 10));
        let publisher = PublisherId::StaticKey(0);
        assert_eq!(
            limiters.publish_by(&publisher, 11),
            Err(PublishLimited::OverBurst(OverBurst {
                limit: RateLimit::PublishPerPublisher,
                cost: 11,
                burst: 10,
            }))
        );
        // Nothing was spent: a batch that fits still passes at once.
        limiters.publish_by(&publisher, 10).unwrap();
    }

    #[test]
    fn counting_requests_a_batch_costs_one() {
        let limiters = publish_limits(PublishCount::Requests, rate(0.001, 2));
        let publisher = PublisherId::StaticKey(0);
        limiters.publish_by(&publisher, 500).unwrap();
        limiters.publish_by(&publisher, 500).unwrap();
        assert!(limiters.publish_by(&publisher, 1).is_err());
    }
}
