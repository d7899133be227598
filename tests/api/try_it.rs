//! The ways to try verifyd stay what they say: compose.dev.yaml starts in
//! development mode with no provider account, compose.yaml stays as strict as
//! production needs, and docs/testing.md shows the example test as it is.
//! The compose files are read as compose reads them (anchors, merge keys,
//! `${VAR:-default}` / `${VAR:?error}`) and their verifyd environment is
//! loaded by verifyd's own configuration loader.

use std::collections::HashMap;
use std::ffi::OsString;

use serde_yaml_ng::Value;
use verifyd::config::{Config, Mode};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn compose(file: &str) -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/{file}")).expect("compose file");
    let mut doc: Value = serde_yaml_ng::from_str(&text).expect("compose file is YAML");
    doc.apply_merge().expect("merge keys resolve");
    doc
}

/// `${NAME}`, `${NAME:-default}` and `${NAME:?error}` as compose reads them.
fn interpolate(text: &str, shell: &HashMap<&str, &str>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or("unclosed ${")? + start;
        let inner = &rest[start + 2..end];
        let (name, value) = if let Some((name, default)) = inner.split_once(":-") {
            (name, shell.get(name).map_or(default.to_owned(), |v| (*v).to_owned()))
        } else if let Some((name, error)) = inner.split_once(":?") {
            (name, shell.get(name).ok_or_else(|| format!("{name}: {error}"))?.to_string())
        } else {
            (inner, shell.get(inner).map_or(String::new(), |v| (*v).to_owned()))
        };
        assert!(!name.is_empty());
        out.push_str(&value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The `VERIFYD_*` environment of `service`, interpolated with `shell`.
fn environment(doc: &Value, service: &str, shell: &HashMap<&str, &str>) -> Result<Vec<(OsString, OsString)>, String> {
    let env = doc["services"][service]["environment"].as_mapping().expect("an environment mapping");
    env.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::String(s) => s.clone(),
                other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
            };
            Ok((OsString::from(k.as_str().unwrap()), OsString::from(interpolate(&value, shell)?)))
        })
        .collect()
}

fn set(vars: &mut Vec<(OsString, OsString)>, name: &str, value: &str) {
    vars.retain(|(k, _)| k != name);
    vars.push((name.into(), value.into()));
}

#[test]
fn compose_dev_starts_in_development_with_no_provider_account() {
    let doc = compose("compose.dev.yaml");
    let nothing = HashMap::new();
    let inbox_here = std::env::temp_dir().join(format!("compose-dev-{}.jsonl", uuid::Uuid::new_v4().simple()));
    for service in ["serve", "worker", "migrate"] {
        let mut vars = environment(&doc, service, &nothing).unwrap();
        let path = vars.iter().find(|(k, _)| k == "VERIFYD_PROVIDERS__INBOX__PATH").map(|(_, v)| v.clone());
        assert_eq!(path.as_deref(), Some(std::ffi::OsStr::new("/var/lib/verifyd/inbox.jsonl")), "{service}");
        // Loading builds the providers, which creates the inbox file: here, not in /var/lib.
        set(&mut vars, "VERIFYD_PROVIDERS__INBOX__PATH", inbox_here.to_str().unwrap());
        let config = Config::load_from(None, vars).expect("verifyd loads it");
        assert_eq!(config.mode, Mode::Development, "{service}");
        assert_eq!(
            (config.providers.sms, config.providers.voice),
            (vec!["inbox".to_owned()], vec!["inbox".to_owned()])
        );
    }
    let _ = std::fs::remove_file(&inbox_here);
    // TRY_PROVIDER=twilio sends through verifyd's Twilio client to the mock-twilio service.
    let twilio = HashMap::from([("TRY_PROVIDER", "twilio")]);
    let mut vars = environment(&doc, "serve", &twilio).unwrap();
    set(&mut vars, "VERIFYD_PROVIDERS__INBOX__PATH", inbox_here.to_str().unwrap());
    let config = Config::load_from(None, vars).unwrap();
    assert_eq!(config.providers.sms, ["twilio"]);
    assert_eq!(config.providers.twilio.as_ref().unwrap().base_url, "http://mock-twilio:4010");
    let mock = doc["services"]["mock-twilio"]["command"].as_sequence().unwrap();
    let mock: Vec<&str> = mock.iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(mock[..2], ["mock-provider", "twilio"]);
    assert!(doc["services"]["mock-twilio"]["environment"].as_mapping().unwrap().is_empty(), "no VERIFYD_MODE there");
    // Everything it publishes is on loopback only.
    for (name, service) in doc["services"].as_mapping().unwrap() {
        for port in service["ports"].as_sequence().into_iter().flatten() {
            assert!(port.as_str().unwrap().starts_with("127.0.0.1:"), "{name:?} publishes {port:?}");
        }
    }

    // The same environment in production mode is refused: its secrets are public.
    let mut vars = environment(&doc, "serve", &nothing).unwrap();
    set(&mut vars, "VERIFYD_MODE", "production");
    let refused = Config::load_from(None, vars).expect_err("production refuses the dev secrets");
    assert!(refused.to_string().contains("development secrets"), "{refused}");
}

#[test]
fn compose_yaml_stays_as_strict_as_production_needs() {
    let doc = compose("compose.yaml");
    let text = std::fs::read_to_string(format!("{ROOT}/compose.yaml")).unwrap();
    // Every variable is required: none has a default to fall back on.
    assert!(!text.contains(":-"), "compose.yaml gives a variable a default");
    let missing = environment(&doc, "serve", &HashMap::new()).expect_err("it needs its variables");
    assert!(missing.contains("POSTGRES_PASSWORD") || missing.contains("RABBITMQ_PASSWORD"), "{missing}");

    let key_a = "\"3q2+7wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"";
    let key_b = "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAvu8=\"";
    let shell = HashMap::from([
        ("POSTGRES_PASSWORD", "pw"),
        ("RABBITMQ_PASSWORD", "pw"),
        ("VERIFYD_SECRETS__CODE_HMAC_KEY", key_a),
        ("VERIFYD_SECRETS__ENCRYPTION_KEY", key_b),
        ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
        ("TWILIO_AUTH_TOKEN", "token"),
        ("TWILIO_FROM", "+15005550006"),
    ]);
    for service in ["serve", "worker", "migrate"] {
        let config = Config::load_from(None, environment(&doc, service, &shell).unwrap()).expect("verifyd loads it");
        assert_eq!(config.mode, Mode::Production, "{service}");
        assert_eq!(config.providers.sms, ["twilio"]);
        assert!(config.providers.inbox.is_none());
    }
    // Production refuses the inbox provider and the dev secrets, whoever adds them.
    let mut inbox = environment(&doc, "serve", &shell).unwrap();
    set(&mut inbox, "VERIFYD_PROVIDERS__SMS", "[\"inbox\"]");
    set(&mut inbox, "VERIFYD_PROVIDERS__INBOX__PATH", "/tmp/never.jsonl");
    let refused = Config::load_from(None, inbox).expect_err("production mode refuses the inbox provider");
    assert!(refused.to_string().contains("inbox"), "{refused}");
    let dev = compose("compose.dev.yaml");
    let dev_key = environment(&dev, "serve", &HashMap::new()).unwrap();
    let dev_key = dev_key.iter().find(|(k, _)| k == "VERIFYD_SECRETS__CODE_HMAC_KEY").unwrap().1.clone();
    let mut public = environment(&doc, "serve", &shell).unwrap();
    set(&mut public, "VERIFYD_SECRETS__CODE_HMAC_KEY", dev_key.to_str().unwrap());
    assert!(Config::load_from(None, public).is_err(), "production refuses the public development keys");
}

#[test]
fn docs_testing_md_shows_the_example_test_as_it_is() {
    let doc = std::fs::read_to_string(format!("{ROOT}/docs/testing.md")).expect("docs/testing.md");
    let example = include_str!("testkit_example.rs");
    let block = format!("```rust\n{example}```\n");
    assert!(
        doc.contains(&block),
        "docs/testing.md must show tests/api/testkit_example.rs verbatim in a ```rust block: copy the file into it"
    );
}
