//! A set of publish sequence numbers as a bitmap: one bit per publish of a
//! topic, so a subscriber remembers 10,000 events in 1.25 KiB.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Adds `seq`; `false` when it was already there.
    pub fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = Self::position(seq);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        fresh
    }

    pub fn contains(&self, seq: u64) -> bool {
        let (word, bit) = Self::position(seq);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    /// How many sequence numbers the set holds.
    pub fn count(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many members of `self` are missing from `other`.
    pub fn count_missing_from(&self, other: &SeqSet) -> u64 {
        self.words
            .iter()
            .enumerate()
            .map(|(i, &w)| u64::from((w & !other.words.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }

    /// The members of `self` missing from `other`, in order.
    pub fn missing_from<'a>(&'a self, other: &'a SeqSet) -> impl Iterator<Item = u64> + 'a {
        self.words.iter().enumerate().flat_map(move |(i, &w)| {
            let mut missing = w & !other.words.get(i).copied().unwrap_or(0);
            std::iter::from_fn(move || {
                (missing != 0).then(|| {
                    let bit = missing.trailing_zeros();
                    missing &= missing - 1;
                    i as u64 * 64 + u64::from(bit)
                })
            })
        })
    }

    fn position(seq: u64) -> (usize, u64) {
        let word = usize::try_from(seq / 64).expect("sequence numbers fit in memory");
        (word, 1u64 << (seq % 64))
    }
}

impl FromIterator<u64> for SeqSet {
    fn from_iter<I: IntoIterator<Item = u64>>(iter: I) -> Self {
        let mut set = Self::default();
        for seq in iter {
            set.insert(seq);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_duplicates_and_counts() {
        let mut set = SeqSet::default();
        assert_eq!(set.count(), 0);
        assert!(set.insert(0));
        assert!(set.insert(130));
        assert!(!set.insert(130));
        assert!(set.contains(130) && set.contains(0) && !set.contains(1) && !set.contains(9999));
        assert_eq!(set.count(), 2);
    }

    #[test]
    fn counts_members_missing_from_another_set() {
        let acked: SeqSet = [1, 2, 3, 70, 200].into_iter().collect();
        let received: SeqSet = [1, 3, 70, 71].into_iter().collect();
        assert_eq!(acked.count_missing_from(&received), 2);
        assert_eq!(received.count_missing_from(&acked), 1);
        assert_eq!(acked.missing_from(&received).collect::<Vec<_>>(), [2, 200]);
        assert_eq!(received.missing_from(&acked).collect::<Vec<_>>(), [71]);
    }
}
