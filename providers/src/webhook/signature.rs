//! Signing verifyd's webhook requests, and checking them on the receiving
//! side: the scheme `mod.rs` describes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

#[cfg(doc)]
use super::DEFAULT_TOLERANCE;
use super::SIGNATURE_SCHEME;

type HmacSha256 = Hmac<Sha256>;

/// The `X-Verifyd-Signature` value for a request: `v1=` and the lowercase hex
/// HMAC-SHA256, keyed with `secret`, of `timestamp`, `.` and `body`.
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("{SIGNATURE_SCHEME}={}", hex::encode(tag))
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The timestamp header is not a unix time in decimal seconds.
    #[error("the timestamp is not a unix time in seconds")]
    MalformedTimestamp,
    /// The signature header has no well-formed `v1=<64 hex digits>` entry.
    #[error("the signature header has no v1 signature")]
    NoSignature,
    /// No `v1` entry is the HMAC of this timestamp and body with this secret.
    #[error("the signature does not match the body and timestamp")]
    Mismatch,
    /// Authentic, but signed further from `now` than the tolerance: a replay,
    /// or clocks out of sync.
    #[error("the timestamp is outside the tolerance")]
    Stale,
}

/// Checks a request from verifyd's webhook: `timestamp` is the
/// `X-Verifyd-Timestamp` header, `header` the `X-Verifyd-Signature` header,
/// `body` the raw body bytes as received. Accepts when one `v1` entry of
/// `header` is the HMAC-SHA256 of `"{timestamp}.{body}"` keyed with `secret`
/// (compared in constant time) and `timestamp` is within `tolerance` of `now`
/// (either way: a timestamp from the future is refused too). Use
/// [`DEFAULT_TOLERANCE`] unless there is a reason not to.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let signed_at = parse_timestamp(timestamp)?;
    let candidates: Vec<Vec<u8>> = header
        .split(',')
        .filter_map(|entry| entry.trim().split_once('='))
        .filter(|(scheme, _)| *scheme == SIGNATURE_SCHEME)
        .filter_map(|(_, value)| hex::decode(value).ok())
        .filter(|tag| tag.len() == 32)
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::NoSignature);
    }
    let expected = mac(secret, timestamp, body);
    // Every candidate is checked, so the time taken does not say which matched.
    let matched = candidates.iter().fold(false, |matched, tag| expected.clone().verify_slice(tag).is_ok() | matched);
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let drift = match now.duration_since(signed_at) {
        Ok(age) => age,
        Err(ahead) => ahead.duration(),
    };
    if drift > tolerance {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

fn parse_timestamp(timestamp: &str) -> Result<SystemTime, SignatureError> {
    if timestamp.is_empty() || timestamp.len() > 19 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::MalformedTimestamp);
    }
    let seconds = timestamp.parse::<u64>().map_err(|_| SignatureError::MalformedTimestamp)?;
    UNIX_EPOCH.checked_add(Duration::from_secs(seconds)).ok_or(SignatureError::MalformedTimestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::DEFAULT_TOLERANCE;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// Computed independently: `printf '1772445600.{"id":"a"}' | openssl dgst
    /// -sha256 -hmac 0123456789abcdef0123456789abcdef`.
    #[test]
    fn signs_timestamp_dot_body() {
        assert_eq!(
            sign(SECRET, "1772445600", br#"{"id":"a"}"#),
            "v1=01d1733d02df114b1645f48482b6d356ed9d87ae6285a809bd36ebe5548a551c"
        );
    }

    #[test]
    fn header_may_list_several_entries_and_other_schemes() {
        let now = UNIX_EPOCH + Duration::from_secs(1_772_445_600);
        let good = sign(SECRET, "1772445600", b"{}");
        let other = sign(b"another secret, also thirty-two bytes", "1772445600", b"{}");
        let header = format!("v0=abc, {other},{good} ,v2=ff");
        assert_eq!(verify_signature(SECRET, "1772445600", b"{}", &header, now, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(
            verify_signature(SECRET, "1772445600", b"{}", &other, now, DEFAULT_TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        for bad in ["", "v1=", "v1=zz", "v0=00", "sha256=abc", &good[3..]] {
            assert_eq!(
                verify_signature(SECRET, "1772445600", b"{}", bad, now, DEFAULT_TOLERANCE),
                Err(SignatureError::NoSignature),
                "{bad:?}"
            );
        }
        for bad in ["", "-1", " 1772445600", "1772445600.0", "99999999999999999999"] {
            assert_eq!(
                verify_signature(SECRET, bad, b"{}", &good, now, DEFAULT_TOLERANCE),
                Err(SignatureError::MalformedTimestamp),
                "{bad:?}"
            );
        }
    }
}
