//! Configuration that refuses what it does not know, and says so without
//! printing a value.
//!
//! Every configuration struct is `#[serde(deny_unknown_fields)]`, so serde
//! itself knows which keys exist at each level (and lists them in its
//! `UnknownField` error): nothing here keeps a second list that could drift.
//! `VERIFYD_*` variables are read here (not by figment's `Env`) so that each is
//! checked on its own against the same structs, every misspelt one is reported
//! at once with its exact name, and none is dropped silently (figment's `Env`
//! skips names with an empty level, like `VERIFYD_DATABASE____URL`).
//!
//! Errors never show a configuration value: values may be secrets, and
//! figment's own messages embed them (`invalid type: found string "…"`).

use std::ffi::OsString;
use std::path::Path;

use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

/// How every `VERIFYD_` variable starts (matched regardless of case, as
/// figment does).
pub const PREFIX: &str = "VERIFYD_";

/// `VERIFYD_` variables that are not configuration keys, so never refused:
/// verifyd's command line reads `VERIFYD_CONFIG` (`--config`) and
/// `VERIFYD_LOG_JSON` (`--log-json`); the tooling around it, which may share
/// its environment, reads `VERIFYD_BIN` and `VERIFYD_KEY` (`scripts/contract.sh`)
/// and `VERIFYD_SCREENSHOTS` (the console tests).
pub const NOT_CONFIGURATION: &[&str] =
    &["VERIFYD_CONFIG", "VERIFYD_LOG_JSON", "VERIFYD_BIN", "VERIFYD_KEY", "VERIFYD_SCREENSHOTS"];

/// One `VERIFYD_<SECTION>__<KEY>` variable read as the key `section.key`.
#[derive(Clone)]
pub struct EnvVar {
    pub name: String,
    pub key: Vec<String>,
    value: String,
}

impl std::fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvVar").field("name", &self.name).field("key", &self.key).finish_non_exhaustive()
    }
}

/// The variable that sets `key` (`["database", "url"]` → `VERIFYD_DATABASE__URL`).
pub fn variable(key: &[String]) -> String {
    format!("{PREFIX}{}", key.iter().map(|k| k.to_ascii_uppercase()).collect::<Vec<_>>().join("__"))
}

/// The configuration's `VERIFYD_*` variables (those of `NOT_CONFIGURATION`
/// left out), or every name that cannot be a key.
pub fn env_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Result<Vec<EnvVar>, Vec<String>> {
    let mut read = Vec::new();
    let mut refused = Vec::new();
    for (name, value) in vars {
        let name = name.to_string_lossy().trim().to_owned();
        let Some(rest) =
            name.get(..PREFIX.len()).filter(|p| p.eq_ignore_ascii_case(PREFIX)).map(|_| &name[PREFIX.len()..])
        else {
            continue;
        };
        if NOT_CONFIGURATION.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            continue;
        }
        let key: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if key.iter().any(|k| k.is_empty() || k.contains('.')) {
            refused.push(format!(
                "environment variable {name} is not a configuration key: levels are separated by exactly two \
                 underscores (VERIFYD_<SECTION>__<KEY>, e.g. VERIFYD_DATABASE__URL)"
            ));
            continue;
        }
        read.push(EnvVar { name, key, value: value.to_string_lossy().into_owned() });
    }
    if refused.is_empty() { Ok(read) } else { Err(refused) }
}

/// The variables as a figment provider: values parsed as figment's `Env` parses them.
pub struct EnvSource<'a>(pub &'a [EnvVar]);

impl Provider for EnvSource<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("`VERIFYD_` environment variable(s)")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut dict = Dict::new();
        for var in self.0 {
            insert(&mut dict, &var.key, var.value.parse::<Value>().unwrap_or_else(|never| match never {}));
        }
        Ok(Profile::Default.collect(dict))
    }
}

fn insert(dict: &mut Dict, key: &[String], value: Value) {
    match key {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [first, rest @ ..] => {
            let entry = dict.entry(first.clone()).or_insert_with(|| Value::from(Dict::new()));
            if !matches!(entry, Value::Dict(..)) {
                *entry = Value::from(Dict::new());
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// Where a setting came from, for messages.
enum Source<'a> {
    File(&'a Path),
    Env(&'a str),
    Unknown,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "in {}", path.display()),
            Source::Env(name) => write!(f, "from environment variable {name}"),
            Source::Unknown => f.write_str("in the configuration"),
        }
    }
}

/// Levenshtein distance, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known key closest to `word`, when it is close enough to be a typo
/// (a few letters off, or a known key cut short or run on: `open_for` for
/// `open_for_ms`).
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    let truncated = |k: &str| word.len() >= 4 && k.len() >= 4 && (k.starts_with(word) || word.starts_with(k));
    known
        .into_iter()
        .map(|k| (distance(word, k), k))
        .filter(|(d, k)| *d <= limit || truncated(k))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn dotted(key: &[String]) -> String {
    key.join(".")
}

/// The unknown key serde met while extracting `T` from `figment`: its path
/// (the unknown name last) and the names known at its level.
fn unknown_key<T: serde::de::DeserializeOwned>(figment: &Figment) -> Option<(Vec<String>, &'static [&'static str])> {
    let error = figment.extract::<T>().err()?;
    error.into_iter().find_map(|e| match e.kind {
        Kind::UnknownField(_, known) if !e.path.is_empty() => Some((e.path, known)),
        _ => None,
    })
}

/// Checks each variable alone against `T`: every one naming a key `T` does not
/// have is reported, with the known key it is closest to.
pub fn refuse_unknown_variables<T: serde::de::DeserializeOwned>(vars: &[EnvVar]) -> Result<(), Vec<String>> {
    let mut refused = Vec::new();
    for var in vars {
        let alone = Figment::from(EnvSource(std::slice::from_ref(var)));
        let Some((path, known)) = unknown_key::<T>(&alone) else { continue };
        let level = path.len() - 1;
        let mut candidates: Vec<&str> = known.to_vec();
        if level == 0 {
            // VERIFYD_CONFG is closest to VERIFYD_CONFIG, not to a section.
            candidates.extend(["config", "log_json"]);
        }
        // The unknown key may lie inside the value (`VERIFYD_DATABASE={urll = "…"}`).
        let full = if path.len() > var.key.len() { path.clone() } else { var.key.clone() };
        let mut message =
            format!("unknown configuration key `{}` from environment variable {}", dotted(&full), var.name);
        match closest(&path[level], candidates) {
            Some(near) => {
                let mut key = full;
                key[level] = near.to_owned();
                if level == 0 && (near == "config" || near == "log_json") {
                    message.push_str(&format!(": did you mean {}?", variable(&key)));
                } else {
                    message.push_str(&format!(": did you mean `{}` ({})?", dotted(&key), variable(&key)));
                }
            }
            None => message.push_str(&format!(
                ": `{}` is not a key {} (known: {})",
                path[level],
                if level == 0 { "of the configuration".to_owned() } else { format!("of `{}`", dotted(&path[..level])) },
                known.join(", ")
            )),
        }
        refused.push(message);
    }
    if refused.is_empty() { Ok(()) } else { Err(refused) }
}

/// What serde says of a value's kind, without the value.
fn kind_of(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a float",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an option",
        Actual::NewtypeStruct => "a newtype",
        Actual::Seq => "an array",
        Actual::Map => "a table",
        Actual::Enum | Actual::UnitVariant | Actual::NewtypeVariant | Actual::TupleVariant | Actual::StructVariant => {
            "an enum variant"
        }
        Actual::Other(_) => "another kind of value",
    }
}

/// Every string and number under `value`, to blank out of free-text messages.
fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(_, s) => out.push(s.clone()),
        Value::Char(_, c) => out.push(c.to_string()),
        Value::Num(_, n) => out.extend(
            n.to_u128()
                .map(|u| u.to_string())
                .or_else(|| n.to_i128().map(|i| i.to_string()))
                .or_else(|| n.to_f64().map(|f| f.to_string())),
        ),
        Value::Dict(_, d) => d.values().for_each(|v| leaves(v, out)),
        Value::Array(_, a) => a.iter().for_each(|v| leaves(v, out)),
        Value::Bool(..) | Value::Empty(..) => {}
    }
}

/// `message` with every value at `path` (or, when the path is not a table
/// key, at its nearest parent) replaced by `…`.
fn redact(message: &str, figment: &Figment, path: &[String]) -> String {
    let mut values = Vec::new();
    for end in (1..=path.len()).rev() {
        if let Ok(value) = figment.find_value(&dotted(&path[..end])) {
            leaves(&value, &mut values);
            break;
        }
    }
    values.retain(|v| v.chars().count() >= 2);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = message.to_owned();
    for value in values {
        out = out.replace(&value, "…");
    }
    out
}

/// A TOML parse error without the quoted source lines (`3 | url = "…`),
/// which would show the values around the mistake.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            !(line.starts_with('|') || line.split_once('|').is_some_and(|(n, _)| n.trim().parse::<u64>().is_ok()))
        })
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A figment extraction error as lines an operator acts on: the key, where it
/// came from (the file or the variable), what is wrong, and never the value.
pub fn explain(error: figment::Error, figment: &Figment, file: Option<&Path>, vars: &[EnvVar]) -> String {
    let mut lines = Vec::new();
    for e in error {
        let path = &e.path;
        // A variable sets its key and everything in the value it gives.
        let from_env = |key: &[String]| vars.iter().rev().find(|v| key.starts_with(&v.key));
        let source = match (from_env(path), file) {
            (Some(var), _) if !path.is_empty() => Source::Env(&var.name),
            (_, Some(file)) => Source::File(file),
            _ => Source::Unknown,
        };
        let key = dotted(path);
        let line = match &e.kind {
            Kind::UnknownField(field, known) => {
                let mut line = format!("unknown configuration key `{key}` {source}");
                match closest(field, known.iter().copied()) {
                    Some(near) => {
                        let mut right = path.clone();
                        if let Some(last) = right.last_mut() {
                            *last = near.to_owned();
                        }
                        line.push_str(&format!(": did you mean `{}`?", dotted(&right)));
                    }
                    None if path.len() > 1 => line.push_str(&format!(
                        ": `{field}` is not a key of `{}` (known: {})",
                        dotted(&path[..path.len() - 1]),
                        known.join(", ")
                    )),
                    None => line.push_str(&format!(": known sections: {}", known.join(", "))),
                }
                line
            }
            Kind::MissingField(field) => {
                let mut missing = path.clone();
                missing.push(field.to_string());
                let var = variable(&missing);
                format!(
                    "`{}` is missing: set it in the configuration file or by environment variable ({var}, or \
                     {var}__<KEY> for each key of a table)",
                    dotted(&missing)
                )
            }
            Kind::InvalidType(actual, expected) => {
                format!("`{key}` {source}: expected {expected}, found {} (value not shown)", kind_of(actual))
            }
            Kind::InvalidValue(actual, expected) => {
                format!("`{key}` {source}: {} that is not {expected} (value not shown)", kind_of(actual))
            }
            Kind::InvalidLength(len, expected) => format!("`{key}` {source}: {len} elements, expected {expected}"),
            Kind::UnknownVariant(_, known) => {
                format!("`{key}` {source}: not one of {} (value not shown)", known.join(", "))
            }
            Kind::DuplicateField(field) => format!("`{key}` {source}: `{field}` is given twice"),
            Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => {
                format!("`{key}` {source}: the number is out of range (value not shown)")
            }
            Kind::Unsupported(actual) => format!("`{key}` {source}: {} is not supported here", kind_of(actual)),
            Kind::UnsupportedKey(actual, _) => {
                format!("`{key}` {source}: a key that is {} is not supported", kind_of(actual))
            }
            Kind::Message(message) if path.is_empty() => {
                // Reading or parsing the file: figment names it in the metadata.
                let origin = file
                    .map(|f| f.display().to_string())
                    .or_else(|| e.metadata.as_ref().and_then(|m| m.source.as_ref().map(ToString::to_string)))
                    .unwrap_or_else(|| "the configuration".to_owned());
                format!("{origin}: {}", without_source_lines(message))
            }
            Kind::Message(message) => format!("`{key}` {source}: {}", redact(message, figment, path)),
        };
        lines.push(line);
    }
    lines.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter().map(|(k, v)| (OsString::from(k), OsString::from(v))).collect()
    }

    #[test]
    fn typos_are_close_and_strangers_are_not() {
        assert_eq!(distance("databse", "database"), 1);
        assert_eq!(distance("", "url"), 3);
        assert_eq!(closest("urll", ["url", "max_connections"]), Some("url"));
        assert_eq!(closest("retry_delay_ms", ["retry_delays_ms", "prefix"]), Some("retry_delays_ms"));
        assert_eq!(closest("colour", ["url", "prefix"]), None);
        assert_eq!(closest("open_for", ["failures_to_open", "open_for_ms"]), Some("open_for_ms"));
        assert_eq!(closest("url", ["url_path"]), None, "too short to guess from");
    }

    #[test]
    fn variables_that_are_not_configuration_are_left_alone_and_malformed_names_refused() {
        let read = env_vars(vars(&[
            ("VERIFYD_CONFIG", "/etc/verifyd.toml"),
            ("verifyd_log_json", "true"),
            ("VERIFYD_DATABASE__URL", "postgres://db/v"),
            ("PATH", "/bin"),
        ]))
        .expect("read");
        assert_eq!(read.len(), 1);
        assert_eq!(
            (read[0].name.as_str(), read[0].key.clone()),
            ("VERIFYD_DATABASE__URL", vec!["database".into(), "url".into()])
        );
        let refused = env_vars(vars(&[("VERIFYD_DATABASE____URL", "x"), ("VERIFYD_", "y")])).unwrap_err();
        assert_eq!(refused.len(), 2);
        assert!(refused[0].contains("VERIFYD_DATABASE____URL is not a configuration key"), "{refused:?}");
    }

    #[test]
    fn messages_never_carry_the_source_lines_of_a_toml_error() {
        let message = "TOML parse error at line 2, column 18\n  |\n2 | url = \"postgres://u:hunter22@db\" x\n  |                  ^\nexpected newline, `#`\n";
        let shown = without_source_lines(message);
        assert_eq!(shown, "TOML parse error at line 2, column 18: expected newline, `#`");
    }
}
