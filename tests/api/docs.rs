//! The book documents every config key (its configuration reference) and
//! every metric family (its metrics page) the binary has, so a key or a metric
//! added without its row fails here. (Routes: `spec.rs`.)

use std::collections::BTreeSet;

use serde_json::Value;
use ssehub::auth::AuthMetrics;
use ssehub::config::Config;
use ssehub::hub::metrics::register;
use ssehub::metrics::render;

/// The configuration reference: one table row per key.
const CONFIGURATION_PAGE: &str = include_str!("../../docs/src/configuration.md");
/// The metrics page: one table row per metric family.
const METRICS_PAGE: &str = include_str!("../../docs/src/operations/metrics.md");

/// The first cell of every table row of `page` that starts with a backquoted
/// name: `` | `history.size` | … `` gives `history.size`.
fn table_names(page: &'static str) -> BTreeSet<&'static str> {
    page.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name))
        .collect()
}

/// A rate limit (`{burst, per_second}`) is one key, one row of the
/// configuration table.
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
fn every_config_key_has_a_row_in_the_configuration_reference() {
    let documented = table_names(CONFIGURATION_PAGE);
    // A rate limit's row names its first field:
    // `` | `rate_limits.publish_per_address.per_second`, `.burst` | … ``.
    let has_row = |key: &str| {
        documented.contains(key) || documented.contains(format!("{key}.per_second").as_str())
    };
    let missing: Vec<_> = config_keys()
        .into_iter()
        .filter(|key| !has_row(key))
        .collect();
    assert!(
        missing.is_empty(),
        "config keys without a row in docs/src/configuration.md: {missing:?}"
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
fn every_metric_family_has_a_row_on_the_metrics_page() {
    let families = metric_families();
    assert!(
        families.contains(&"ssehub_deliveries_total".to_owned()),
        "{families:?}"
    );
    let documented = table_names(METRICS_PAGE);
    let missing: Vec<_> = families
        .into_iter()
        .filter(|family| !documented.contains(family.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "metric families without a row in docs/src/operations/metrics.md: {missing:?}"
    );
}

/// The Development page's layout block: the first fenced block after its
/// "Layout"-style introduction, which names src/'s directories one paragraph
/// each (`src/hub/   the domain core … (mod.rs) …`).
const DEVELOPMENT_PAGE: &str = include_str!("../../docs/src/development.md");

/// Each `src/…` entry of the layout block with the text that describes it
/// (its first line and the indented lines under it).
fn layout_entries() -> Vec<(String, String)> {
    let block = DEVELOPMENT_PAGE
        .split("```\n")
        .nth(1)
        .expect("the Development page opens with the layout block");
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(rest) = line.strip_prefix("src/") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            entries.push((format!("src/{name}"), text.to_owned()));
        } else if line.starts_with(' ') {
            if let Some((_, text)) = entries.last_mut() {
                text.push(' ');
                text.push_str(line.trim());
            }
        } else {
            entries.push((
                line.split(' ').next().unwrap_or("").to_owned(),
                String::new(),
            ));
        }
    }
    entries
}

/// Every source file of src/ is named on the Development page: a top-level
/// file by its own entry, a file in a directory by name (or, for a
/// subdirectory's own files, the subdirectory) in that directory's entry. A
/// module added, moved or renamed without the page fails here.
#[test]
fn the_layout_on_the_development_page_names_every_source_file() {
    let entries = layout_entries();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for top in std::fs::read_dir(&root).unwrap() {
        let top = top.unwrap().path();
        let top_name = top.file_name().unwrap().to_string_lossy().into_owned();
        if top.is_file() {
            if top_name.ends_with(".rs")
                && !entries
                    .iter()
                    .any(|(name, _)| *name == format!("src/{top_name}"))
            {
                missing.push(format!("src/{top_name}"));
            }
            continue;
        }
        // A directory beside its module file (`app.rs` and `app/`) may be
        // described in the module file's entry.
        let entry = |name: String| entries.iter().find(move |(entry, _)| *entry == name);
        let Some((_, text)) =
            entry(format!("src/{top_name}/")).or_else(|| entry(format!("src/{top_name}.rs")))
        else {
            missing.push(format!("src/{top_name}/"));
            continue;
        };
        let mut stack = vec![top.clone()];
        while let Some(dir) = stack.pop() {
            for file in std::fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
                if !file_name.ends_with(".rs") {
                    continue;
                }
                let relative = path.strip_prefix(&top).unwrap();
                // A subdirectory's files: its name with a slash (`memory/`,
                // `delivery/replay.rs`) or the file's own name.
                let named = text.contains(&file_name)
                    || relative
                        .parent()
                        .and_then(|parent| parent.to_str())
                        .is_some_and(|parent| {
                            !parent.is_empty() && text.contains(&format!("{parent}/"))
                        });
                if !named {
                    missing.push(format!("src/{top_name}/{}", relative.display()));
                }
            }
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "source files the Development page's layout doesn't name: {missing:?}"
    );
}
