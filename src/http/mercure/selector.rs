//! Topic selectors (draft-07): `*` (every topic), a URI template (RFC 6570,
//! levels 1 and 2, by `uri-template-ex`, whose matching is a `regex`
//! automaton: linear in the topic's length, however the template is
//! written) or an exact string.

use uri_template_ex::UriTemplate;

/// The longest selector accepted, in bytes: far above any real topic IRI,
/// and a bound on the automaton one template compiles to.
pub const SELECTOR_MAX_BYTES: usize = 2048;

#[derive(Debug)]
pub enum Selector {
    Any,
    Template(UriTemplate),
    Exact(String),
}

/// Why a selector was refused (a 400).
#[derive(Debug, thiserror::Error)]
pub enum InvalidSelector {
    #[error("a topic selector must not be empty")]
    Empty,
    #[error("a topic selector must not contain control characters")]
    Control,
    #[error("a topic selector is {0} bytes; at most {SELECTOR_MAX_BYTES}")]
    TooLong(usize),
    #[error(
        "{0:?} is not a URI template this hub reads (RFC 6570 levels 1-2: {{var}}, {{+var}}, {{#var}}): {1}"
    )]
    Template(String, String),
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, InvalidSelector> {
        check_text(text)?;
        if text.len() > SELECTOR_MAX_BYTES {
            return Err(InvalidSelector::TooLong(text.len()));
        }
        if text == "*" {
            return Ok(Self::Any);
        }
        if text.contains('{') {
            let template = UriTemplate::new(text).map_err(|error| {
                InvalidSelector::Template(text.chars().take(64).collect(), error.to_string())
            })?;
            return Ok(Self::Template(template));
        }
        Ok(Self::Exact(text.to_owned()))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Template(template) => template.captures(topic).is_some(),
            Self::Exact(exact) => exact == topic,
        }
    }
}

/// The spec's rule for topics, selectors and ids: not empty, no C0, DEL or
/// C1 control characters.
pub fn check_text(text: &str) -> Result<(), InvalidSelector> {
    if text.is_empty() {
        return Err(InvalidSelector::Empty);
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidSelector::Control);
    }
    Ok(())
}

/// Whether any of `topics` matches any of `selectors`.
pub fn any_matches(selectors: &[Selector], topics: &[String]) -> bool {
    topics
        .iter()
        .any(|topic| selectors.iter().any(|selector| selector.matches(topic)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_templates_and_any() {
        let exact = Selector::parse("https://example.com/books/1").unwrap();
        assert!(exact.matches("https://example.com/books/1"));
        assert!(!exact.matches("https://example.com/books/10"));
        let template = Selector::parse("https://example.com/books/{id}").unwrap();
        assert!(template.matches("https://example.com/books/1"));
        assert!(!template.matches("https://example.com/books/1/reviews"));
        assert!(!template.matches("https://example.com/authors/1"));
        assert!(Selector::parse("*").unwrap().matches("anything"));
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("a\nb").is_err());
        assert!(Selector::parse("https://example.com/{unclosed").is_err());
        assert!(Selector::parse(&"x".repeat(SELECTOR_MAX_BYTES + 1)).is_err());
    }
}
