use std::fmt;
use std::str::FromStr;

use phonenumber::Mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number in E.164 form (`+` and up to 15 digits), checked against the
/// numbering plan by the `phonenumber` crate. Only `parse` builds one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneParseError {
    #[error("phone number must be in E.164 form, starting with '+' and the country code")]
    NotE164,
    #[error("phone number is not a valid number for its country")]
    Invalid,
}

impl PhoneNumber {
    pub fn parse(input: &str) -> Result<Self, PhoneParseError> {
        let digits = input.strip_prefix('+').ok_or(PhoneParseError::NotE164)?;
        if digits.is_empty()
            || digits.len() > 15
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(PhoneParseError::NotE164);
        }
        let parsed = phonenumber::parse(None, input).map_err(|_| PhoneParseError::Invalid)?;
        if !phonenumber::is_valid(&parsed) {
            return Err(PhoneParseError::Invalid);
        }
        let e164 = parsed.format().mode(Mode::E164).to_string();
        let country = parsed.country().id().map(|id| id.as_ref().to_owned());
        Ok(PhoneNumber { e164, country })
    }

    /// Rebuilds a number verifyd parsed and stored itself. Only its shape is
    /// checked: a number that was valid when accepted stays readable after a
    /// numbering-plan update (which must not strand stored verifications).
    pub fn from_stored(e164: &str) -> Result<Self, PhoneParseError> {
        let digits = e164.strip_prefix('+').ok_or(PhoneParseError::NotE164)?;
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneParseError::NotE164);
        }
        let country =
            phonenumber::parse(None, e164).ok().and_then(|p| p.country().id().map(|id| id.as_ref().to_owned()));
        Ok(PhoneNumber { e164: e164.to_owned(), country })
    }

    /// `+14155550100`
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// Digits without the leading `+` (the form Vonage and some others want).
    pub fn digits(&self) -> &str {
        &self.e164[1..]
    }

    /// ISO 3166-1 alpha-2 region of the number, when the numbering plan tells it.
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }

    /// The number with all but the last two digits hidden: for logs and spans.
    pub fn masked(&self) -> String {
        let keep = 2.min(self.digits().len());
        let hidden = self.digits().len() - keep;
        format!("+{}{}", "*".repeat(hidden), &self.e164[self.e164.len() - keep..])
    }
}

/// Debug shows the masked form so a `{:?}` in a log line never carries the number.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.e164)
    }
}

impl FromStr for PhoneNumber {
    type Err = PhoneParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PhoneNumber::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.e164)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        PhoneNumber::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_numbers_in_e164() {
        let n = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(n.e164(), "+14155552671");
        assert_eq!(n.digits(), "14155552671");
        assert_eq!(n.country(), Some("US"));
        let uk = PhoneNumber::parse("+447400123456").unwrap();
        assert_eq!(uk.e164(), "+447400123456");
        assert_eq!(uk.country(), Some("GB"));
    }

    #[test]
    fn rejects_what_is_not_e164() {
        for bad in [
            "",
            "+",
            "4155552671",
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+0123456",
            "+1415555267100000",
            "tel:+14155552671",
            " +447400123456",
            "+447400123456 ",
        ] {
            assert_eq!(PhoneNumber::parse(bad), Err(PhoneParseError::NotE164), "{bad:?}");
        }
    }

    #[test]
    fn rejects_numbers_outside_the_numbering_plan() {
        assert_eq!(PhoneNumber::parse("+1555"), Err(PhoneParseError::Invalid));
        assert_eq!(PhoneNumber::parse("+999123456789"), Err(PhoneParseError::Invalid));
    }

    #[test]
    fn stored_numbers_are_read_back_without_the_numbering_plan() {
        // +1555 is not a valid number today, but if it had been stored it reads back.
        assert_eq!(PhoneNumber::from_stored("+1555").unwrap().e164(), "+1555");
        assert_eq!(PhoneNumber::from_stored("+14155552671").unwrap().country(), Some("US"));
        assert!(PhoneNumber::from_stored("14155552671").is_err());
        assert!(PhoneNumber::from_stored("+1 415").is_err());
    }

    #[test]
    fn masks_for_logs() {
        let n = PhoneNumber::parse("+14155552671").unwrap();
        assert_eq!(n.masked(), "+*********71");
        assert!(!format!("{n:?}").contains("4155552671"));
    }
}
