//! Static bearer keys (`auth.publish_keys`, `auth.metrics_keys`), compared
//! in constant time.

use subtle::{ConditionallySelectable, ConstantTimeEq};

/// A list of accepted keys; empty means nothing is required.
#[derive(Clone, Default)]
pub struct StaticKeys(Vec<Vec<u8>>);

impl std::fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys themselves.
        write!(f, "StaticKeys({} keys)", self.0.len())
    }
}

impl StaticKeys {
    pub fn new(keys: Vec<String>) -> Self {
        Self(keys.into_iter().map(String::into_bytes).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The index of the key `presented` equals. Every key is compared, with
    /// no early exit, so timing says nothing about which key nearly matched.
    pub fn find(&self, presented: &str) -> Option<usize> {
        let presented = presented.as_bytes();
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (position, key) in self.0.iter().enumerate() {
            let equal = key.as_slice().ct_eq(presented);
            index.conditional_assign(&(position as u32), equal);
            found |= equal;
        }
        bool::from(found).then_some(index as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_matching_key_and_nothing_else() {
        let keys = StaticKeys::new(vec!["first-key".into(), "second-key".into()]);
        assert_eq!(keys.find("second-key"), Some(1));
        assert_eq!(keys.find("first-key"), Some(0));
        assert_eq!(keys.find("second-ke"), None);
        assert_eq!(keys.find(""), None);
        assert_eq!(StaticKeys::default().find("x"), None);
        assert!(!format!("{keys:?}").contains("first"));
    }
}
