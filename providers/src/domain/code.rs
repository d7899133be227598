use std::fmt;

use rand::RngExt;
use subtle::ConstantTimeEq;

/// How many digits a code has: 4 to 10, 7 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CodeLength(u8);

impl CodeLength {
    pub const MIN: u8 = 4;
    pub const MAX: u8 = 10;

    pub fn new(digits: u8) -> Result<Self, CodeParseError> {
        if (Self::MIN..=Self::MAX).contains(&digits) { Ok(CodeLength(digits)) } else { Err(CodeParseError::Length) }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for CodeLength {
    fn default() -> Self {
        CodeLength(7)
    }
}

/// A one-time code: only ASCII digits, 4 to 10 of them. Its `Debug` and `Display`
/// never show the digits; `expose` is the single way to read them, and each call
/// site is a place where the code leaves verifyd on purpose (the provider request)
/// or is checked.
#[derive(Clone)]
pub struct Code(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodeParseError {
    #[error("code must be 4 to 10 digits")]
    Format,
    #[error("code length must be between 4 and 10")]
    Length,
}

impl Code {
    /// Parses what a person typed. Spaces and dashes people add for readability are
    /// dropped; anything else that is not a digit is refused.
    pub fn parse(input: &str) -> Result<Self, CodeParseError> {
        let digits: String = input.chars().filter(|c| *c != ' ' && *c != '-').collect();
        let len = digits.len();
        if !(usize::from(CodeLength::MIN)..=usize::from(CodeLength::MAX)).contains(&len)
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(CodeParseError::Format);
        }
        Ok(Code(digits))
    }

    /// A fresh code from the thread-local CSPRNG (ChaCha, reseeded from the OS).
    /// `random_range` samples uniformly by rejection, so there is no modulo bias.
    pub fn generate(length: CodeLength) -> Self {
        let upper = 10u64.pow(u32::from(length.get()));
        let n: u64 = rand::rng().random_range(0..upper);
        Code(format!("{n:0width$}", width = usize::from(length.get())))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Code) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Code(<{} digits>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_have_the_asked_length_and_only_digits() {
        for len in CodeLength::MIN..=CodeLength::MAX {
            let code = Code::generate(CodeLength::new(len).unwrap());
            assert_eq!(code.len(), usize::from(len));
            assert!(code.expose().bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(Code::generate(CodeLength::default()).len(), 7);
    }

    #[test]
    fn generated_digits_are_uniform() {
        // 20 000 4-digit codes = 80 000 digits, 8 000 expected per digit value.
        // A chi-square over 10 bins with 9 dof above 27.9 has p < 0.001.
        let mut counts = [0u32; 10];
        for _ in 0..20_000 {
            for b in Code::generate(CodeLength::new(4).unwrap()).expose().bytes() {
                counts[usize::from(b - b'0')] += 1;
            }
        }
        let expected = 8_000f64;
        let chi2: f64 = counts.iter().map(|&c| (f64::from(c) - expected).powi(2) / expected).sum();
        assert!(chi2 < 27.9, "digit counts {counts:?} give chi2 {chi2}");
    }

    #[test]
    fn parse_accepts_typing_habits_and_refuses_the_rest() {
        assert_eq!(Code::parse("123 4567").unwrap().expose(), "1234567");
        assert_eq!(Code::parse("123-4567").unwrap().expose(), "1234567");
        for bad in ["", "123", "12345678901", "12a4567", "１２３４５６７"] {
            assert_eq!(Code::parse(bad).unwrap_err(), CodeParseError::Format, "{bad:?}");
        }
        assert!(CodeLength::new(3).is_err() && CodeLength::new(11).is_err());
    }

    #[test]
    fn debug_never_shows_digits() {
        let code = Code::parse("7654321").unwrap();
        assert_eq!(format!("{code:?}"), "Code(<7 digits>)");
    }

    #[test]
    fn compares_in_constant_time() {
        let a = Code::parse("1234567").unwrap();
        assert!(a.ct_eq(&Code::parse("1234567").unwrap()));
        assert!(!a.ct_eq(&Code::parse("1234568").unwrap()));
        assert!(!a.ct_eq(&Code::parse("123456").unwrap()));
    }
}
