//! Signed links to a call's script, for providers that fetch the script of a
//! call instead of taking it inline (Plivo's `answer_url`). The link names the
//! verification and an expiry, signed with the code HMAC key; whoever holds it
//! can hear the code until then, so it goes to the provider only, is never
//! logged (the HTTP access log skips its path), and dies with the code.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::codes::keys::CodeKeys;

/// Binds these MACs to their purpose: no other verifyd MAC verifies here.
const CONTEXT: Uuid = Uuid::from_u128(0x7665_7269_6679_642d_766f_6963_652d_7331);
/// Where the HTTP API serves scripts.
pub const PATH: &str = "/v1/voice-scripts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("not a script link")]
    Malformed,
    #[error("the link's signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

fn body(verification_id: Uuid, expires_at: i64) -> String {
    format!("{}.{expires_at}", verification_id.simple())
}

/// `{public_url}/v1/voice-scripts/{id}.{expiry}.{mac}`
pub fn link(keys: &CodeKeys, public_url: &str, verification_id: Uuid, expires_at: DateTime<Utc>) -> String {
    let body = body(verification_id, expires_at.timestamp());
    let mac = URL_SAFE_NO_PAD.encode(keys.mac_bytes(CONTEXT, body.as_bytes()));
    format!("{}{PATH}/{body}.{mac}", public_url.trim_end_matches('/'))
}

/// The verification a link's token (the last path segment) is for.
pub fn verify(keys: &CodeKeys, token: &str, now: DateTime<Utc>) -> Result<Uuid, LinkError> {
    if token.len() > 256 {
        return Err(LinkError::Malformed);
    }
    let (body, mac) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
    let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| LinkError::Malformed)?;
    if !keys.verify_mac_bytes(CONTEXT, body.as_bytes(), &mac) {
        return Err(LinkError::BadSignature);
    }
    let (id, expires_at) = body.split_once('.').ok_or(LinkError::Malformed)?;
    let id = Uuid::parse_str(id).map_err(|_| LinkError::Malformed)?;
    let expires_at: i64 = expires_at.parse().map_err(|_| LinkError::Malformed)?;
    if now.timestamp() >= expires_at {
        return Err(LinkError::Expired);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_verifies_until_it_expires_and_not_once_changed() {
        let keys = CodeKeys::new(&[1u8; 32], &[2u8; 32]).unwrap();
        let now = crate::timestamp::now();
        let id = Uuid::new_v4();
        let url = link(&keys, "https://verifyd.example.com/", id, now + chrono::Duration::seconds(600));
        let token = url.strip_prefix("https://verifyd.example.com/v1/voice-scripts/").unwrap();
        assert_eq!(verify(&keys, token, now), Ok(id));
        assert_eq!(verify(&keys, token, now + chrono::Duration::seconds(600)), Err(LinkError::Expired));
        let other = Uuid::new_v4().simple().to_string();
        let forged = format!("{other}{}", &token[32..]);
        assert_eq!(verify(&keys, &forged, now), Err(LinkError::BadSignature));
        let other_keys = CodeKeys::new(&[9u8; 32], &[2u8; 32]).unwrap();
        assert_eq!(verify(&other_keys, token, now), Err(LinkError::BadSignature));
        assert_eq!(verify(&keys, "nonsense", now), Err(LinkError::Malformed));
    }
}
