//! Authenticator apps (RFC 6238): SHA-1, 6 digits, 30-second steps, one step of
//! clock skew either way, and a step once accepted is refused again (§5.2). The
//! time is passed in, so every rule is testable without waiting.

use rand::RngExt;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// 160 bits, the length RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
const DIGITS: u8 = 6;
const STEP_SECS: u64 = 30;
const SKEW_STEPS: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TotpError {
    #[error("cannot build the authenticator secret: {0}")]
    Build(String),
}

/// A fresh secret from the CSPRNG.
pub fn new_secret() -> [u8; SECRET_BYTES] {
    rand::rng().random()
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> Result<Totp, TotpError> {
    // The otpauth label may not contain ':'; it separates issuer and account.
    let clean = |s: &str| s.replace(':', " ");
    let issuer = (!issuer.is_empty()).then(|| clean(issuer));
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_skew(u16::from(SKEW_STEPS))
        .with_step_duration(STEP_SECS)
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(issuer)
        .with_account_name(clean(account))
        .build()
        .map_err(|e| TotpError::Build(e.to_string()))
}

/// What a person needs to add the account to an authenticator app.
pub struct Enrolment {
    /// `otpauth://totp/...` for the QR code or a deep link.
    pub uri: String,
    /// The key for typing, base32 in groups of four: `ABCD EFGH …`.
    pub key_grouped: String,
    /// The QR code of `uri`, as PNG.
    pub qr_png: Vec<u8>,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment(<secret>)")
    }
}

pub fn enrolment(secret: &[u8], issuer: &str, account: &str) -> Result<Enrolment, TotpError> {
    let totp = totp(secret, issuer, account)?;
    let key = Secret::from(secret.to_vec()).to_base32();
    let key_grouped =
        key.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ");
    let qr_png = totp.to_qr_png().map_err(|e| TotpError::Build(e.to_string()))?;
    let uri = totp.to_url().map_err(|e| TotpError::Build(e.to_string()))?;
    Ok(Enrolment { uri, key_grouped, qr_png })
}

/// The time step a code matches, if it matches one within the skew and is later
/// than `last_step` (the last one accepted).
pub fn accept(secret: &[u8], code: &str, unix_time: u64, last_step: Option<i64>) -> Option<i64> {
    if code.len() != usize::from(DIGITS) || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret, "", "x").ok()?;
    let now_step = unix_time / STEP_SECS;
    let first = now_step.saturating_sub(u64::from(SKEW_STEPS));
    (first..=now_step + u64::from(SKEW_STEPS))
        .filter(|step| last_step.is_none_or(|last| i64::try_from(*step).is_ok_and(|s| s > last)))
        .find(|step| {
            let expected = totp.generate(step * STEP_SECS).to_string();
            subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), code.as_bytes()).into()
        })
        .and_then(|step| i64::try_from(step).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_763_900_000;

    fn code_at(secret: &[u8], t: u64) -> String {
        totp(secret, "", "x").unwrap().generate(t).to_string()
    }

    #[test]
    fn accepts_the_current_and_neighbouring_steps_only() {
        let s = new_secret();
        assert!(accept(&s, &code_at(&s, T), T, None).is_some());
        assert!(accept(&s, &code_at(&s, T - 30), T, None).is_some());
        assert!(accept(&s, &code_at(&s, T + 30), T, None).is_some());
        assert!(accept(&s, &code_at(&s, T - 90), T, None).is_none());
        assert!(accept(&s, "12345", T, None).is_none());
        assert!(accept(&s, "abcdef", T, None).is_none());
    }

    #[test]
    fn a_step_once_accepted_is_refused_again() {
        let s = new_secret();
        let code = code_at(&s, T);
        let step = accept(&s, &code, T, None).unwrap();
        assert_eq!(accept(&s, &code, T, Some(step)), None);
        // The next step's code still works.
        assert!(accept(&s, &code_at(&s, T + 30), T + 30, Some(step)).is_some());
    }

    #[test]
    fn enrolment_gives_uri_grouped_key_and_png() {
        let s = new_secret();
        let e = enrolment(&s, "Acme", "ada@example.com").unwrap();
        assert!(e.uri.starts_with("otpauth://totp/Acme:ada%40example.com?"), "{}", e.uri);
        assert!(e.uri.contains("issuer=Acme"));
        assert_eq!(e.key_grouped.split(' ').count(), 8, "{}", e.key_grouped);
        assert_eq!(&e.qr_png[1..4], b"PNG");
        assert!(!format!("{e:?}").contains(&e.key_grouped));
    }

    #[test]
    fn a_display_name_is_percent_encoded_as_issuer_and_label_prefix() {
        let e = enrolment(&new_secret(), "Acme Cloud: Zürich", "ada@example.com").unwrap();
        let prefix = "otpauth://totp/Acme%20Cloud%20%20Z%C3%BCrich:ada%40example.com?";
        assert!(e.uri.starts_with(prefix), "{}", e.uri);
        assert!(e.uri.contains("&issuer=Acme%20Cloud%20%20Z%C3%BCrich"), "{}", e.uri);
        let parsed = Totp::from_url(&e.uri).unwrap();
        assert_eq!(parsed.issuer(), Some("Acme Cloud  Zürich"));
    }
}
