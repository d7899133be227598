//! Vonage's signed SMS webhooks (delivery receipts): the signature vectors of
//! Vonage's own client libraries, one computed here by hand, the timestamp
//! window, and reading a receipt.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use verifyd_providers::vonage::{
    CallbackError, Dlr, DlrStatus, SignatureMethod, Vonage, VonageConfig, parse_dlr, signature, verify_signed_callback,
};

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn at(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

const WINDOW: Duration = Duration::from_secs(300);

/// An inbound-SMS webhook from Vonage's PHP library tests
/// (`test/Client/SignatureTest.php`), signed with each method.
const INBOUND: &[(&str, &str)] = &[
    ("message-timestamp", "2013-11-21 15:27:30"),
    ("messageId", "020000001B0FE827"),
    ("msisdn", "14843472194"),
    ("text", "Test again"),
    ("timestamp", "1385047698"),
    ("to", "13239877404"),
    ("type", "text"),
];
const INBOUND_SECRET: &[u8] = b"my_secret_key_for_testing";

#[test]
fn matches_vonages_published_vectors_for_every_method() {
    let cases = [
        (SignatureMethod::Md5Hash, "d2e7b1dc968737c5998ad624e02f90b7"),
        (SignatureMethod::HmacMd5, "DDEBD46008C2D4E93CCE578A332A52D5"),
        (SignatureMethod::HmacSha1, "27D0D05C2876C7CB1720DBCDBA4D492E1E55C09A"),
        (SignatureMethod::HmacSha256, "DDB8397C2B90AAC7F3882D306475C9A5058C92322EEF43C92B298B6E0FC0D330"),
        (
            SignatureMethod::HmacSha512,
            "E0D3C650F8C9D1A5C174D10DDDBFB003E561F59B265616208B0487C5D819481CD3C311D59CF6165ECD1139622D5BA3A256C0D763AC4A9AD9144B5A426B94FE82",
        ),
    ];
    for (method, sig) in cases {
        let mut signed = params(INBOUND);
        assert_eq!(signature(&signed, INBOUND_SECRET, method), sig, "{method:?}");
        signed.push(("sig".into(), sig.into()));
        assert_eq!(verify_signed_callback(&signed, INBOUND_SECRET, method, at(1_385_047_698), WINDOW), Ok(()));
    }
}

#[test]
fn values_with_ampersands_and_equals_signs_are_signed_with_underscores() {
    // Vonage's vector: "Test with & and =" is signed as "Test with _ and _".
    let signed = params(&[
        ("keyword", "TEST"),
        ("message-timestamp", "2017-04-04 22:57:47"),
        ("messageId", "0B00000042AC53BD"),
        ("msisdn", "14843472194"),
        ("nonce", "929d6744-bd28-42c8-b6cf-31d5b4f43732"),
        ("sig", "e06d9763e3fd0b9c31beb5fc2fcb011c"),
        ("text", "Test with & and ="),
        ("timestamp", "1491346667"),
        ("to", "12192259404"),
        ("type", "text"),
    ]);
    let secret = b"my_secret_key_for_testing";
    assert_eq!(signature(&signed, secret, SignatureMethod::Md5Hash), "e06d9763e3fd0b9c31beb5fc2fcb011c");
    assert_eq!(verify_signed_callback(&signed, secret, SignatureMethod::Md5Hash, at(1_491_346_667), WINDOW), Ok(()));
}

#[test]
fn matches_the_python_librarys_vector() {
    let signed =
        params(&[("a", "1"), ("b", "2"), ("timestamp", "1461605396"), ("sig", "6af838ef94998832dbfc29020b564830")]);
    assert_eq!(verify_signed_callback(&signed, b"secret", SignatureMethod::Md5Hash, at(1_461_605_396), WINDOW), Ok(()));
}

/// A delivery receipt signed here with HMAC-SHA256 over the string the
/// documentation describes, independently of the library code.
fn receipt_signed_by_hand(secret: &[u8], now: u64) -> Vec<(String, String)> {
    let timestamp = now.to_string();
    let fields = [
        ("client-ref", "att_42"),
        ("err-code", "0"),
        ("messageId", "0A0000000123ABCD1"),
        ("message-timestamp", "2026-03-02 10:00:05"),
        ("msisdn", "447911123456"),
        ("network-code", "23410"),
        ("price", "0.03330000"),
        ("scts", "2603021000"),
        ("status", "delivered"),
        ("timestamp", timestamp.as_str()),
        ("to", "verifyd"),
    ];
    // Sorted by name, byte order: "client-ref" < "err-code" < "message-timestamp" < "messageId" < …
    let mut sorted = fields.to_vec();
    sorted.sort();
    let base: String = sorted.iter().map(|(k, v)| format!("&{k}={v}")).collect();
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).unwrap();
    mac.update(base.as_bytes());
    let sig = hex::encode_upper(mac.finalize().into_bytes());
    let mut signed = params(&fields);
    signed.push(("sig".into(), sig));
    signed
}

#[test]
fn a_receipt_signed_by_hand_verifies_in_either_case_and_tampering_is_caught() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let now = 1_772_445_605;
    let signed = receipt_signed_by_hand(secret, now);
    assert_eq!(verify_signed_callback(&signed, secret, SignatureMethod::HmacSha256, at(now), WINDOW), Ok(()));

    let mut lowercase = signed.clone();
    let sig = lowercase.last_mut().unwrap();
    sig.1 = sig.1.to_ascii_lowercase();
    assert_eq!(verify_signed_callback(&lowercase, secret, SignatureMethod::HmacSha256, at(now), WINDOW), Ok(()));

    let mut tampered = signed.clone();
    tampered.iter_mut().find(|(k, _)| k == "status").unwrap().1 = "failed".into();
    let verdict = verify_signed_callback(&tampered, secret, SignatureMethod::HmacSha256, at(now), WINDOW);
    assert_eq!(verdict, Err(CallbackError::Mismatch));

    let verdict = verify_signed_callback(&signed, b"another secret", SignatureMethod::HmacSha256, at(now), WINDOW);
    assert_eq!(verdict, Err(CallbackError::Mismatch));
    let verdict = verify_signed_callback(&signed, secret, SignatureMethod::HmacSha512, at(now), WINDOW);
    assert_eq!(verdict, Err(CallbackError::Mismatch), "the method must be the dashboard's");
}

#[test]
fn the_timestamp_must_be_within_the_tolerance_either_way() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let now = 1_772_445_605;
    let signed = receipt_signed_by_hand(secret, now);
    let check = |clock: u64| verify_signed_callback(&signed, secret, SignatureMethod::HmacSha256, at(clock), WINDOW);
    assert_eq!(check(now + 300), Ok(()));
    assert_eq!(check(now - 300), Ok(()));
    assert_eq!(check(now + 301), Err(CallbackError::Stale), "a replay later");
    assert_eq!(check(now - 301), Err(CallbackError::Stale), "a timestamp from the future");
}

#[test]
fn missing_or_repeated_parameters_are_refused() {
    let secret = b"s";
    let now = at(1_385_047_698);
    let check =
        |p: &[(&str, &str)]| verify_signed_callback(&params(p), secret, SignatureMethod::HmacSha256, now, WINDOW);
    assert_eq!(check(&[("timestamp", "1385047698")]), Err(CallbackError::MissingSignature));
    assert_eq!(check(&[("sig", "AB")]), Err(CallbackError::MissingTimestamp));
    assert_eq!(check(&[("sig", "AB"), ("timestamp", "yesterday")]), Err(CallbackError::InvalidTimestamp));
    assert_eq!(
        check(&[("sig", "AB"), ("timestamp", "1385047698"), ("status", "delivered"), ("status", "failed")]),
        Err(CallbackError::DuplicateParameter("status".into()))
    );
}

#[test]
fn the_client_checks_with_its_configured_secret_and_method() {
    let secret = "0123456789abcdef0123456789abcdef";
    let now = 1_772_445_605;
    let signed = receipt_signed_by_hand(secret.as_bytes(), now);
    let unsigned = Vonage::new(VonageConfig::new("k", "s", "verifyd")).unwrap();
    assert_eq!(unsigned.verify_callback(&signed, at(now), WINDOW), Err(CallbackError::NotConfigured));
    let config = VonageConfig {
        signature_secret: Some(secret.to_owned().into()),
        signature_method: SignatureMethod::HmacSha256,
        ..VonageConfig::new("k", "s", "verifyd")
    };
    assert_eq!(Vonage::new(config).unwrap().verify_callback(&signed, at(now), WINDOW), Ok(()));
}

#[test]
fn a_receipt_is_read_from_vonages_fields() {
    let signed = receipt_signed_by_hand(b"x", 1_772_445_605);
    assert_eq!(
        parse_dlr(&signed),
        Some(Dlr {
            message_id: "0A0000000123ABCD1".into(),
            status: DlrStatus::Delivered,
            err_code: Some(0),
            to: Some("447911123456".into()),
            client_ref: Some("att_42".into()),
        })
    );
    let failed = params(&[("messageId", "0A01"), ("status", "failed"), ("err-code", "6"), ("msisdn", "447911123456")]);
    let dlr = parse_dlr(&failed).unwrap();
    assert_eq!((dlr.status.clone(), dlr.err_code, dlr.client_ref), (DlrStatus::Failed, Some(6), None));
    assert!(dlr.status.is_final());
    assert!(!parse_dlr(&params(&[("messageId", "0A02"), ("status", "buffered")])).unwrap().status.is_final());
    assert_eq!(
        parse_dlr(&params(&[("messageId", "0A03"), ("status", "weird")])).unwrap().status,
        DlrStatus::Other("weird".into())
    );
    assert_eq!(parse_dlr(&params(&[("status", "delivered")])), None, "no messageId");
    assert_eq!(parse_dlr(&params(&[("messageId", "0A04")])), None, "no status");
}
