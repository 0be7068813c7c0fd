//! figment's errors in words a user can act on: each names the key in its
//! config-file spelling (`history.ttl`), the value found, the form expected
//! **with an example** in both spellings a user writes (the TOML file, the
//! `SSEHUB_*` environment), and where the value came from. serde's own
//! words ("expected a sequence", "expected usize") name types, not forms.

use figment::error::{Actual, Kind};

/// One line per problem, joined with `; `.
pub fn describe_figment_error(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|error| {
            let key = error.path.join(".").to_lowercase();
            let origin = error
                .metadata
                .as_ref()
                .map(|metadata| match &metadata.source {
                    Some(source) => format!(" (from {} {source})", metadata.name),
                    None => format!(" (from {})", metadata.name),
                })
                .unwrap_or_default();
            if key.is_empty() {
                format!("{}{origin}", error.kind)
            } else if matches!(error.kind, Kind::UnknownField(..)) {
                format!(
                    "unknown key `{key}`: {}{origin}",
                    describe_kind(&key, &error.kind)
                )
            } else {
                format!(
                    "invalid value for `{key}`: {}{origin}",
                    describe_kind(&key, &error.kind)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// What is wrong with `key`'s value, and what a right one looks like.
fn describe_kind(key: &str, kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(found, expected) | Kind::InvalidValue(found, expected) => {
            format!(
                "found {}, expected {}",
                found_text(found),
                expected_form(key, expected)
            )
        }
        Kind::UnknownVariant(found, expected) => format!(
            "found {found:?}, expected one of {} (e.g. {key} = {:?})",
            quoted_list(expected),
            expected.first().copied().unwrap_or_default()
        ),
        Kind::UnknownField(found, expected) => {
            let section = key.rsplit_once('.').map_or("", |(section, _)| section);
            let place = if section.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in [{section}]")
            };
            format!(
                "no such key {found:?} {place}; the keys there are {} \
                 (`ssehub --print-config` shows every key with its value)",
                quoted_list(expected)
            )
        }
        other => other.to_string(),
    }
}

fn found_text(found: &Actual) -> String {
    match found {
        Actual::Str(text) => format!("{text:?}"),
        Actual::Unsigned(value) => value.to_string(),
        Actual::Signed(value) => value.to_string(),
        Actual::Float(value) => value.to_string(),
        Actual::Bool(value) => value.to_string(),
        other => other.to_string(),
    }
}

fn quoted_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("{name:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The environment variable of `key` (`history.ttl` → `SSEHUB_HISTORY__TTL`).
fn env_name(key: &str) -> String {
    format!("SSEHUB_{}", key.to_uppercase().replace('.', "__"))
}

/// serde's `expected` (a type's own words) as a form with an example.
fn expected_form(key: &str, expected: &str) -> String {
    let field = key.rsplit('.').next().unwrap_or(key);
    let env = env_name(key);
    match expected {
        "a duration" => format!(
            "a duration like \"30s\", \"1m\" or \"500ms\" \
             (in a TOML file: {field} = \"30s\"; in the environment: {env}=30s)"
        ),
        "a sequence" => format!(
            "a list like [\"a\", \"b\"] (in a TOML file: {field} = [\"a\", \"b\"]; \
             in the environment: {env}='[\"a\",\"b\"]')"
        ),
        "a boolean" => format!("true or false (e.g. {env}=true)"),
        "a string" => format!("a string in quotes (in a TOML file: {field} = \"text\")"),
        "usize" | "u64" | "u32" | "u16" | "u8" => {
            format!("a whole number of 0 or more, like 100 (e.g. {env}=100)")
        }
        "isize" | "i64" | "i32" | "i16" | "i8" => {
            format!("a whole number, like 100 (e.g. {env}=100)")
        }
        "f64" | "f32" => format!("a number, like 2.5 (e.g. {env}=2.5)"),
        struct_name if struct_name.starts_with("struct ") => format!(
            "a table of settings, not a single value (in a TOML file: [{key}] and its keys \
             below it; in the environment one variable per key, like {env}__<KEY>=...)"
        ),
        other => other.to_owned(),
    }
}
