//! What every HTTP provider client shares: the client itself, the `timeout_ms`
//! setting, turning transport failures into provider errors, and keeping codes
//! out of error reasons.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Deserializer};

use crate::provider::{PermanentKind, ProviderError};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// `timeout_ms` in configuration files: an integer number of milliseconds.
pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

/// A client with the provider's timeout that never follows redirects: provider
/// APIs do not redirect, and following one would resend the form (code
/// included) somewhere else.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build()
}

/// No answer from the provider: the request may not have been sent, so try
/// again (elsewhere) — unless the request could not even be built.
pub(crate) fn transport_error(provider: &str, error: reqwest::Error) -> ProviderError {
    let error = error.without_url();
    if error.is_builder() {
        let reason = format!("cannot build the request (check base_url): {}", chain(&error));
        return ProviderError::permanent(provider, PermanentKind::Configuration, reason, None);
    }
    let what = if error.is_timeout() {
        "request timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    ProviderError::retryable(provider, format!("{what}: {}", chain(&error)), None, None)
}

/// What a provider answered to a request that creates a message or a call.
pub(crate) enum Answer {
    /// 2xx: the provider took it. Sending again could deliver the code twice,
    /// so this is a success whatever happens to the body (`None`: unreadable).
    Accepted { status: reqwest::StatusCode, body: Option<Vec<u8>> },
    /// Anything else: the status, the provider's `Retry-After` and the body to classify.
    Refused { status: reqwest::StatusCode, retry_after: Option<Duration>, body: Vec<u8> },
}

/// Sends a create request and reads the answer the way every provider needs:
/// no answer is a transport error (retryable), a 2xx is accepted even when its
/// body cannot be read, and a refusal comes with its body.
pub(crate) async fn send(provider: &str, request: reqwest::RequestBuilder) -> Result<Answer, ProviderError> {
    let response = request.send().await.map_err(|e| transport_error(provider, e))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map(|bytes| bytes.to_vec());
    if status.is_success() {
        let body = body
            .inspect_err(|error| {
                tracing::warn!(provider, %status, timeout = error.is_timeout(), "accepted, but the answer could not be read");
            })
            .ok();
        return Ok(Answer::Accepted { status, body });
    }
    let body = body.map_err(|e| transport_error(provider, e))?;
    Ok(Answer::Refused { status, retry_after, body })
}

/// The error and its sources, in words (an HTTP client error's own text says
/// little: "error sending request"; the cause says why). Strip the URL first
/// (`without_url`) where it may carry a token.
pub fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `Retry-After` in whole seconds, as providers send it when they throttle; the
/// HTTP-date form is ignored (no provider we speak uses it).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Replaces every digit (ASCII or not) with `*` and every control character
/// (newlines included: the reason reaches log lines) with a space, and trims.
pub(crate) fn mask_digits(text: &str) -> String {
    let masked: String = text
        .chars()
        .map(|c| match c {
            c if c.is_numeric() => '*',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    masked.trim().to_owned()
}

/// The first `max` characters of `text`, with `…` when some were cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A provider's error text, safe to keep: the message it may quote replaced,
/// every digit masked (a code never passes), at most `max` characters.
pub(crate) fn safe_text(text: &str, secret: &str, max: usize) -> String {
    let text = if secret.is_empty() { text.to_owned() } else { text.replace(secret, "<redacted>") };
    truncate(&mask_digits(&text), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_text_loses_the_message_it_quotes_and_every_digit() {
        assert_eq!(safe_text("Invalid Message: code 8302947", "code 8302947", 200), "Invalid Message: <redacted>");
        assert_eq!(safe_text("Bad number 447911123456", "", 200), "Bad number ************");
        assert_eq!(safe_text("abcdef", "", 3), "abc…");
    }

    #[test]
    fn retry_after_reads_seconds_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }
}
