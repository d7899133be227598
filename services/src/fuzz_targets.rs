//! The bodies of the fuzz targets in `fuzz/` (cargo fuzz, libFuzzer). Each
//! takes the bytes the fuzzer made, hands them to the parser verifyd runs on
//! outside input, and asserts what must hold whatever the input. A panic is a
//! finding. The test below replays every committed input under
//! `fuzz/corpus/<target>/` (seeds and the crashes found), so a plain
//! `cargo test` keeps the targets compiling and the fixed crashes fixed.
//! `docs/fuzzing.md` says how to run them.

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use uuid::Uuid;
use verifyd_core::account::proof;
use verifyd_core::account::rules::Shape;
use verifyd_core::codes::keys::CodeKeys;
use verifyd_core::codes::recovery::RecoveryCode;
use verifyd_core::codes::totp;
use verifyd_core::delivery::voice_script;
use verifyd_core::ids::AccountId;
use verifyd_providers::domain::{Channel, Code, Destination, EmailAddress, Locale, PhoneNumber};
use verifyd_providers::twilio::{request_signature, verify_request};
use verifyd_providers::vonage::{SignatureMethod, parse_dlr, signature, verify_signed_callback};

use crate::http::callbacks::{form_params, vonage_params};
use crate::http::{organisation_id, path_id};
use crate::intake;

/// A target's body: it gets the fuzzer's bytes and panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its binary in `fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("amqp_request", amqp_request),
    ("phone_number", phone_number),
    ("domain_parsers", domain_parsers),
    ("twilio_callback", twilio_callback),
    ("vonage_callback", vonage_callback),
    ("voice_script_link", voice_script_link),
    ("step_up_proof", step_up_proof),
];

/// The instant every target calls "now": fixed, so a finding replays.
const NOW_SECS: i64 = 1_750_000_000;

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(NOW_SECS, 0).unwrap_or_default()
}

fn keys() -> &'static CodeKeys {
    static KEYS: OnceLock<CodeKeys> = OnceLock::new();
    KEYS.get_or_init(|| CodeKeys::new(&[7u8; 32], &[9u8; 32]).unwrap_or_else(|_| unreachable!("32-byte keys")))
}

/// What a refusal sent back to a caller must not carry: Rust paths and type
/// names, source paths, database error text.
fn assert_no_internals(text: &str) {
    for leak in ["::", "struct ", "/src/", "sqlx", "verifyd_"] {
        assert!(!text.contains(leak), "{leak:?} leaks in {text:?}");
    }
}

/// An AMQP request message body (`<prefix>requests`), decoded as the intake
/// does. Accepted: every field is within its bounds and the phone is canonical.
/// Refused: the reason (published in `verification.rejected` and kept with the
/// dead letter) is bounded and shows no internals.
pub fn amqp_request(data: &[u8]) {
    match intake::decode(data, None) {
        Ok(request) => {
            let id = request.account_id.as_str();
            assert!(!id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control));
            assert_eq!(request.channel.destination(), request.to.kind());
            match &request.to {
                Destination::Phone(phone) => assert_eq!(PhoneNumber::parse(phone.e164()).as_ref(), Ok(phone)),
                Destination::Email(email) => assert_eq!(EmailAddress::parse(email.as_str()).as_ref(), Ok(email)),
            }
            if let Some(key) = &request.idempotency_key {
                assert!(!key.is_empty() && key.len() <= 255);
            }
            if let Some(length) = request.code_length {
                assert!((4..=10).contains(&length.get()));
            }
            assert!((2..=5).contains(&request.locale.as_str().len()));
        }
        Err(reason) => {
            assert!(reason.chars().count() <= 600, "unbounded reason: {} chars", reason.chars().count());
            assert_no_internals(&reason);
        }
    }
}

/// `PhoneNumber::parse`: an accepted number is canonical E.164 (it re-parses
/// to itself, and reads back from storage as itself), and its masked and
/// `Debug` forms show at most two of its digits.
pub fn phone_number(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(number) = PhoneNumber::parse(text) {
        let e164 = number.e164();
        assert!(e164.len() <= 16 && e164.starts_with('+'), "{e164:?}");
        assert!(number.digits().bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(PhoneNumber::parse(e164).as_ref(), Ok(&number), "not canonical: {text:?}");
        assert_eq!(PhoneNumber::from_stored(e164).as_ref(), Ok(&number));
        let digits_shown = |s: &str| s.bytes().filter(u8::is_ascii_digit).count();
        assert!(digits_shown(&number.masked()) <= 2, "{}", number.masked());
        assert!(digits_shown(&format!("{number:?}")) <= 2);
        if let Some(country) = number.country() {
            assert!(country.len() <= 3 && country.bytes().all(|b| b.is_ascii_alphanumeric()), "{country:?}");
        }
    }
    if let Ok(stored) = PhoneNumber::from_stored(text) {
        assert!(stored.masked().bytes().filter(u8::is_ascii_digit).count() <= 2);
    }
}

/// The other parsers at the edge: what a person types (verification code,
/// authenticator code, recovery code), channel, locale, account and
/// organisation ids, path ids. Each accepted value is within its bounds and
/// parses again to itself.
pub fn domain_parsers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(code) = Code::parse(text) {
        assert!((4..=10).contains(&code.len()) && code.expose().bytes().all(|b| b.is_ascii_digit()));
        assert!(code.ct_eq(&code));
        assert_eq!(format!("{code:?}"), format!("Code(<{} digits>)", code.len()));
    }
    if let Ok(channel) = text.parse::<Channel>() {
        assert_eq!(channel.as_str().parse::<Channel>(), Ok(channel));
    }
    if let Ok(locale) = Locale::parse(text) {
        assert_eq!(Locale::parse(locale.as_str()).as_ref(), Ok(&locale));
        assert_eq!(locale.language().len(), 2);
    }
    if let Ok(id) = AccountId::parse(text) {
        assert!(!id.as_str().is_empty() && id.as_str().len() <= 128);
    }
    if let Ok(org) = organisation_id(text) {
        assert!(!org.as_str().is_empty() && org.as_str().chars().count() <= 128);
    }
    if let Ok(id) = path_id(text) {
        assert_eq!(path_id(&id.to_string()).ok(), Some(id));
    }
    if let Ok(recovery) = RecoveryCode::parse(text) {
        assert_eq!(
            RecoveryCode::parse(&recovery.grouped()).map(|r| r.expose().to_owned()).as_deref(),
            Ok(recovery.expose())
        );
    }
    let shape = Shape::of(text);
    assert!(shape.digits.is_none_or(|n| n == text.len()));
    let step = totp::accept(&[5u8; 20], text, NOW_SECS.unsigned_abs(), None);
    assert!(step.is_none() || text.len() == 6);
}

const TWILIO_TOKEN: &str = "fuzz-auth-token";
const TWILIO_URL: &str = "https://verifyd.example.com/v1/callbacks/twilio";

/// A Twilio status callback body (a form): the parameters as the endpoint
/// reads them, the signature check (Twilio's own signature of them passes,
/// any other header fails), and the receipt they report.
pub fn twilio_callback(data: &[u8]) {
    let Ok(params) = form_params(data, "not a Twilio status callback") else { return };
    let token = SecretString::from(TWILIO_TOKEN.to_owned());
    let good = request_signature(TWILIO_TOKEN, TWILIO_URL, &params);
    assert!(verify_request(&token, TWILIO_URL, &params, &good));
    assert!(!verify_request(&token, TWILIO_URL, &params, &format!("{good}A")));
    assert!(!verify_request(&token, TWILIO_URL, &params, ""));
    // A header taken from the body itself never passes unless it is the signature.
    if let Some((_, header)) = params.iter().find(|(name, _)| name == "Signature") {
        assert_eq!(verify_request(&token, TWILIO_URL, &params, header), header.trim() == good);
    }
    if let Some(receipt) = verifyd_providers::twilio::receipt(&params) {
        assert_eq!(receipt.provider, "twilio");
    }
}

const VONAGE_SECRET: &[u8] = b"fuzz-signature-secret";

/// A Vonage delivery receipt: the first byte picks where the parameters come
/// from (query string, form, JSON), the rest is that text. The parameters as
/// the endpoint reads them, the signed-webhook check on them as they are,
/// the same parameters signed by Vonage (which must pass), and the receipt.
pub fn vonage_callback(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    let parsed = match mode % 3 {
        0 => match std::str::from_utf8(body) {
            Ok(query) => vonage_params(query, None, &[]),
            Err(_) => return,
        },
        1 => vonage_params("", Some("application/x-www-form-urlencoded"), body),
        _ => vonage_params("", Some("application/json"), body),
    };
    let Ok(params) = parsed else { return };
    let now = UNIX_EPOCH + Duration::from_secs(NOW_SECS.unsigned_abs());
    let tolerance = Duration::from_secs(300);
    let method = if mode & 0x80 == 0 { SignatureMethod::HmacSha256 } else { SignatureMethod::Md5Hash };
    let _ = verify_signed_callback(&params, VONAGE_SECRET, method, now, tolerance);

    let mut names = std::collections::HashSet::new();
    if params.iter().all(|(name, _)| names.insert(name.as_str())) {
        let mut signed: Vec<(String, String)> =
            params.iter().filter(|(name, _)| name != "sig" && name != "timestamp").cloned().collect();
        signed.push(("timestamp".to_owned(), NOW_SECS.to_string()));
        let sig = signature(&signed, VONAGE_SECRET, method);
        signed.push(("sig".to_owned(), sig));
        assert_eq!(verify_signed_callback(&signed, VONAGE_SECRET, method, now, tolerance), Ok(()));
        let later = now + Duration::from_secs(301);
        assert!(verify_signed_callback(&signed, VONAGE_SECRET, method, later, tolerance).is_err());
    }
    if let Some(dlr) = parse_dlr(&params) {
        assert!(!dlr.message_id.is_empty());
        if let Some(receipt) = verifyd_providers::vonage::receipt(&params) {
            assert_eq!((receipt.provider, receipt.message_id), ("vonage", dlr.message_id));
        }
    }
}

/// A voice-script link token (the last path segment of `/v1/voice-scripts/`).
/// Whatever the token, no panic, and nothing passes without the key; and a
/// link made from the input's first 24 bytes (id, expiry) verifies to its id
/// until it expires.
pub fn voice_script_link(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = voice_script::verify(keys(), token, now());
    }
    let Some((id, rest)) = data.split_first_chunk::<16>() else { return };
    let Some((expiry, _)) = rest.split_first_chunk::<8>() else { return };
    let id = Uuid::from_bytes(*id);
    let Some(expires_at) = DateTime::from_timestamp(i64::from_le_bytes(*expiry), 0) else { return };
    let url = voice_script::link(keys(), "https://verifyd.example.com/", id, expires_at);
    let token = url.rsplit('/').next().unwrap_or_default();
    let verified = voice_script::verify(keys(), token, now());
    if now() < expires_at {
        assert_eq!(verified, Ok(id));
    } else {
        assert_eq!(verified, Err(voice_script::LinkError::Expired));
    }
}

/// A step-up proof (`vp1.<claims>.<mac>`) as a caller passes it. Whatever the
/// token, no panic and nothing passes without the key; and claims read from
/// the input as JSON, once signed, verify to themselves until they expire.
pub fn step_up_proof(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = proof::verify(keys(), token, now());
    }
    let Ok(claims) = serde_json::from_slice::<proof::Claims>(data) else { return };
    let _ = (claims.expires(), claims.issued());
    let token = proof::sign(keys(), &claims);
    let verified = proof::verify(keys(), &token, now());
    if token.len() > 2048 {
        assert_eq!(verified, Err(proof::ProofError::Malformed));
    } else if now().timestamp() < claims.expires_at {
        assert_eq!(verified, Ok(claims));
    } else {
        assert_eq!(verified, Err(proof::ProofError::Expired));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every target over its committed corpus: the seeds and every crash found
    /// (named `crash-*`), which must not crash again.
    #[test]
    fn every_target_survives_its_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let mut inputs = 0;
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{name} panics on {}", path.display());
                inputs += 1;
            }
            assert!(inputs >= 3, "{name}: only {inputs} inputs in {}", dir.display());
        }
    }
}
