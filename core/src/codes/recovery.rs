//! The recovery code: one per account, for when every factor is lost. 16
//! characters of Crockford base32 (no I, L, O or U), 80 bits from the CSPRNG,
//! shown in groups of four: `7K2M-Q9XD-3HPA-TW5E`.

use std::fmt;

use rand::RngExt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const LENGTH: usize = 16;

#[derive(Clone)]
pub struct RecoveryCode(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a recovery code is 16 letters and digits, like 7K2M-Q9XD-3HPA-TW5E")]
pub struct RecoveryCodeError;

impl RecoveryCode {
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        // 32 symbols: an index below 32 from a uniform byte range has no bias.
        RecoveryCode((0..LENGTH).map(|_| char::from(ALPHABET[rng.random_range(0..32usize)])).collect())
    }

    /// Accepts what a person types: any case, dashes and spaces, and the look-alikes
    /// Crockford maps (O → 0, I and L → 1).
    pub fn parse(input: &str) -> Result<Self, RecoveryCodeError> {
        let normalised: String = input
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            })
            .collect();
        if normalised.len() != LENGTH || !normalised.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(RecoveryCodeError);
        }
        Ok(RecoveryCode(normalised))
    }

    /// The canonical form, the one that is MAC'd.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `XXXX-XXXX-XXXX-XXXX`, for showing once.
    pub fn grouped(&self) -> String {
        self.0.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join("-")
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(<hidden>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_what_people_type() {
        let code = RecoveryCode::generate();
        assert_eq!(code.expose().len(), 16);
        let typed = code.grouped().to_lowercase();
        assert_eq!(RecoveryCode::parse(&typed).unwrap().expose(), code.expose());
        assert_eq!(RecoveryCode::parse("oooo-iiii-llll-0000").unwrap().expose(), "0000111111110000");
        assert!(RecoveryCode::parse("short").is_err());
        assert!(RecoveryCode::parse("UUUU-UUUU-UUUU-UUUU").is_err());
        assert_eq!(format!("{code:?}"), "RecoveryCode(<hidden>)");
    }
}
