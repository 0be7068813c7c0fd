//! Where a Mercure `Last-Event-ID` resumes. A hub-made id names its
//! position; a publisher's id is looked up in the history of the internal
//! topic: the earliest update that bears it (the spec's rule for a reused
//! id).
//!
//! The lookup reads history page by page, so it costs one read of history
//! per subscriber. When many subscribers come back at once (a replica's
//! streams all cut, every page reconnecting with the same last id), those
//! reads would crowd the backplane until lookups fail. So lookups of one id
//! share one read while it runs and its answer for [`ANSWER_TTL`] after
//! ([`ResumeLookups`]). A lookup that can't read history is an error, not
//! a guess: resuming from `earliest` instead would send the subscriber
//! every update it already has.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

use super::update::{MERCURE_TOPIC, Update, position_of};
use crate::backplane::{BackplaneError, PageLimit};
use crate::hub::Hub;
use crate::model::{EventId, ResumePoint, TopicName};

/// The resume keyword: everything history holds.
pub const EARLIEST: &str = "earliest";
/// How many events one page of the lookup reads.
const LOOKUP_PAGE_EVENTS: usize = 256;
const LOOKUP_PAGE_BYTES: usize = 1024 * 1024;
/// How long a lookup's answer is reused: long enough to cover a reconnect
/// storm (browsers come back within `retry` plus jitter), short enough that
/// history has barely moved.
const ANSWER_TTL: Duration = Duration::from_secs(5);
/// Most ids remembered; past it the expired answers go, and if none has
/// expired, all of them (the next lookups read history again).
const MAX_REMEMBERED: usize = 4096;

/// A lookup's answer: the position of the earliest update bearing the id,
/// or `None` when history holds none.
type Answer = Option<EventId>;
/// An id's answer (read, or being read) and when its read began.
type Remembered = (Instant, Arc<OnceCell<Answer>>);

/// Lookups of publishers' ids, shared by every subscribe of the process.
#[derive(Debug, Default)]
pub struct ResumeLookups {
    answers: Mutex<HashMap<String, Remembered>>,
}

impl ResumeLookups {
    /// The answer for `id`: the one being read or read less than
    /// [`ANSWER_TTL`] ago, else `read`'s. A failed read is not remembered:
    /// the next caller (one waiting for this read included) reads again.
    async fn answer<F, Fut>(&self, id: &str, read: F) -> Result<Answer, BackplaneError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Answer, BackplaneError>>,
    {
        let cell = {
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let fresh = |(at, cell): &Remembered| {
                !cell.initialized() || now.duration_since(*at) < ANSWER_TTL
            };
            match answers.get(id).filter(|entry| fresh(entry)) {
                Some((_, cell)) => cell.clone(),
                None => {
                    if answers.len() >= MAX_REMEMBERED {
                        answers.retain(|_, entry| fresh(entry));
                        if answers.len() >= MAX_REMEMBERED {
                            answers.clear();
                        }
                    }
                    let cell = Arc::new(OnceCell::new());
                    answers.insert(id.to_owned(), (now, cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_try_init(read).await.copied()
    }

    /// Where `id` resumes, and the cursor to name in the response: the id
    /// itself when history holds it, else `earliest` (and everything
    /// history holds). `Err`: history could not be read.
    pub async fn resolve(
        &self,
        hub: &Hub,
        id: &str,
    ) -> Result<(ResumePoint, String), BackplaneError> {
        let earliest = (ResumePoint::Earliest, EARLIEST.to_owned());
        if id == EARLIEST {
            return Ok(earliest);
        }
        if let Some(position) = position_of(id) {
            return Ok((ResumePoint::After(position), id.to_owned()));
        }
        let found = self.answer(id, || find_in_history(hub, id)).await?;
        Ok(match found {
            Some(position) => (ResumePoint::After(position), id.to_owned()),
            None => earliest,
        })
    }
}

/// The earliest update in the internal topic's history bearing `id`.
async fn find_in_history(hub: &Hub, id: &str) -> Result<Answer, BackplaneError> {
    let topic = TopicName::parse(MERCURE_TOPIC).expect("a valid topic name");
    let limit = PageLimit {
        events: LOOKUP_PAGE_EVENTS,
        bytes: LOOKUP_PAGE_BYTES,
    };
    let mut after = 0;
    loop {
        let page = hub.backplane().history(&topic, after, limit).await?;
        if let Some(event) = page
            .events
            .iter()
            .find(|event| Update::of(event).is_some_and(|update| update.id == id))
        {
            return Ok(Some(event.id));
        }
        match page.next_after {
            Some(next) => after = next,
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn unavailable() -> BackplaneError {
        BackplaneError::Unavailable {
            reason: "stopped".into(),
            source: None,
        }
    }

    #[tokio::test]
    async fn concurrent_lookups_of_one_id_read_history_once() {
        let lookups = ResumeLookups::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            Ok(Some(EventId::new(1, 42)))
        };
        let answers =
            futures_util::future::join_all((0..50).map(|_| lookups.answer("urn:x", read))).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(
            answers
                .iter()
                .all(|answer| *answer.as_ref().unwrap() == Some(EventId::new(1, 42)))
        );
        // Another id is read on its own.
        lookups.answer("urn:y", read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_read_is_an_error_and_is_not_remembered() {
        let lookups = ResumeLookups::default();
        let failed = lookups
            .answer("urn:x", || async { Err(unavailable()) })
            .await;
        assert!(failed.is_err());
        let answer = lookups.answer("urn:x", || async { Ok(None) }).await;
        assert_eq!(answer.unwrap(), None);
    }

    #[tokio::test]
    async fn an_answer_is_reused_until_it_is_older_than_its_ttl() {
        let lookups = ResumeLookups::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        };
        lookups.answer("urn:x", read).await.unwrap();
        lookups.answer("urn:x", read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // The TTL is on the wall clock (std's Instant): aged by hand.
        lookups.answers.lock().unwrap().get_mut("urn:x").unwrap().0 -= ANSWER_TTL;
        lookups.answer("urn:x", read).await.unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn past_the_bound_the_remembered_answers_are_dropped() {
        let lookups = ResumeLookups::default();
        for n in 0..MAX_REMEMBERED + 10 {
            lookups
                .answer(&format!("urn:{n}"), || async { Ok(None) })
                .await
                .unwrap();
        }
        assert!(lookups.answers.lock().unwrap().len() <= MAX_REMEMBERED);
    }
}
