//! Auth's metric families: requests refused for their credentials, by
//! action and [`RejectionReason`], and requests over a rate limit.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use strum::VariantArray;

use super::{Action, RateLimit, TokenRejection};
use crate::metrics::{Registry, labelled};

/// Why a request was refused for its credentials: the `reason` label of
/// `ssehub_auth_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionReason {
    /// No credentials where they are needed.
    MissingToken,
    /// A token that did not verify.
    Token(TokenRejection),
    /// A valid token whose grants do not cover the topic.
    ForbiddenTopic,
}

impl RejectionReason {
    /// Every reason, in the order of the label's values.
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::once(Self::MissingToken)
            .chain(TokenRejection::VARIANTS.iter().copied().map(Self::Token))
            .chain(std::iter::once(Self::ForbiddenTopic))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Token(rejection) => rejection.as_str(),
            Self::ForbiddenTopic => "forbidden_topic",
        }
    }

    /// Its place in [`RejectionReason::all`].
    fn column(self) -> usize {
        match self {
            Self::MissingToken => 0,
            Self::Token(rejection) => 1 + rejection as usize,
            Self::ForbiddenTopic => 1 + TokenRejection::VARIANTS.len(),
        }
    }
}

/// Auth's figures. Lives as long as the authenticator.
pub struct AuthMetrics {
    /// By `Action` (rows) and `RejectionReason` (columns).
    rejections: Vec<Counter>,
    rate_limited: [Counter; RateLimit::VARIANTS.len()],
}

impl std::fmt::Debug for AuthMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthMetrics")
    }
}

impl Default for AuthMetrics {
    /// Families registered nowhere (tests).
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

impl AuthMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let rejection_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        let rejections = Action::VARIANTS
            .iter()
            .flat_map(|action| {
                let family = &rejection_family;
                RejectionReason::all().map(move |reason| {
                    family
                        .get_or_create(&[("action", action.label()), ("reason", reason.as_str())])
                        .clone()
                })
            })
            .collect();
        registry.register(
            "auth_rejections",
            "Requests refused for their credentials (401, 403), by action and reason",
            rejection_family,
        );
        let rate_limited = labelled::<RateLimit, _>(
            registry,
            "rate_limited",
            "Requests over a rate limit: publishes answered 429, subscribes shed",
            "limit",
        );
        Self {
            rejections,
            rate_limited,
        }
    }

    /// A request refused for its credentials.
    pub fn rejected(&self, action: Action, reason: RejectionReason) {
        let reasons = RejectionReason::all().count();
        self.rejections[action as usize * reasons + reason.column()].inc();
    }

    pub fn rate_limited(&self, limit: RateLimit) {
        self.rate_limited[limit as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_counts_in_its_own_column() {
        for (column, reason) in RejectionReason::all().enumerate() {
            assert_eq!(reason.column(), column, "{reason:?}");
        }
    }

    #[test]
    fn rate_limits_are_snake_case() {
        assert_eq!(
            RateLimit::SubscribePerAddress.as_str(),
            "subscribe_per_address"
        );
    }
}
