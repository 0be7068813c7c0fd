//! Topic selectors: draft-07's `topic` values — `*` (every topic), a URI
//! template (RFC 6570, levels 1 and 2, by `uri-template-ex`) or an exact
//! string — and draft-08's matchers: `exact`, and `urlpattern` (the URL
//! Pattern standard, by `urlpattern`). Both crates match with `regex`
//! automata: linear in the topic's length, however the pattern is written,
//! so no subscriber's pattern can make matching slow.

use uri_template_ex::UriTemplate;
use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput};

/// The longest selector accepted, in bytes: far above any real topic IRI,
/// and a bound on the automaton one template compiles to.
pub const SELECTOR_MAX_BYTES: usize = 2048;

#[derive(Debug)]
pub enum Selector {
    Any,
    Template(UriTemplate),
    Exact(String),
    /// A URL pattern, with the hub's URL that relative topics resolve against.
    UrlPattern(Box<UrlPattern>, Url),
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
    #[error("{0:?} is not a URL pattern: {1}")]
    UrlPattern(String, String),
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

    /// Draft-08's `exact` matcher: the string as is (no normalisation).
    pub fn exact(text: &str) -> Result<Self, InvalidSelector> {
        check_text(text)?;
        if text.len() > SELECTOR_MAX_BYTES {
            return Err(InvalidSelector::TooLong(text.len()));
        }
        Ok(Self::Exact(text.to_owned()))
    }

    /// Draft-08's `urlpattern` matcher; a relative pattern (and, when
    /// matching, a relative topic) resolves against `base`, the hub's URL.
    pub fn url_pattern(text: &str, base: &Url) -> Result<Self, InvalidSelector> {
        check_text(text)?;
        if text.len() > SELECTOR_MAX_BYTES {
            return Err(InvalidSelector::TooLong(text.len()));
        }
        let invalid = |error: urlpattern::Error| {
            InvalidSelector::UrlPattern(text.chars().take(64).collect(), error.to_string())
        };
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(text, Some(base.clone()))
                .map_err(invalid)?;
        let pattern = UrlPattern::parse(init, Default::default()).map_err(invalid)?;
        Ok(Self::UrlPattern(Box::new(pattern), base.clone()))
    }

    pub fn matches(&self, topic: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Template(template) => template.captures(topic).is_some(),
            Self::Exact(exact) => exact == topic,
            // A topic that is no URL, even relative to the hub's, matches
            // no pattern (the spec's rule); so does an evaluation error.
            Self::UrlPattern(pattern, base) => base.join(topic).is_ok_and(|url| {
                pattern
                    .test(UrlPatternMatchInput::Url(url))
                    .unwrap_or(false)
            }),
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
    fn url_patterns_match_absolute_and_relative_topics() {
        let base = Url::parse("https://hub.example/.well-known/mercure").unwrap();
        let pattern = Selector::url_pattern("https://example.com/books/:id", &base).unwrap();
        assert!(pattern.matches("https://example.com/books/1"));
        assert!(!pattern.matches("https://example.com/books/1/reviews"));
        assert!(!pattern.matches("not a url at all ::"));
        let relative = Selector::url_pattern("/books/*", &base).unwrap();
        assert!(relative.matches("/books/1"));
        assert!(relative.matches("https://hub.example/books/2"));
        assert!(!relative.matches("https://other.example/books/2"));
        assert!(Selector::url_pattern("https://example.com/(", &base).is_err());
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("a\nb").is_err());
        assert!(Selector::parse("https://example.com/{unclosed").is_err());
        assert!(Selector::parse(&"x".repeat(SELECTOR_MAX_BYTES + 1)).is_err());
    }
}
