//! What a key may call. Every authenticated route needs exactly one scope:
//!
//! - `verify`: verifications, login, step-up, challenges and proofs — what a
//!   backend does on each sign-in or phone check;
//! - `enrol`: adding factors (authenticator apps, their confirmation), backup
//!   and recovery codes, and reading an account's factors;
//! - `admin`: removing a factor, changing the default, activating, resets,
//!   organisation policy, audit trails, and managing API keys;
//! - `ops`: operator endpoints (`/v1/ops/…`), which show the whole deployment
//!   rather than one tenant.

use std::fmt;

use serde::{Serialize, Serializer};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = KeyScope)]
pub enum Scope {
    Verify,
    Enrol,
    Admin,
    Ops,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown scope {0:?}: use verify, enrol, admin or ops")]
pub struct UnknownScope(pub String);

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Verify, Scope::Enrol, Scope::Admin, Scope::Ops];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Verify => "verify",
            Scope::Enrol => "enrol",
            Scope::Admin => "admin",
            Scope::Ops => "ops",
        }
    }

    pub fn parse(input: &str) -> Result<Scope, UnknownScope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == input.trim()).ok_or_else(|| UnknownScope(input.to_owned()))
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes; serialised as a list in the order of `Scope::ALL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

impl Scopes {
    pub fn all() -> Scopes {
        Scopes::of(&Scope::ALL)
    }

    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Scope names, as a request or a row gives them. Repeats are allowed;
    /// an unknown name is refused.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Scopes, UnknownScope> {
        let parsed = names.iter().map(|n| Scope::parse(n.as_ref())).collect::<Result<Vec<_>, _>>()?;
        Ok(Scopes::of(&parsed))
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The first scope of `other` this set lacks.
    pub fn missing_from(self, other: Scopes) -> Option<Scope> {
        other.iter().find(|s| !self.contains(*s))
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    pub fn names(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_refuses_unknown_ones() {
        let scopes = Scopes::parse(&["enrol", "verify", "verify"]).unwrap();
        assert_eq!(scopes, Scopes::of(&[Scope::Verify, Scope::Enrol]));
        assert_eq!(scopes.to_string(), "verify,enrol");
        assert_eq!(Scopes::parse(&["verify", "root"]), Err(UnknownScope("root".into())));
        assert!(Scopes::parse::<&str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn names_what_is_missing() {
        let held = Scopes::of(&[Scope::Verify, Scope::Admin]);
        assert_eq!(held.missing_from(Scopes::of(&[Scope::Verify])), None);
        assert_eq!(held.missing_from(Scopes::of(&[Scope::Admin, Scope::Ops])), Some(Scope::Ops));
        assert_eq!(Scopes::all().missing_from(Scopes::all()), None);
    }

    #[test]
    fn serialises_as_a_list() {
        let json = serde_json::to_string(&Scopes::of(&[Scope::Ops, Scope::Verify])).unwrap();
        assert_eq!(json, r#"["verify","ops"]"#);
    }
}
