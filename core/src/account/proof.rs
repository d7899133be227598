//! The proof a passed challenge gives the backend: `vp1.<claims>.<mac>`, the
//! claims as base64url JSON and an HMAC-SHA256 under the server key. It names
//! the tenant, the account and the challenge, what answered it, and when it
//! stops being valid. verifyd accepts it for restricted actions (step-up) only
//! while it is fresh and its challenge still exists (an admin reset deletes it).
//! A proof is a credential: it is never logged.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codes::keys::CodeKeys;
use crate::domain::challenge::{AnsweredBy, Purpose};

const PREFIX: &str = "vp1.";
/// Separates proof MACs from every other MAC made with the same key.
const CONTEXT: Uuid = Uuid::from_u128(0x7665_7269_6679_642d_7072_6f6f_6600_0001);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub tenant_id: Uuid,
    pub account_id: String,
    pub challenge_id: Uuid,
    pub purpose: Purpose,
    pub answered_by: AnsweredBy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor_id: Option<Uuid>,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

impl Claims {
    pub fn expires(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.expires_at, 0).single().unwrap_or_default()
    }

    pub fn issued(&self) -> DateTime<Utc> {
        Utc.timestamp_opt(self.issued_at, 0).single().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("not a verifyd proof")]
    Malformed,
    #[error("the proof's signature does not match")]
    BadSignature,
    #[error("the proof has expired")]
    Expired,
    #[error("the proof was issued for another account")]
    OtherAccount,
    #[error("the challenge behind the proof no longer stands (the account was reset)")]
    Revoked,
}

pub fn sign(keys: &CodeKeys, claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let body = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json));
    let mac = keys.mac_bytes(CONTEXT, body.as_bytes());
    format!("{body}.{}", URL_SAFE_NO_PAD.encode(mac))
}

/// Checks the signature first, then reads the claims and the expiry.
pub fn verify(keys: &CodeKeys, token: &str, now: DateTime<Utc>) -> Result<Claims, ProofError> {
    if token.len() > 2048 || !token.starts_with(PREFIX) {
        return Err(ProofError::Malformed);
    }
    let (body, mac) = token.rsplit_once('.').ok_or(ProofError::Malformed)?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| ProofError::Malformed)?;
    if !keys.verify_mac_bytes(CONTEXT, body.as_bytes(), &mac) {
        return Err(ProofError::BadSignature);
    }
    // `rsplit_once` may have split at the prefix's own dot (`vp1.<mac>`).
    let claims = body.strip_prefix(PREFIX).ok_or(ProofError::Malformed)?;
    let json = URL_SAFE_NO_PAD.decode(claims).map_err(|_| ProofError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| ProofError::Malformed)?;
    if now.timestamp() >= claims.expires_at {
        return Err(ProofError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> CodeKeys {
        CodeKeys::new(&[3u8; 32], &[4u8; 32]).unwrap()
    }

    fn claims(now: DateTime<Utc>) -> Claims {
        Claims {
            tenant_id: Uuid::new_v4(),
            account_id: "user-1".into(),
            challenge_id: Uuid::new_v4(),
            purpose: Purpose::Login,
            answered_by: AnsweredBy::Totp,
            factor_id: Some(Uuid::new_v4()),
            issued_at: now.timestamp(),
            expires_at: now.timestamp() + 300,
        }
    }

    #[test]
    fn a_signed_proof_verifies_until_it_expires() {
        let now = crate::timestamp::now();
        let c = claims(now);
        let token = sign(&keys(), &c);
        assert_eq!(verify(&keys(), &token, now), Ok(c));
        assert_eq!(verify(&keys(), &token, now + chrono::Duration::seconds(300)), Err(ProofError::Expired));
    }

    #[test]
    fn a_changed_proof_or_another_key_is_refused() {
        let now = crate::timestamp::now();
        let token = sign(&keys(), &claims(now));
        let other = CodeKeys::new(&[5u8; 32], &[4u8; 32]).unwrap();
        assert_eq!(verify(&other, &token, now), Err(ProofError::BadSignature));
        // Claims of another account under the original signature.
        let (body, mac) = token.rsplit_once('.').unwrap();
        let mut c = claims(now);
        c.account_id = "user-2".into();
        let forged_body = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap()));
        assert_ne!(forged_body, body);
        assert_eq!(verify(&keys(), &format!("{forged_body}.{mac}"), now), Err(ProofError::BadSignature));
        assert_eq!(verify(&keys(), "vp1.x", now), Err(ProofError::Malformed));
        // `vp1.<mac of "vp1">`: a body shorter than the prefix was sliced past
        // its end once the MAC matched. Only the key holder can make one, but
        // a proof parser must not panic on any input.
        let mac = URL_SAFE_NO_PAD.encode(keys().mac_bytes(CONTEXT, b"vp1"));
        assert_eq!(verify(&keys(), &format!("vp1.{mac}"), now), Err(ProofError::Malformed));
        assert_eq!(verify(&keys(), "bearer", now), Err(ProofError::Malformed));
    }
}
