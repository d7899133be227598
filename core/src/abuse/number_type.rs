//! What kind of line a number is (mobile, fixed line, premium rate, …), from the
//! numbering-plan metadata the `phonenumber` crate carries, and which kinds each
//! channel refuses.

use std::fmt;

use phonenumber::Type;
use serde::{Deserialize, Serialize};
use verifyd_providers::domain::PhoneNumber;

/// The kinds of number libphonenumber's metadata tells apart, named as in
/// configuration and problem documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    FixedLine,
    Mobile,
    /// Where the plan cannot tell the two apart (NANP: US, Canada, …).
    FixedLineOrMobile,
    TollFree,
    PremiumRate,
    SharedCost,
    PersonalNumber,
    Voip,
    Pager,
    /// Universal access ("company") numbers.
    Uan,
    Emergency,
    Voicemail,
    ShortCode,
    StandardRate,
    Carrier,
    NoInternational,
    /// A valid number that matches no more specific pattern.
    Unknown,
}

impl NumberType {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberType::FixedLine => "fixed_line",
            NumberType::Mobile => "mobile",
            NumberType::FixedLineOrMobile => "fixed_line_or_mobile",
            NumberType::TollFree => "toll_free",
            NumberType::PremiumRate => "premium_rate",
            NumberType::SharedCost => "shared_cost",
            NumberType::PersonalNumber => "personal_number",
            NumberType::Voip => "voip",
            NumberType::Pager => "pager",
            NumberType::Uan => "uan",
            NumberType::Emergency => "emergency",
            NumberType::Voicemail => "voicemail",
            NumberType::ShortCode => "short_code",
            NumberType::StandardRate => "standard_rate",
            NumberType::Carrier => "carrier",
            NumberType::NoInternational => "no_international",
            NumberType::Unknown => "unknown",
        }
    }

    /// The type of a number verifyd parsed (or stored) itself. A stored number
    /// the current plan no longer parses is `Unknown`.
    pub fn of(phone: &PhoneNumber) -> NumberType {
        match phonenumber::parse(None, phone.e164()) {
            Ok(parsed) => parsed.number_type(&phonenumber::metadata::DATABASE).into(),
            Err(_) => NumberType::Unknown,
        }
    }

    /// Refused for SMS unless configured otherwise: numbers that cost the sender
    /// extra, cannot take a text, or are not one person's phone. Fixed lines are
    /// not refused: see `docs/decisions.md` (the landline fallback to voice).
    pub fn sms_refused_by_default() -> Vec<NumberType> {
        use NumberType::*;
        vec![PremiumRate, SharedCost, TollFree, Uan, Voicemail, Pager, PersonalNumber]
    }

    /// Refused for voice unless configured otherwise: numbers a call to costs
    /// extra, or that no person answers. Toll-free and voicemail lines can be
    /// called (a call to them costs the caller nothing extra).
    pub fn voice_refused_by_default() -> Vec<NumberType> {
        use NumberType::*;
        vec![PremiumRate, SharedCost, Uan, Pager]
    }

    /// Refused for WhatsApp unless configured otherwise: numbers no WhatsApp
    /// account lives on. WhatsApp itself bills by template, not by the
    /// destination's tariff, so premium and shared-cost ranges cost nothing
    /// extra, but no person reads WhatsApp on them.
    pub fn whatsapp_refused_by_default() -> Vec<NumberType> {
        use NumberType::*;
        vec![PremiumRate, SharedCost, Uan, Voicemail, Pager]
    }
}

impl fmt::Display for NumberType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Type> for NumberType {
    fn from(t: Type) -> Self {
        match t {
            Type::FixedLine => NumberType::FixedLine,
            Type::Mobile => NumberType::Mobile,
            Type::FixedLineOrMobile => NumberType::FixedLineOrMobile,
            Type::TollFree => NumberType::TollFree,
            Type::PremiumRate => NumberType::PremiumRate,
            Type::SharedCost => NumberType::SharedCost,
            Type::PersonalNumber => NumberType::PersonalNumber,
            Type::Voip => NumberType::Voip,
            Type::Pager => NumberType::Pager,
            Type::Uan => NumberType::Uan,
            Type::Emergency => NumberType::Emergency,
            Type::Voicemail => NumberType::Voicemail,
            Type::ShortCode => NumberType::ShortCode,
            Type::StandardRate => NumberType::StandardRate,
            Type::Carrier => NumberType::Carrier,
            Type::NoInternational => NumberType::NoInternational,
            Type::Unknown => NumberType::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_of(e164: &str) -> NumberType {
        let phone = PhoneNumber::parse(e164).unwrap_or_else(|e| panic!("{e164} should be valid: {e}"));
        NumberType::of(&phone)
    }

    #[test]
    fn the_metadata_tells_premium_rate_and_shared_cost_from_mobiles() {
        // Real ranges of the UK plan (Ofcom): 09 premium rate, 084/087 service
        // numbers (premium rate since 2015's unbundled tariffs), 080 freephone,
        // 07 mobile, 070 personal, 076 pagers, 055 corporate; Spain's 901 is
        // shared cost.
        assert_eq!(type_of("+449098790000"), NumberType::PremiumRate);
        assert_eq!(type_of("+448712345678"), NumberType::PremiumRate);
        assert_eq!(type_of("+448451234567"), NumberType::PremiumRate);
        assert_eq!(type_of("+34901123456"), NumberType::SharedCost);
        assert_eq!(type_of("+448001234567"), NumberType::TollFree);
        assert_eq!(type_of("+445512345678"), NumberType::Uan);
        assert_eq!(type_of("+447400123456"), NumberType::Mobile);
        assert_eq!(type_of("+447012345678"), NumberType::PersonalNumber);
        assert_eq!(type_of("+447640123456"), NumberType::Pager);
        assert_eq!(type_of("+441212345678"), NumberType::FixedLine);
        assert_eq!(type_of("+14155552671"), NumberType::FixedLineOrMobile);
        assert_eq!(type_of("+19002345678"), NumberType::PremiumRate);
    }

    #[test]
    fn names_round_trip_through_configuration() {
        for t in NumberType::sms_refused_by_default().into_iter().chain(NumberType::voice_refused_by_default()) {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(serde_json::from_str::<NumberType>(&json).unwrap(), t);
        }
    }
}
