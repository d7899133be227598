use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A BCP 47 language tag of the simple `ll` or `ll-RR` form (`en`, `pt-BR`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Locale(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("locale must look like \"en\" or \"pt-BR\"")]
pub struct LocaleParseError;

impl Locale {
    pub fn parse(input: &str) -> Result<Self, LocaleParseError> {
        let mut parts = input.split('-');
        let lang = parts.next().unwrap_or_default();
        let region = parts.next();
        if parts.next().is_some() || lang.len() != 2 || !lang.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(LocaleParseError);
        }
        let mut tag = lang.to_ascii_lowercase();
        if let Some(region) = region {
            if region.len() != 2 || !region.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(LocaleParseError);
            }
            tag.push('-');
            tag.push_str(&region.to_ascii_uppercase());
        }
        Ok(Locale(tag))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-letter language part.
    pub fn language(&self) -> &str {
        &self.0[..2]
    }
}

impl Default for Locale {
    fn default() -> Self {
        Locale("en".to_owned())
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Locale {
    type Err = LocaleParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Locale::parse(s)
    }
}

impl Serialize for Locale {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Locale {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Locale::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_rejects_junk() {
        assert_eq!(Locale::parse("pt-br").unwrap().as_str(), "pt-BR");
        assert_eq!(Locale::parse("EN").unwrap().language(), "en");
        for bad in ["", "eng", "e", "en-", "en-USA", "en-US-x", "1a"] {
            assert!(Locale::parse(bad).is_err(), "{bad:?}");
        }
    }
}
