//! A signed, generic webhook: verifyd POSTs each SMS and each call as JSON to an
//! operator's own gateway, which delivers it however it likes. This is how an
//! SMS/voice provider verifyd has no client for gets plugged in.
//!
//! # The request
//!
//! `POST <url>` with `Content-Type: application/json` and one of these bodies
//! (`id` is verifyd's reference of the delivery attempt, unique per attempt:
//! receivers can use it to drop a duplicate):
//!
//! ```json
//! {"id":"att_1","channel":"sms","to":"+14155552671",
//!  "text":"Your code is 8302947","valid_for_secs":600,"sent_at":"2026-03-02T10:00:00Z"}
//!
//! {"id":"att_2","channel":"voice","to":"+14155552671","locale":"en",
//!  "intro":"Your code is","code":"8302947","spoken":"8, 3, 0, 2, 9, 4, 7","repeat":2,
//!  "sent_at":"2026-03-02T10:00:00Z"}
//! ```
//!
//! - `text`: the full SMS to deliver as is; it should not be delivered after
//!   `sent_at + valid_for_secs` (the code has expired by then).
//! - `locale`: a BCP 47 tag (`en`, `pt-BR`) for the text-to-speech voice; map it
//!   to your engine's voices and fall back to `en-US`.
//! - Read `intro`, then `spoken` (the digits one by one: commas make TTS engines
//!   pause between them), `repeat` times (at least 1) with a short pause
//!   between readings. `code` is the same digits, for gateways that build their
//!   own script.
//! - `sent_at`: RFC 3339, UTC, whole seconds: the same instant as the timestamp
//!   header.
//!
//! # The signature
//!
//! Every request carries two headers:
//!
//! - `X-Verifyd-Timestamp: <unix seconds>` (decimal digits only), and
//! - `X-Verifyd-Signature: v1=<hex>`, where `<hex>` is the lowercase hex of
//!   HMAC-SHA256 keyed with the shared secret (its bytes as configured, UTF-8)
//!   over the ASCII timestamp exactly as in the header, a `.`, and the raw request
//!   body bytes exactly as received: `HMAC-SHA256(secret, "1772445600.{\"id\":…}")`.
//!
//! A receiver recomputes the HMAC over the *raw* body (before any JSON parsing),
//! compares it in constant time, and refuses a timestamp more than 5 minutes
//! from its own clock, so a captured request cannot be replayed later. The
//! header may hold several comma-separated `scheme=value` entries: a receiver
//! accepts the request when any `v1` entry matches and ignores other schemes
//! (room for a future `v2` or for a secret rotation). [`verify_signature`] does
//! all of this for Rust receivers. This is the scheme of Stripe's
//! `Stripe-Signature` (`"{t}.{payload}"`, `v1`, 300 s tolerance,
//! <https://docs.stripe.com/webhooks#verify-manually>) with the timestamp in its
//! own header like Slack's `X-Slack-Request-Timestamp` and a `v…=` hex prefix
//! like `X-Slack-Signature`
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>).
//!
//! # The answer
//!
//! - Any `2xx`: accepted. A JSON body `{"id":"…"}` gives the receiver's message
//!   id (recorded by verifyd); without one, verifyd's `id` is used.
//! - `429`, `408`, `5xx`, a timeout or a connection failure: verifyd tries again
//!   later or on another provider, honouring `Retry-After` (seconds).
//! - `401`/`403`: the signature or the secret is wrong: an operator must act.
//! - Any other `4xx`: a permanent refusal of this message, described by
//!   `{"error":"<code>","message":"<free text>"}` where `<code>` is one of
//!   `invalid_number` (no such number), `region_not_allowed` (the destination
//!   country is not enabled on the gateway), `opted_out` (the recipient said
//!   STOP / is blocked), `channel_not_supported` (landline for SMS, no voice for
//!   this number: verifyd may try the other channel) or `rejected` (anything
//!   else; also what an unknown code or a missing body means). With 401/403,
//!   send `"error":"unauthorized"`: the status decides.
//!   `message` must not quote the SMS text or the code (verifyd masks digits
//!   in it anyway).
//!
//! # In this folder
//!
//! `sender.rs` is the provider verifyd sends through; `signature.rs` signs its
//! requests and is the receiver's kit ([`verify_signature`]).

mod sender;
mod signature;

use std::time::Duration;

pub use crate::http::DEFAULT_TIMEOUT;
pub use sender::{Webhook, WebhookConfig, WebhookConfigError};
pub use signature::{SignatureError, sign, verify_signature};

/// The header with the request's unix time in seconds.
pub const TIMESTAMP_HEADER: &str = "X-Verifyd-Timestamp";
/// The header with `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Verifyd-Signature";
/// The signature scheme verifyd writes and [`verify_signature`] checks.
pub const SIGNATURE_SCHEME: &str = "v1";
/// A shorter secret could be guessed offline from one signed request.
pub const MIN_SECRET_BYTES: usize = 32;
/// How far from the receiver's clock a timestamp may be (Stripe's default).
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
