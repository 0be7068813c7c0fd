//! Topic selectors: draft-07's `topic` values — `*` (every topic), a URI
//! template (RFC 6570, levels 1 and 2, by `uri-template-ex`) or an exact
//! string — and draft-08's matchers: `exact`, and `urlpattern` (the URL
//! Pattern standard, by `urlpattern`). Both crates match with `regex`
//! automata: linear in the topic's length, however the pattern is written,
//! so no subscriber's pattern can make matching slow.

use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
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
    #[error("must not be empty")]
    Empty,
    #[error("must not contain control characters")]
    Control,
    #[error(
        "must not contain Unicode format characters (general category Cf, e.g. U+{0:04X}): \
         they are invisible and let one identifier pass for another"
    )]
    Format(u32),
    #[error("a topic selector is {0} bytes; at most {SELECTOR_MAX_BYTES}")]
    TooLong(usize),
    #[error(
        "{0:?} is not a URI template this hub reads (RFC 6570 levels 1-2: {{var}}, {{+var}}, {{#var}}): {1}"
    )]
    Template(String, String),
    #[error(
        "the URI template expression {0:?} is past RFC 6570 level 2 (the operators . / ; ? &, \
         several variables in one expression, the modifiers * and :n): this hub matches \
         levels 1-2 ({{var}}, {{+var}}, {{#var}}); use draft-08's match_urlpattern for such topics"
    )]
    BeyondLevel2(String),
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
            if let Some(expression) = beyond_level_2(text) {
                return Err(InvalidSelector::BeyondLevel2(expression.to_owned()));
            }
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

/// The first expression of `template` past level 2, if any. The matching
/// crate reads levels 1-2 only, and parses a level 3-4 expression (`{/id}`,
/// `{?page}`, `{a,b}`, `{x*}`) as something that silently matches nothing:
/// this check turns that into the 400 it should be. (No maintained Rust
/// crate matches templates past level 2: the level-4 ones only expand.)
/// A level 1-2 expression is `+` or `#` at most, then one variable name
/// (RFC 6570 `varname`: letters, digits, `_`, `%XX`, inner dots).
fn beyond_level_2(template: &str) -> Option<&str> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(length) = rest[open..].find('}') else {
            // Unclosed: the crate's own parse error says so.
            return None;
        };
        let expression = &rest[open..open + length + 1];
        let body = &expression[1..expression.len() - 1];
        let name = body.strip_prefix(['+', '#']).unwrap_or(body);
        let is_name = !name.is_empty()
            && !name.starts_with('.')
            && !name.ends_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '%' | '.'));
        if !is_name {
            return Some(expression);
        }
        rest = &rest[open + length + 1..];
    }
    None
}

/// The spec's rule for topics, selectors and ids: not empty, then
/// [`check_characters`].
pub fn check_text(text: &str) -> Result<(), InvalidSelector> {
    if text.is_empty() {
        return Err(InvalidSelector::Empty);
    }
    check_characters(text)
}

/// The spec's rule for the characters of topics, selectors, ids and types:
/// no C0, DEL or C1 control characters, and no Unicode format characters
/// (general category `Cf`: bidirectional and zero-width controls, which
/// are invisible and let one identifier pass for another).
pub fn check_characters(text: &str) -> Result<(), InvalidSelector> {
    if text.chars().any(char::is_control) {
        return Err(InvalidSelector::Control);
    }
    if let Some(format) = text
        .chars()
        .find(|c| c.general_category() == GeneralCategory::Format)
    {
        return Err(InvalidSelector::Format(format.into()));
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
    fn templates_past_level_2_are_refused_and_levels_1_and_2_kept() {
        for template in [
            "https://example.com/books{/id}",
            "https://example.com/books{?page}",
            "https://example.com/books{&page}",
            "https://example.com/{a,b}",
            "https://example.com/{.ext}",
            "https://example.com/{;x}",
            "https://example.com/{x*}",
            "https://example.com/{x:3}",
            "https://example.com/{=x}",
            "https://example.com/{}",
            "https://example.com/{ok}/{/bad}",
        ] {
            assert!(
                matches!(
                    Selector::parse(template),
                    Err(InvalidSelector::BeyondLevel2(_))
                ),
                "{template}"
            );
        }
        for template in [
            "https://example.com/{id}",
            "https://example.com/{+path}",
            "https://example.com/a{#frag}",
            "https://example.com/{book_id}/{v.2}",
        ] {
            assert!(
                matches!(Selector::parse(template), Ok(Selector::Template(_))),
                "{template}"
            );
        }
    }

    #[test]
    fn bad_selectors_are_refused() {
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("a\nb").is_err());
        assert!(Selector::parse("https://example.com/{unclosed").is_err());
        assert!(Selector::parse(&"x".repeat(SELECTOR_MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn format_characters_are_refused_wherever_text_is_checked() {
        // A zero-width space, a right-to-left override, a BOM, a soft hyphen:
        // all general category Cf.
        for format in ['\u{200B}', '\u{202E}', '\u{FEFF}', '\u{AD}'] {
            let text = format!("https://example.com/{format}books");
            assert!(
                matches!(check_text(&text), Err(InvalidSelector::Format(_))),
                "{format:?}"
            );
            assert!(Selector::parse(&text).is_err());
            assert!(Selector::exact(&text).is_err());
        }
        // Letters of every script, marks and symbols stay accepted.
        for text in [
            "https://example.com/livres/été",
            "urn:書籍:1",
            "a\u{301}",
            "☃",
        ] {
            assert!(check_text(text).is_ok(), "{text:?}");
        }
    }
}
