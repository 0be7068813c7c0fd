//! A publish's outcome, decided and counted here only: how each
//! [`PublishError`] is answered (status, problem type) and which outcome
//! label it counts under ([`PublishRefusal::of`], the one map), the label of
//! any answer a publish route gives ([`outcome_of_status`]: also the answers
//! given before a handler ran, a malformed body or a refused key), and the
//! one helper the three publish routes reach the hub through ([`publish`]).
//!
//! Two counters, both labelled here: `publish_requests{outcome}` (with the
//! request duration) once per answered publish request, by the request
//! middleware from the final status ([`count_request`]), and
//! `events_published{outcome}` per event handed to the hub, by [`publish`].
//! A refusal's label is its status's label, so a request and its events
//! always count under the same outcome.

use std::time::Duration;

use poem::http::StatusCode;

use super::error::ApiError;
use crate::backplane::BackplaneError;
use crate::hub::{Hub, HubMetrics, IdempotencyOutcome, PublishError, PublishOutcome, Receipt};
use crate::model::{EventDraft, Idempotency};

/// The outcome label of a publish route's answer, from its status.
pub fn outcome_of_status(status: u16) -> PublishOutcome {
    match status {
        200..=299 => PublishOutcome::Accepted,
        400 | 408 | 409 | 415 | 422 => PublishOutcome::RejectedInvalid,
        401 | 403 => PublishOutcome::RejectedUnauthorized,
        413 => PublishOutcome::RejectedTooLarge,
        429 => PublishOutcome::RejectedRateLimited,
        503 => PublishOutcome::Unavailable,
        504 => PublishOutcome::OutcomeUnknown,
        _ => PublishOutcome::Error,
    }
}

/// How a publish the hub refused is answered and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRefusal {
    pub status: StatusCode,
    /// The problem type: `urn:ssehub:problem:<problem>`.
    pub problem: &'static str,
    pub outcome: PublishOutcome,
}

impl PublishRefusal {
    /// The one map from a publish error to its status, problem type and
    /// outcome label.
    pub fn of(error: &PublishError) -> Self {
        let (status, problem) = match error {
            PublishError::Closing => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
            PublishError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "event-too-large"),
            PublishError::Empty => (StatusCode::UNPROCESSABLE_ENTITY, "empty-batch"),
            // The draft's answers: 409 while the first is under way (no
            // `Retry-After`: its answer comes when it comes), 422 for a key
            // sent with another request.
            PublishError::KeyInFlight => (StatusCode::CONFLICT, "idempotency-key-in-flight"),
            PublishError::KeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused"),
            PublishError::Backplane(BackplaneError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "backplane-unavailable")
            }
            // 503 with Retry-After, as the operator asked for replicated
            // publishes only: the event is on the Redis master and may have
            // been delivered, but a failover could still lose it. A retry
            // with the same Idempotency-Key is safe whether it was stored or
            // not; one without a key may publish it twice.
            PublishError::Backplane(BackplaneError::NotReplicated { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "publish-not-replicated")
            }
            // 504, not 503: a 503 here means "nothing was published, retry
            // freely" (what nginx's `proxy_next_upstream http_503` and
            // generic clients assume); this one may have been published,
            // so it must not look like that.
            PublishError::Backplane(BackplaneError::OutcomeUnknown { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "publish-outcome-unknown")
            }
        };
        Self {
            status,
            problem,
            outcome: outcome_of_status(status.as_u16()),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(error: PublishError) -> Self {
        let PublishRefusal {
            status, problem, ..
        } = PublishRefusal::of(&error);
        let detail = match &error {
            PublishError::Empty => "`events` must hold at least one event".to_owned(),
            PublishError::Backplane(BackplaneError::OutcomeUnknown { .. }) => format!(
                "{error}. The events may have been published (and may still be, \
                 once the backplane resumes), or not. A retry with the same \
                 Idempotency-Key is safe (it gets the first publish's ids, or \
                 publishes once); without one it may publish them a second \
                 time, with new ids: check a subscriber or the topic's history \
                 first"
            ),
            PublishError::Backplane(BackplaneError::NotReplicated { .. }) => format!(
                "{error}. The events may or may not be kept (they may even have been \
                 delivered): retry with the same Idempotency-Key, which is safe either way"
            ),
            _ => error.to_string(),
        };
        // `Retry-After` on a 503 only: never on the 504, where a blind retry
        // is exactly what may publish twice.
        let answer = if status == StatusCode::SERVICE_UNAVAILABLE {
            Self::unavailable(problem, detail)
        } else {
            Self::new(status, problem, detail)
        };
        match error {
            PublishError::TooLarge { index, .. } => answer.at(&format!("events[{index}]")),
            _ => answer,
        }
    }
}

/// Hands `drafts` to the hub (at most once per `once`'s record) and counts
/// its events under their outcome, and a keyed publish's outcome in
/// `idempotent_publishes`: the one way the publish routes publish. A
/// replayed publish published nothing now, so its events are not counted
/// again.
pub async fn publish(
    hub: &Hub,
    drafts: Vec<EventDraft>,
    once: Option<Idempotency>,
) -> Result<Receipt, ApiError> {
    let events = drafts.len();
    let keyed = once.is_some();
    let result = hub.publish_once(drafts, once).await;
    let outcome = match &result {
        Ok(Receipt::Published(_)) => Some(PublishOutcome::Accepted),
        Ok(Receipt::Replayed(_)) => None,
        Err(error) => Some(PublishRefusal::of(error).outcome),
    };
    if let Some(outcome) = outcome {
        hub.metrics().events_published(outcome, events);
    }
    if keyed && let Some(outcome) = IdempotencyOutcome::of(&result) {
        hub.metrics().idempotent_publish(outcome);
    }
    result.map_err(ApiError::from)
}

/// Counts one answered publish request under the outcome of its final
/// `status`, whether a handler ran or the request was refused before.
pub fn count_request(metrics: &HubMetrics, status: u16, took: Duration) {
    metrics.publish_request(outcome_of_status(status), took);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> PublishError {
        PublishError::Backplane(BackplaneError::Unavailable {
            reason: "down".to_owned(),
            source: None,
        })
    }

    fn not_replicated() -> PublishError {
        PublishError::Backplane(BackplaneError::NotReplicated {
            reason: "0 of 1 replicas".to_owned(),
        })
    }

    fn outcome_unknown() -> PublishError {
        PublishError::Backplane(BackplaneError::OutcomeUnknown {
            reason: "no answer".to_owned(),
            source: None,
        })
    }

    /// Every publish error, one of each kind; the match fails to compile
    /// when a kind is added, so the table below can't miss it.
    fn every_publish_error() -> Vec<PublishError> {
        let all = vec![
            PublishError::Closing,
            PublishError::TooLarge {
                index: 3,
                size: 10,
                limit: 5,
            },
            PublishError::Empty,
            PublishError::KeyInFlight,
            PublishError::KeyReused,
            unavailable(),
            not_replicated(),
            outcome_unknown(),
        ];
        for error in &all {
            match error {
                PublishError::Closing
                | PublishError::TooLarge { .. }
                | PublishError::Empty
                | PublishError::KeyInFlight
                | PublishError::KeyReused
                | PublishError::Backplane(BackplaneError::Unavailable { .. })
                | PublishError::Backplane(BackplaneError::NotReplicated { .. })
                | PublishError::Backplane(BackplaneError::OutcomeUnknown { .. }) => {}
            }
        }
        all
    }

    #[test]
    fn every_publish_error_has_its_status_problem_and_outcome() {
        let table: Vec<(u16, &str, &str)> = every_publish_error()
            .iter()
            .map(PublishRefusal::of)
            .map(|refusal| {
                (
                    refusal.status.as_u16(),
                    refusal.problem,
                    refusal.outcome.as_str(),
                )
            })
            .collect();
        assert_eq!(
            table,
            [
                (503, "draining", "unavailable"),
                (413, "event-too-large", "rejected_too_large"),
                (422, "empty-batch", "rejected_invalid"),
                (409, "idempotency-key-in-flight", "rejected_invalid"),
                (422, "idempotency-key-reused", "rejected_invalid"),
                (503, "backplane-unavailable", "unavailable"),
                (503, "publish-not-replicated", "unavailable"),
                (504, "publish-outcome-unknown", "outcome_unknown"),
            ]
        );
    }

    #[test]
    fn a_refusal_counts_under_the_label_of_the_status_it_answers() {
        for error in every_publish_error() {
            let refusal = PublishRefusal::of(&error);
            let answer = ApiError::from(error);
            assert_eq!(answer.status, refusal.status);
            assert_eq!(answer.slug, refusal.problem);
            assert_eq!(outcome_of_status(answer.status.as_u16()), refusal.outcome);
        }
    }

    #[test]
    fn only_a_503_refusal_invites_a_retry() {
        for error in every_publish_error() {
            let answer = ApiError::from(error);
            assert_eq!(
                answer.retry_after.is_some(),
                answer.status == StatusCode::SERVICE_UNAVAILABLE,
                "{answer:?}"
            );
        }
    }

    #[test]
    fn a_too_large_event_is_named_by_its_index_in_the_batch() {
        let answer = ApiError::from(PublishError::TooLarge {
            index: 3,
            size: 10,
            limit: 5,
        });
        assert!(
            answer.detail.starts_with("events[3]: "),
            "{}",
            answer.detail
        );
    }

    #[test]
    fn statuses_map_to_their_outcome_labels() {
        let labels: Vec<(u16, &str)> = [
            200, 202, 400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 500, 503, 504,
        ]
        .into_iter()
        .map(|status| (status, outcome_of_status(status).as_str()))
        .collect();
        assert_eq!(
            labels,
            [
                (200, "accepted"),
                (202, "accepted"),
                (400, "rejected_invalid"),
                (401, "rejected_unauthorized"),
                (403, "rejected_unauthorized"),
                (404, "error"),
                (408, "rejected_invalid"),
                (409, "rejected_invalid"),
                (413, "rejected_too_large"),
                (415, "rejected_invalid"),
                (422, "rejected_invalid"),
                (429, "rejected_rate_limited"),
                (500, "error"),
                (503, "unavailable"),
                (504, "outcome_unknown"),
            ]
        );
    }
}
