//! Signed SMS API webhooks (delivery receipts) and reading a receipt.
//!
//! With message signing enabled on the account, Vonage adds `timestamp` (Unix
//! seconds) and `sig` to every webhook. `sig` is computed over the other
//! parameters sorted by name, joined as `&name=value&name=value…` after
//! replacing `&` and `=` in values with `_`: for `md5hash`, the MD5 of that
//! string followed by the signature secret (lowercase hex); for `md5`, `sha1`,
//! `sha256` and `sha512`, the HMAC of that string keyed with the secret
//! (uppercase hex). The comparison ignores case.
//! - <https://developer.vonage.com/en/getting-started/concepts/signing-messages>
//! - <https://developer.vonage.com/en/blog/using-message-signatures-to-ensure-secure-incoming-webhooks-dr>
//! - Vonage's PHP library, `src/Client/Signature.php` (the reference implementation the vectors below come from)
//!
//! Delivery receipt fields: `messageId`, `msisdn` (the recipient), `to` (the
//! sender id), `status`, `err-code`, `client-ref`, `network-code`, `scts`, …
//! - <https://developer.vonage.com/en/messaging/sms/guides/delivery-receipts>

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The signature method chosen in the Vonage dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum SignatureMethod {
    /// MD5 of the parameters followed by the secret (Vonage's legacy default).
    #[serde(rename = "md5hash")]
    Md5Hash,
    #[serde(rename = "md5")]
    HmacMd5,
    #[serde(rename = "sha1")]
    HmacSha1,
    #[default]
    #[serde(rename = "sha256")]
    HmacSha256,
    #[serde(rename = "sha512")]
    HmacSha512,
}

/// Why a webhook is not accepted as Vonage's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("no signature secret is configured")]
    NotConfigured,
    #[error("the request has no sig parameter")]
    MissingSignature,
    #[error("the request has no timestamp parameter")]
    MissingTimestamp,
    #[error("the timestamp parameter is not Unix seconds")]
    InvalidTimestamp,
    #[error("the timestamp is outside the accepted window")]
    Stale,
    #[error("the parameter {0} appears more than once")]
    DuplicateParameter(String),
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks that `params` (every query or form parameter of the webhook, `sig`
/// included) carry Vonage's signature made with `signature_secret` and
/// `method`, and that their `timestamp` is within `tolerance` of `now`. The
/// signature is compared in constant time, ignoring the case of its hex.
pub fn verify_signed_callback(
    params: &[(String, String)],
    signature_secret: &[u8],
    method: SignatureMethod,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), CallbackError> {
    let mut seen = HashSet::new();
    for (name, _) in params {
        if !seen.insert(name.as_str()) {
            return Err(CallbackError::DuplicateParameter(name.chars().take(40).collect()));
        }
    }
    let sig = value(params, "sig").ok_or(CallbackError::MissingSignature)?;
    let timestamp = value(params, "timestamp").ok_or(CallbackError::MissingTimestamp)?;
    let seconds = timestamp.trim().parse::<u64>().map_err(|_| CallbackError::InvalidTimestamp)?;
    // Any u64 parses, but not every one is a time: adding it would panic.
    let sent = UNIX_EPOCH.checked_add(Duration::from_secs(seconds)).ok_or(CallbackError::InvalidTimestamp)?;
    let skew = now.duration_since(sent).unwrap_or_else(|early| early.duration());
    if skew > tolerance {
        return Err(CallbackError::Stale);
    }
    let expected = signature(params, signature_secret, method).to_ascii_lowercase();
    let given = sig.trim().to_ascii_lowercase();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) { Ok(()) } else { Err(CallbackError::Mismatch) }
}

/// Vonage's signature of `params` (any `sig` among them is left out): what
/// Vonage puts in `sig`, and what a test or mock signs webhooks with.
pub fn signature(params: &[(String, String)], signature_secret: &[u8], method: SignatureMethod) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(name, _)| name != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut base = String::new();
    for (name, value) in sorted {
        base.push('&');
        base.push_str(name);
        base.push('=');
        base.push_str(&value.replace(['&', '='], "_"));
    }
    let base = base.as_bytes();
    match method {
        SignatureMethod::Md5Hash => {
            let mut md5 = Md5::new();
            md5.update(base);
            md5.update(signature_secret);
            hex::encode(md5.finalize())
        }
        SignatureMethod::HmacMd5 => hmac_hex::<Hmac<Md5>>(signature_secret, base),
        SignatureMethod::HmacSha1 => hmac_hex::<Hmac<sha1::Sha1>>(signature_secret, base),
        SignatureMethod::HmacSha256 => hmac_hex::<Hmac<sha2::Sha256>>(signature_secret, base),
        SignatureMethod::HmacSha512 => hmac_hex::<Hmac<sha2::Sha512>>(signature_secret, base),
    }
}

/// Uppercase hex of an HMAC, as Vonage sends it.
fn hmac_hex<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(data);
    hex::encode_upper(mac.finalize().into_bytes())
}

fn value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// A delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dlr {
    /// The `message-id` Vonage answered when it accepted the SMS.
    pub message_id: String,
    pub status: DlrStatus,
    /// `err-code`: 0 when delivered, else the carrier's reason.
    pub err_code: Option<i64>,
    /// The recipient (`msisdn`; in a receipt, `to` is the sender id).
    pub to: Option<String>,
    /// The `client-ref` sent with the SMS: verifyd's attempt reference.
    pub client_ref: Option<String>,
}

/// `status` of a delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlrStatus {
    Delivered,
    Expired,
    Failed,
    Rejected,
    Accepted,
    Buffered,
    Unknown,
    Other(String),
}

impl DlrStatus {
    fn parse(status: &str) -> Self {
        match status.trim().to_ascii_lowercase().as_str() {
            "delivered" => DlrStatus::Delivered,
            "expired" => DlrStatus::Expired,
            "failed" => DlrStatus::Failed,
            "rejected" => DlrStatus::Rejected,
            "accepted" => DlrStatus::Accepted,
            "buffered" => DlrStatus::Buffered,
            "unknown" => DlrStatus::Unknown,
            _ => DlrStatus::Other(status.chars().take(40).collect()),
        }
    }

    /// No later receipt will change the outcome.
    pub fn is_final(&self) -> bool {
        matches!(self, DlrStatus::Delivered | DlrStatus::Expired | DlrStatus::Failed | DlrStatus::Rejected)
    }
}

/// Reads a delivery receipt; `None` when `messageId` or `status` is missing.
pub fn parse_dlr(params: &[(String, String)]) -> Option<Dlr> {
    let message_id = value(params, "messageId").map(str::trim).filter(|id| !id.is_empty())?;
    let status = value(params, "status").filter(|s| !s.trim().is_empty())?;
    let non_empty = |name| value(params, name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    Some(Dlr {
        message_id: message_id.to_owned(),
        status: DlrStatus::parse(status),
        err_code: value(params, "err-code").and_then(|code| code.trim().parse().ok()),
        to: non_empty("msisdn"),
        client_ref: non_empty("client-ref"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the vonage_callback fuzz target: `timestamp` parsed as u64 was
    /// added to the epoch unchecked, so an unsigned request with
    /// `timestamp=18446744073709551615` panicked the HTTP worker.
    #[test]
    fn a_timestamp_past_what_a_system_time_holds_is_invalid_not_a_panic() {
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        for timestamp in [u64::MAX.to_string(), "17500175006320000000".to_owned(), (u64::MAX / 2).to_string()] {
            let params = vec![
                ("messageId".to_owned(), "0A0000001234567B".to_owned()),
                ("timestamp".to_owned(), timestamp.clone()),
                ("sig".to_owned(), "00".to_owned()),
            ];
            let refused =
                verify_signed_callback(&params, b"secret", SignatureMethod::HmacSha256, now, Duration::from_secs(300));
            assert!(
                matches!(refused, Err(CallbackError::InvalidTimestamp | CallbackError::Stale)),
                "{timestamp}: {refused:?}"
            );
        }
    }
}
