//! Event webhooks: every event verifyd publishes on the events exchange is
//! also POSTed to each of its tenant's enabled endpoints whose filter matches,
//! signed per Standard Webhooks 1.0 (`docs/webhooks.md`).
//!
//! * `store`: endpoints (URL, filter, sealed secrets) and deliveries. A
//!   delivery row is made by a trigger on `outbox` in the transaction that
//!   writes the event, so none is lost and none is made for an event that was
//!   rolled back.
//! * `deliverer`: the consumer of `<prefix>webhooks`. A message names one
//!   delivery; the consumer claims it only when it is the head of its lane
//!   (the pending delivery of lowest `seq` for its endpoint and verification),
//!   posts it, and records the outcome with the message for the lane's next
//!   delivery in one transaction. Retries wait in `<prefix>webhooks.retry.<n>`.
//!
//! ```text
//!   pending ──2xx──────────────▶ delivered
//!      │ ──408/429/5xx/timeout─▶ pending (retry queue n), … ──last retry──▶ dead
//!      │ ──other 4xx, 3xx──────▶ dead (receiver_refused)
//!      │ ──410─────────────────▶ dead (receiver_refused), endpoint disabled (gone)
//!      └ ──endpoint disabled───▶ skipped
//!   dead ──operator replay─────▶ pending (same webhook-id, attempts from 0)
//! ```

pub mod deliverer;
pub mod endpoint_url;
pub mod store;

pub use endpoint_url::{EndpointUrl, UrlRules};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use sha2::Sha256;
use uuid::Uuid;

use crate::outbox::contract::EventKind;

/// Bytes of a new signing secret (Standard Webhooks: 24 to 64).
const SECRET_BYTES: usize = 32;

/// An endpoint's signing secret. Shown once (`whsec_<base64>`), stored sealed;
/// never in `Debug`, logs or events.
pub struct SigningSecret {
    bytes: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

impl Drop for SigningSecret {
    fn drop(&mut self) {
        self.bytes.iter_mut().for_each(|b| *b = 0);
    }
}

impl SigningSecret {
    pub fn generate() -> SigningSecret {
        let bytes: [u8; SECRET_BYTES] = rand::rng().random();
        SigningSecret { bytes: bytes.to_vec() }
    }

    pub fn from_bytes(bytes: Vec<u8>) -> SigningSecret {
        SigningSecret { bytes }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// `whsec_` and the base64 of the key: what a receiver is given.
    pub fn serialised(&self) -> String {
        format!("whsec_{}", STANDARD.encode(&self.bytes))
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.bytes)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: the current secret's signature, then the
/// previous secret's while its overlap lasts (space separated).
pub fn signature_header(
    current: &SigningSecret,
    previous: Option<&SigningSecret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = current.sign(msg_id, timestamp, body);
    if let Some(previous) = previous {
        header.push(' ');
        header.push_str(&previous.sign(msg_id, timestamp, body));
    }
    header
}

/// The `webhook-id` of a delivery: the same on every attempt and replay.
pub fn message_id(delivery_id: Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}

/// The delivery id of a `webhook-id`, if it is one of ours.
pub fn delivery_of(message_id: &str) -> Option<Uuid> {
    Uuid::parse_str(message_id.strip_prefix("msg_")?).ok()
}

/// The most entries an event filter holds.
pub const MAX_FILTER: usize = 50;

/// Which events an endpoint receives: `*`, event names
/// (`verification.approved`) and families (`factor.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFilter(Vec<String>);

impl EventFilter {
    pub fn all() -> EventFilter {
        EventFilter(vec!["*".to_owned()])
    }

    /// Sorted, without duplicates; refused with why.
    pub fn parse(entries: &[String]) -> Result<EventFilter, String> {
        if entries.is_empty() {
            return Err("name at least one event type, or \"*\" for all".to_owned());
        }
        if entries.len() > MAX_FILTER {
            return Err(format!("at most {MAX_FILTER} entries"));
        }
        let mut out: Vec<String> = Vec::with_capacity(entries.len());
        for entry in entries {
            let known = entry == "*"
                || EventKind::ALL.iter().any(|k| k.as_str() == entry)
                || entry.strip_suffix(".*").is_some_and(|family| EventKind::ALL.iter().any(|k| k.family() == family));
            if !known {
                return Err(
                    "each entry is \"*\", an event name (\"verification.approved\") or a family (\"factor.*\") \
                     of the events listed in docs/queues.md"
                        .to_owned(),
                );
            }
            out.push(entry.clone());
        }
        out.sort();
        out.dedup();
        Ok(EventFilter(out))
    }

    /// What the database row holds (already checked).
    pub fn from_stored(entries: Vec<String>) -> EventFilter {
        EventFilter(entries)
    }

    pub fn entries(&self) -> &[String] {
        &self.0
    }

    /// The rule the `outbox` trigger applies in SQL, for tests and readers.
    pub fn matches(&self, kind: EventKind) -> bool {
        self.0.iter().any(|e| e == "*" || e == kind.as_str() || e.strip_suffix(".*") == Some(kind.family()))
    }
}

/// Every filter entry a backend may use: `*`, each family and each event.
pub fn filter_vocabulary() -> Vec<String> {
    let mut all = vec!["*".to_owned()];
    for kind in EventKind::ALL {
        let family = format!("{}.*", kind.family());
        if !all.contains(&family) {
            all.push(family);
        }
    }
    all.extend(EventKind::ALL.iter().map(|k| k.as_str().to_owned()));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_id_dot_timestamp_dot_body_as_standard_webhooks_does() {
        // The example of the Standard Webhooks reference libraries.
        let secret = SigningSecret::from_bytes(STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap());
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let other = SigningSecret::generate();
        let header = signature_header(&secret, Some(&other), "msg_x", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], other.sign("msg_x", 1, b"{}"));
        assert!(secret.serialised().starts_with("whsec_"));
        assert_eq!(format!("{secret:?}"), "SigningSecret(<redacted>)");
    }

    #[test]
    fn message_ids_round_trip() {
        let id = Uuid::new_v4();
        assert_eq!(delivery_of(&message_id(id)), Some(id));
        assert_eq!(delivery_of("evt_1"), None);
    }

    #[test]
    fn filters_take_names_families_and_star_only() {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let f = EventFilter::parse(&list(&["verification.approved", "factor.*", "factor.*"])).unwrap();
        assert_eq!(f.entries(), ["factor.*", "verification.approved"]);
        assert!(f.matches(EventKind::Approved) && f.matches(EventKind::FactorRemoved));
        assert!(!f.matches(EventKind::Created) && !f.matches(EventKind::AccountReset));
        assert!(EventFilter::all().matches(EventKind::PrefixBlocked));
        for bad in [&[][..], &["verification.*x"], &["nothing.*"], &["verification.approve"], &["**"]] {
            assert!(EventFilter::parse(&list(bad)).is_err(), "{bad:?}");
        }
        assert!(filter_vocabulary().contains(&"backup_codes.*".to_owned()));
    }
}
