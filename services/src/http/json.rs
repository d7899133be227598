//! JSON request bodies, read one way everywhere (HTTP bodies and AMQP
//! requests alike):
//!
//! * a body is a JSON **object**: serde would otherwise fill a struct from an
//!   array by position (`["acct","+1415…","sms"]` would create a verification);
//! * no string in it, and no member name, holds a NUL (`\u0000`): PostgreSQL
//!   refuses NUL in text, so it would surface as a 500 several layers down;
//! * a body that does not fit its type is refused with where and what kind of
//!   mistake, never the value (`ApiError::malformed_json`).
//!
//! `Json<T>` is the extractor; `parse` the rule, for bodies read as bytes.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, mime};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::body::RawBody;
use super::problem::ApiError;

/// A JSON object body, parsed by `parse`. Requires `Content-Type:
/// application/json` (or any `+json` type).
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime::Mime>().ok())
            .is_some_and(|m| {
                m.type_() == mime::APPLICATION && (m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON))
            });
        let body = RawBody::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            parse(&body.await?).map(Json)
        })
    }
}

/// The rule for every JSON request body (see the module's documentation).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| ApiError::malformed_json(&e))?;
    if !value.is_object() {
        return Err(ApiError::MalformedBody(format!("the body must be a JSON object, not {}", kind(&value))));
    }
    if let Some(path) = nul_at(&value, &mut String::new()) {
        return Err(ApiError::MalformedBody(format!("{path} holds a NUL character (\\u0000), which no field accepts")));
    }
    let mut value = value;
    whole_numbers(&mut value);
    serde_json::from_value(value).map_err(|e| ApiError::malformed_json(&e))
}

/// `2.0` is the integer 2, as JSON Schema has it: a number without a
/// fraction fills an integer field.
fn whole_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        Value::Object(members) => members.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Where the first NUL is, as a JSON path of the API's own member names (a
/// member name that itself holds the NUL is not repeated: it may be anything).
fn nul_at(value: &Value, path: &mut String) -> Option<String> {
    let here = |path: &str| if path.is_empty() { "the body".to_owned() } else { format!("`{path}`") };
    match value {
        Value::String(s) if s.contains('\0') => Some(here(path)),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = nul_at(item, path);
            path.truncate(len);
            found
        }),
        Value::Object(members) => members.iter().find_map(|(name, item)| {
            if name.contains('\0') {
                return Some(format!("a member name in {}", here(path)));
            }
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(name);
            let found = nul_at(item, path);
            path.truncate(len);
            found
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Request {
        account_id: String,
        phone: String,
    }

    fn refused(body: &str) -> String {
        match parse::<Request>(body.as_bytes()) {
            Err(ApiError::MalformedBody(m)) => m,
            other => panic!("expected a malformed body, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn an_array_is_not_an_object_even_when_it_fits_by_position() {
        assert_eq!(refused(r#"["acct","+14156901375"]"#), "the body must be a JSON object, not an array");
        assert_eq!(refused("null"), "the body must be a JSON object, not null");
    }

    #[test]
    fn a_nul_anywhere_is_refused_with_its_path_not_its_value() {
        let m = refused(r#"{"account_id":"a\u0000b","phone":"+1"}"#);
        assert_eq!(m, "`account_id` holds a NUL character (\\u0000), which no field accepts");
        let m = refused(r#"{"x":{"y":["ok","secret\u0000"]}}"#);
        assert_eq!(m, "`x.y[1]` holds a NUL character (\\u0000), which no field accepts");
        assert!(refused("{\"se\\u0000cret\":1}").starts_with("a member name in the body"));
    }

    #[test]
    fn a_number_without_a_fraction_fills_an_integer() {
        #[derive(serde::Deserialize)]
        struct Limit {
            limit: u32,
        }
        assert_eq!(parse::<Limit>(br#"{"limit": 20.0}"#).unwrap().limit, 20);
        assert!(parse::<Limit>(br#"{"limit": 20.5}"#).is_err());
    }

    #[test]
    fn an_object_that_fits_is_read() {
        let r: Request = parse(br#"{"account_id":"a","phone":"+1"}"#).unwrap();
        assert_eq!(r.phone, "+1");
    }
}
