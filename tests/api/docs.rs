//! The README documents every config key and every metric family the binary
//! has, so a key or a metric added without its row fails here. (Routes:
//! `spec.rs`.)

use std::collections::BTreeSet;

use serde_json::Value;
use ssehub::auth::AuthMetrics;
use ssehub::config::Config;
use ssehub::hub::metrics::register;
use ssehub::metrics::render;

const README: &str = include_str!("../../README.md");

/// The first cell of every README table row that starts with a backquoted
/// name: `` | `history.size` | … `` gives `history.size`.
fn readme_table_names() -> BTreeSet<&'static str> {
    README
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect()
}

/// A rate limit (`{burst, per_second}`) is one key in the README's table.
fn is_rate_limit(object: &serde_json::Map<String, Value>) -> bool {
    object.len() == 2 && object.contains_key("burst") && object.contains_key("per_second")
}

/// Every key of `Config`, dotted (`auth.jwt.issuer`), from its defaults
/// serialized: a key added to the struct is a key here.
fn config_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &Value, keys: &mut Vec<String>) {
        match value {
            Value::Object(object) if !is_rate_limit(object) => {
                for (name, child) in object {
                    let key = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&key, child, keys);
                }
            }
            _ => keys.push(prefix.to_owned()),
        }
    }
    let mut keys = Vec::new();
    walk(
        "",
        &serde_json::to_value(Config::default()).unwrap(),
        &mut keys,
    );
    keys
}

#[test]
fn config_keys_are_read_from_the_defaults() {
    let keys = config_keys();
    assert!(keys.contains(&"history.size".to_owned()), "{keys:?}");
    assert!(keys.contains(&"auth.jwt.issuer".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"rate_limits.subscribe_per_address".to_owned()),
        "{keys:?}"
    );
}

#[test]
fn every_config_key_has_a_row_in_the_readme() {
    let documented = readme_table_names();
    let missing: Vec<_> = config_keys()
        .into_iter()
        .filter(|key| !documented.contains(key.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys without a README table row: {missing:?}"
    );
}

/// Every metric family `/metrics` exposes, by its `# TYPE` line.
fn metric_families() -> Vec<String> {
    let (instruments, _auth) = register(AuthMetrics::register);
    render(&instruments.registry, false)
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_family_has_a_row_in_the_readme() {
    let families = metric_families();
    assert!(
        families.contains(&"ssehub_deliveries_total".to_owned()),
        "{families:?}"
    );
    let documented = readme_table_names();
    let missing: Vec<_> = families
        .into_iter()
        .filter(|family| !documented.contains(family.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metric families without a README table row: {missing:?}"
    );
}
