//! What every operation answers besides what its handler declares: the
//! answers of the layers in front of the handlers, written into the document
//! once, by rule, instead of on 45 annotations (where they went missing).
//!
//! * **Every request**: `414` (URL too long) and `431` (headers too large)
//!   from `limits::enforce`, `500` and `503` (a store or broker down; an
//!   HTTP role without the verification actor).
//! * **An operation with a key** (`security`): `401` (no, unknown, revoked
//!   or expired key, settled before the body is read: `credentials`) and
//!   `403` (`forbidden_scope`, `forbidden_source`, or a refusal of its own).
//! * **An operation with a body**: `400` (not a JSON object of the body's
//!   shape: `json::parse`), `413` and `415`. A body declared `Option<T>` may
//!   be left out: its schema is `T`, and it is not `required`.
//! * **An operation with parameters or a body**: `422` (a value the
//!   domain refuses, with `field`); with path parameters: `404`.
//! * Every problem is `application/problem+json`, and every response has a
//!   description (its status's reason phrase, where the handler gave none).

use actix_web::http::StatusCode;
use serde_json::{Map, Value, json};

const PROBLEM_REF: &str = "#/components/schemas/Problem";
const PROBLEM_TYPE: &str = "application/problem+json";
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];
/// What Rust's `char::is_control` or `char::is_whitespace` holds, as a
/// regular-expression class body.
const BLANK: &str = "\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// The document, with the rules above applied to every operation.
pub fn conform(doc: &mut Value) {
    if let Some(schemas) = doc.pointer_mut("/components/schemas").and_then(Value::as_object_mut) {
        for (name, schema) in schemas.iter_mut() {
            named_properties(name, schema);
            no_nul(schema);
        }
    }
    if let Some(remove) = doc.pointer_mut("/components/schemas/RemoveBody") {
        *remove = remove_body(remove);
    }
    if let Some(reset) = doc.pointer_mut("/components/schemas/ResetBody") {
        *reset = reset_body(reset);
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                operation(op);
            }
        }
    }
}

/// Parameters that name a domain value (in a path, the idempotency header), and its rule.
fn parameter_rule(parameter: &mut Value) {
    if parameter["in"] == "header" && parameter["name"] == "Idempotency-Key" {
        // Visible ASCII (what a header carries as text), 1 to 255 characters.
        parameter["schema"] = json!({ "type": "string", "pattern": "^[!-~]([ -~]{0,253}[!-~])?$" });
        return;
    }
    if parameter["in"] != "path" {
        return;
    }
    let rule = match parameter["name"].as_str() {
        // `AccountId` and organisation ids: 1 to 128 characters, none a control.
        Some("account_id" | "organisation_id") => account_id(),
        // A destination prefix: `+` and 1 to 15 digits.
        Some("prefix") => json!({ "type": "string", "pattern": "^\\+[0-9]{1,15}$" }),
        // A template's channel and locale (`Channel`, `Locale::parse`).
        Some("channel") => json!({ "type": "string", "enum": ["sms", "voice", "email", "whatsapp"] }),
        Some("locale") => json!({ "type": "string", "pattern": "^[A-Za-z]{2}(-[A-Za-z]{2})?$" }),
        _ => return,
    };
    parameter["schema"] = rule;
}

/// An `AccountId` (and an organisation id, and an `actor`, which names a
/// person as an account id does): 1 to 128 characters, none a control.
fn account_id() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 128, "pattern": ACCOUNT_ID_PATTERN })
}

/// The rule of a body member that holds a domain value, by the API's name
/// for it (and, for `code`, the body it is in): what the edge's parser takes.
fn rule(schema: &str, property: &str) -> Option<Value> {
    Some(match (schema, property) {
        (_, "account_id" | "organisation_id" | "actor") => account_id(),
        // `Locale::parse`: `en` or `pt-BR`, any case.
        (_, "locale") => json!({ "type": "string", "pattern": "^[A-Za-z]{2}(-[A-Za-z]{2})?$" }),
        // `PhoneNumber::parse`: E.164, then the numbering plan decides.
        ("VerificationRequest", "phone") => json!({ "type": "string", "pattern": "^\\+[1-9][0-9]{0,14}$" }),
        // `EmailAddress::parse`, as far as a pattern can say it: an ASCII
        // dot-atom, `@`, a domain of two labels or more (IDNA and the 64-octet
        // local part are checked by the parser: `422`, see schemathesis.toml).
        ("VerificationRequest", "email") => json!({ "type": "string", "minLength": 6, "maxLength": 254,
            "pattern": "^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\\.[a-z]{2,24}$" }),
        // `Code::parse`: 4 to 10 digits, spaces and dashes ignored.
        ("CodeBody", "code") => json!({ "type": "string", "pattern": "^[ -]*([0-9][ -]*){4,10}$" }),
        // `AllowedSources::parse`: an IPv4 or IPv6 network or address.
        ("NewKeyBody", "allowed_cidrs") => {
            json!({ "type": "array", "maxItems": 64, "items": { "type": "string", "pattern": ip_pattern(true) } })
        }
        // The end user's address: `IpAddr`.
        ("VerificationRequest", "end_user_ip") => json!({ "type": "string", "pattern": ip_pattern(false) }),
        ("VerificationRequest", "idempotency_key") => {
            json!({ "type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\u0000]*$" })
        }
        // Some character that is neither a control nor white space (`admin::reset`).
        ("ResetBody", "attestation") => json!({ "type": "string", "minLength": 1, "maxLength": 500,
            "pattern": format!("^[^\\u0000]*[^{BLANK}][^\\u0000]*$") }),
        ("EnrolBody", "label") => {
            json!({ "type": "string", "minLength": 1, "maxLength": 128, "pattern": ACCOUNT_ID_PATTERN })
        }
        // `DisplayName::parse`: 1 to 64 characters, none a control, not only white space.
        ("BrandingBody", "display_name") => json!({
            "type": "string", "minLength": 1, "maxLength": 64,
            "pattern": format!("^{PRINTABLE}*{VISIBLE}{PRINTABLE}*$"),
        }),
        // `Template::parse`, as far as a schema can say it: no control but a
        // new line, and `{code}` in it (the rest depends on the channel, the
        // locale and the display name: `422` is expected, see schemathesis.toml).
        ("TemplateBody", "text") => json!({
            "type": "string", "minLength": 6, "maxLength": 1000,
            "pattern": "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*\\{code\\}[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$",
        }),
        // `EndpointUrl::parse`, as far as a pattern can say it: http(s), a host,
        // no user name, password or fragment (whether the host may be a local
        // address depends on the mode: `422` is expected, see schemathesis.toml).
        ("NewWebhookBody" | "WebhookChangeBody", "url") => json!({
            "type": "string", "minLength": 8, "maxLength": 2048,
            "pattern": "^https?://[a-z]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,61}[a-z0-9])?)*(:[1-9][0-9]{0,3})?(/[!-\"$-~]*)?$",
        }),
        // `EventFilter::parse`: `*`, an event name or a family.
        ("NewWebhookBody" | "WebhookChangeBody", "event_types") => {
            json!({ "type": "array", "minItems": 1, "maxItems": 50, "items": { "type": "string", "enum": event_filter_entries() } })
        }
        // `Countries::parse`: the ISO 3166-1 alpha-2 codes the numbering plan knows.
        ("GeoBody", "sms" | "voice" | "whatsapp") => {
            json!({ "type": "array", "maxItems": 300, "items": country_code() })
        }
        _ => return None,
    })
}

/// Every entry an event filter takes: `*`, each event, each family.
fn event_filter_entries() -> Vec<String> {
    use verifyd_core::outbox::contract::EventKind;
    let mut entries = vec!["*".to_owned()];
    entries.extend(EventKind::ALL.iter().map(|k| k.as_str().to_owned()));
    for k in EventKind::ALL {
        let family = format!("{}.*", k.family());
        if !entries.contains(&family) {
            entries.push(family);
        }
    }
    entries
}

/// An address (or with `network`, also a network) as `std::net` and `ipnet`
/// read them: IPv4 without leading zeros, optionally `/0`–`/32`; IPv6 in hex
/// groups, compressed or not, optionally `/0`–`/128` (the forms with a
/// trailing IPv4 are read too, but not listed).
fn ip_pattern(network: bool) -> String {
    const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    const G: &str = "[0-9a-fA-F]{1,4}";
    let v4 = format!("({OCTET}\\.){{3}}{OCTET}");
    let v6 = [
        format!("({G}:){{7}}{G}"),
        format!("({G}:){{1,7}}:"),
        format!("({G}:){{1,6}}:{G}"),
        format!("({G}:){{1,5}}(:{G}){{1,2}}"),
        format!("({G}:){{1,4}}(:{G}){{1,3}}"),
        format!("({G}:){{1,3}}(:{G}){{1,4}}"),
        format!("({G}:){{1,2}}(:{G}){{1,5}}"),
        format!("{G}:(:{G}){{1,6}}"),
        format!(":((:{G}){{1,7}}|:)"),
    ]
    .join("|");
    let (p4, p6) = if network { ("(/(3[0-2]|[12]?[0-9]))?", "(/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))?") } else { ("", "") };
    format!("^({v4}{p4}|({v6}){p6})$")
}

fn country_code() -> Value {
    let codes: Vec<String> = (b'A'..=b'Z')
        .flat_map(|a| (b'A'..=b'Z').map(move |b| String::from_utf8_lossy(&[a, b]).into_owned()))
        .filter(|code| verifyd_core::abuse::geo::is_known_country(code))
        .collect();
    json!({ "type": "string", "enum": codes })
}

/// Body members that hold a domain value get its rule; what the annotation
/// said of it (a description, an example, nullability) stays.
fn named_properties(name: &str, schema: &mut Value) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (member, property) in properties.iter_mut() {
        let Some(rule) = rule(name, member) else { continue };
        if property.get("pattern").is_some() || property.get("enum").is_some() {
            continue;
        }
        let nullable = property["type"].as_array().is_some_and(|t| t.contains(&json!("null")));
        let kept: Vec<(String, Value)> = ["description", "example"]
            .into_iter()
            .filter_map(|k| property.get(k).map(|v| (k.to_owned(), v.clone())))
            .collect();
        *property = rule;
        if nullable {
            let kind = property["type"].clone();
            property["type"] = json!([kind, "null"]);
        }
        for (k, v) in kept {
            property[k] = v;
        }
    }
}

/// Deleting a factor takes a proof, or a challenge and its code, or (for a
/// factor still pending) neither: three shapes, which the handler tells
/// apart; a member that does not belong to the shape is absent or `null`.
fn remove_body(derived: &Value) -> Value {
    let member = |name: &str| derived.pointer(&format!("/properties/{name}")).cloned().unwrap_or(json!({}));
    let absent = json!({ "type": "null" });
    let shape = |title: &str, required: &[&str], present: &[&str]| {
        let mut properties = Map::new();
        for name in ["step_up", "challenge_id", "code"] {
            let schema = if present.contains(&name) { non_null(member(name)) } else { absent.clone() };
            properties.insert(name.to_owned(), schema);
        }
        properties.insert("actor".to_owned(), member("actor"));
        json!({ "title": title, "type": "object", "additionalProperties": false,
                "required": required, "properties": properties })
    };
    json!({
        "description": derived.get("description").cloned().unwrap_or(Value::Null),
        "oneOf": [
            shape("WithProof", &["step_up"], &["step_up"]),
            shape("WithCode", &["challenge_id", "code"], &["challenge_id", "code"]),
            shape("Pending", &[], &[]),
        ],
    })
}

/// A reset takes the admin's proof or their attestation: two shapes.
fn reset_body(derived: &Value) -> Value {
    let member = |name: &str| derived.pointer(&format!("/properties/{name}")).cloned().unwrap_or(json!({}));
    let shape = |title: &str, present: &str, absent: &str| {
        let mut properties = Map::new();
        for name in ["actor", "reason"] {
            properties.insert(name.to_owned(), member(name));
        }
        properties.insert(present.to_owned(), non_null(member(present)));
        properties.insert(absent.to_owned(), json!({ "type": "null" }));
        json!({ "title": title, "type": "object", "additionalProperties": false,
                "required": ["actor", present], "properties": properties })
    };
    json!({
        "description": derived.get("description").cloned().unwrap_or(Value::Null),
        "oneOf": [
            shape("ResetWithProof", "step_up", "attestation"),
            shape("ResetWithAttestation", "attestation", "step_up"),
        ],
    })
}

/// The schema without its `null` alternative.
fn non_null(schema: Value) -> Value {
    if let Some(types) = schema.get("type").and_then(Value::as_array) {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let mut schema = schema.clone();
        schema["type"] = if kept.len() == 1 { kept[0].clone() } else { Value::Array(kept) };
        return schema;
    }
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        let kept: Vec<Value> = options.iter().filter(|o| o.get("type") != Some(&json!("null"))).cloned().collect();
        if kept.len() == 1 {
            return kept[0].clone();
        }
    }
    schema
}

/// No text anywhere holds a NUL (`json::parse` refuses it): a string schema
/// without a pattern of its own says so.
fn no_nul(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_string = map
                .get("type")
                .is_some_and(|t| t == "string" || t.as_array().is_some_and(|a| a.contains(&json!("string"))));
            let free = !map.contains_key("pattern") && !map.contains_key("enum") && !map.contains_key("format");
            if is_string && free {
                map.insert("pattern".to_owned(), Value::String("^[^\\u0000]*$".to_owned()));
            }
            map.values_mut().for_each(no_nul);
        }
        Value::Array(items) => items.iter_mut().for_each(no_nul),
        _ => {}
    }
}

/// A character that is not a control (`char::is_control`) …
const PRINTABLE: &str = "[^\\u0000-\\u001f\\u007f-\\u009f]";
/// … and one that is not white space either (what `str::trim` drops).
const VISIBLE: &str = "[^\\u0000-\\u0020\\u007f-\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// `char::is_control`: Unicode's Cc, U+0000–U+001F and U+007F–U+009F.
const ACCOUNT_ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";

fn operation(op: &mut Map<String, Value>) {
    if let Some(parameters) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        parameters.iter_mut().for_each(parameter_rule);
        parameters.iter_mut().for_each(no_nul);
    }
    let secured = op.get("security").and_then(Value::as_array).is_some_and(|s| !s.is_empty());
    let has_body = op.contains_key("requestBody");
    let parameters = op.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
    let in_path = parameters.iter().any(|p| p["in"] == "path");
    if let Some(body) = op.get_mut("requestBody").and_then(Value::as_object_mut) {
        request_body(body);
    }

    let mut implied: Vec<(u16, &str)> = vec![
        (414, "The URL is longer than `http.max_url_bytes` (`uri_too_long`)"),
        (431, "The headers are larger than `http.max_header_bytes` (`headers_too_large`)"),
        (500, "An internal error; the detail names nothing internal (`internal`)"),
        (503, "A store or the broker is unreachable, or this process does not serve the operation (`unavailable`)"),
    ];
    if secured {
        implied.push((401, "No API key, or one that is unknown, revoked or expired (`unauthenticated`)"));
        implied.push((403, "The key lacks the operation's scope (`forbidden_scope`) or is used from outside its networks (`forbidden_source`)"));
    }
    if has_body {
        implied.push((400, "The body is not a JSON object of the documented shape (`malformed_body`)"));
        implied.push((413, "The body is larger than `http.max_body_bytes` (`body_too_large`)"));
        implied.push((415, "The body is not `application/json` (`unsupported_media_type`)"));
    }
    if has_body || !parameters.is_empty() {
        implied.push((422, "A value the service refuses; `field` names it (`invalid_field`)"));
    }
    if in_path {
        implied.push((404, "Nothing of that id, or not the key's tenant's (`not_found`)"));
    }

    let responses = op.entry("responses").or_insert_with(|| json!({}));
    let Some(responses) = responses.as_object_mut() else {
        return;
    };
    for (status, description) in implied {
        responses.entry(status.to_string()).or_insert_with(|| {
            json!({ "description": description, "content": { PROBLEM_TYPE: { "schema": { "$ref": PROBLEM_REF } } } })
        });
    }
    for (status, response) in responses.iter_mut() {
        let Some(response) = response.as_object_mut() else {
            continue;
        };
        if response.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
            let phrase = status.parse::<u16>().ok().and_then(|s| StatusCode::from_u16(s).ok());
            let phrase = phrase.and_then(|s| s.canonical_reason()).unwrap_or("Response");
            response.insert("description".to_owned(), Value::String(phrase.to_owned()));
        }
        if let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) {
            problem_media_type(content);
        }
    }
}

/// A body's schema `oneOf [T, null]` (from `Option<T>`) means "may be left
/// out", not "may be `null`": the server refuses a `null` body.
fn request_body(body: &mut Map<String, Value>) {
    let mut optional = false;
    if let Some(content) = body.get_mut("content").and_then(Value::as_object_mut) {
        for media in content.values_mut() {
            let Some(schema) = media.get_mut("schema") else { continue };
            let inner = schema.get("oneOf").and_then(Value::as_array).and_then(|variants| {
                let (nulls, others): (Vec<&Value>, Vec<&Value>) =
                    variants.iter().partition(|v| v.get("type") == Some(&json!("null")));
                (nulls.len() == 1 && others.len() == 1).then(|| others[0].clone())
            });
            if let Some(inner) = inner {
                *schema = inner;
                optional = true;
            }
        }
    }
    body.insert("required".to_owned(), Value::Bool(!optional));
}

/// A problem document travels as `application/problem+json`.
fn problem_media_type(content: &mut Map<String, Value>) {
    let is_problem = |media: &Value| media.pointer("/schema/$ref").and_then(Value::as_str) == Some(PROBLEM_REF);
    if let Some(media) = content.get("application/json").filter(|m| is_problem(m)).cloned() {
        content.remove("application/json");
        content.insert(PROBLEM_TYPE.to_owned(), media);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyed_operation_with_an_optional_body_lists_what_the_layers_answer() {
        let mut doc = json!({ "paths": { "/v1/x/{id}": { "post": {
            "parameters": [{ "name": "id", "in": "path" }],
            "requestBody": { "content": { "application/json": { "schema": { "oneOf": [
                { "$ref": "#/components/schemas/X" }, { "type": "null" } ] } } } },
            "responses": {
                "200": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/X" } } } },
                "409": { "content": { "application/json": { "schema": { "$ref": PROBLEM_REF } } } }
            },
            "security": [{ "api_key": ["verify"] }]
        } } } });
        conform(&mut doc);
        let op = &doc["paths"]["/v1/x/{id}"]["post"];
        assert_eq!(op["requestBody"]["required"], false);
        assert_eq!(op["requestBody"]["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/X");
        let statuses: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
        for s in ["200", "400", "401", "403", "404", "409", "413", "414", "415", "422", "431", "500", "503"] {
            assert!(statuses.iter().any(|k| *k == s), "{s} in {statuses:?}");
        }
        assert_eq!(op["responses"]["200"]["description"], "OK");
        assert_eq!(op["responses"]["409"]["description"], "Conflict");
        assert!(op["responses"]["409"]["content"][PROBLEM_TYPE].is_object());
        assert!(op["responses"]["200"]["content"]["application/json"].is_object(), "a success stays JSON");
    }

    #[test]
    fn an_open_operation_without_input_is_not_said_to_need_a_key() {
        let mut doc =
            json!({ "paths": { "/healthz": { "get": { "responses": { "200": { "description": "up" } } } } } });
        conform(&mut doc);
        let responses = doc["paths"]["/healthz"]["get"]["responses"].as_object().unwrap();
        assert!(!responses.contains_key("401") && !responses.contains_key("400") && !responses.contains_key("404"));
        assert_eq!(responses["200"]["description"], "up");
    }
}
