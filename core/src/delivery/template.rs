//! A tenant's brand and texts: the display name (the TOTP issuer, the app
//! named in texts and calls) and its SMS and voice templates.
//!
//! A template is data, never code: plain text in which `{code}`, `{app}` and
//! `{expires_in}` are replaced, once, by their values; `{{` and `}}` write a
//! brace. It is parsed into parts when saved and when used, so a value (a
//! display name holding `{code}`, say) is never read as a placeholder.

use verifyd_providers::domain::{Channel, Locale};

/// A display name: 1 to 64 characters, none a control character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

pub const DISPLAY_NAME_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    #[error("must not be empty or only white space")]
    Empty,
    #[error("must be at most {DISPLAY_NAME_MAX} characters")]
    TooLong,
    #[error("must not contain control characters (new lines, tabs, …)")]
    Control,
}

impl DisplayName {
    /// Surrounding white space is dropped.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if name.chars().count() > DISPLAY_NAME_MAX {
            return Err(DisplayNameError::TooLong);
        }
        if name.chars().any(char::is_control) {
            return Err(DisplayNameError::Control);
        }
        Ok(DisplayName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest SMS template, in characters (Twilio takes a body of 1600).
pub const SMS_MAX_CHARS: usize = 1000;
/// Longest voice template (it is read twice, inside a 4000-character TwiML).
pub const VOICE_MAX_CHARS: usize = 500;
/// Longest email template: the plain-text body (the HTML part is made from it).
pub const EMAIL_MAX_CHARS: usize = 2000;
/// The most SMS segments a template's longest text may take.
pub const MAX_SEGMENTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// The code's digits.
    Code,
    /// The tenant's display name, else `verification.app_name`.
    App,
    /// The time the code has left, in the text's language ("10 minutes").
    ExpiresIn,
}

impl Placeholder {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "code" => Some(Placeholder::Code),
            "app" => Some(Placeholder::App),
            "expires_in" => Some(Placeholder::ExpiresIn),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Slot(Placeholder),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must not be empty or only white space")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters (an SMS or an email may hold new lines)")]
    Control,
    #[error(
        "holds an unknown placeholder `{{{0}}}`; the placeholders are {{code}}, {{app}} and {{expires_in}} (write `{{{{` or `}}}}` for a brace)"
    )]
    UnknownPlaceholder(String),
    #[error("has a `{{` that opens no placeholder; write `{{{{` for a brace")]
    Unclosed,
    #[error("has a `}}` that closes no placeholder; write `}}}}` for a brace")]
    StrayClose,
    #[error("must hold the placeholder {{code}}")]
    MissingCode,
    #[error("must end with {{code}}, once: a call reads the text, then the digits one by one, twice")]
    VoiceCodeNotLast,
    #[error("cannot say {{expires_in}} in `{0}`: verifyd says durations in en, es, fr, de, pt and ja")]
    NoDurationWords(String),
    #[error(
        "WhatsApp sends an approved authentication template whose text WhatsApp presets: choose it in the provider's configuration"
    )]
    WhatsappPreset,
    #[error("its longest text takes {0} SMS segments; at most {MAX_SEGMENTS} are allowed")]
    TooManySegments(usize),
}

/// The values a template is filled with.
pub struct Values<'a> {
    pub code: &'a str,
    pub app: &'a str,
    pub expires_in: &'a str,
}

/// A parsed template (a tenant's, or a built-in text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

fn parts(text: &str) -> Result<Vec<Part>, TemplateError> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err(TemplateError::StrayClose),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => return Err(TemplateError::Unclosed),
                        Some(c) => name.push(c),
                    }
                }
                let slot = Placeholder::from_name(&name)
                    .ok_or_else(|| TemplateError::UnknownPlaceholder(name.chars().take(32).collect()))?;
                if !literal.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut literal)));
                }
                parts.push(Part::Slot(slot));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

impl Template {
    /// A tenant's text for `channel` in `locale`, checked as a send needs it.
    /// `knows_durations`: whether verifyd can say `{expires_in}` in the
    /// locale's language. What it costs as an SMS is checked apart
    /// (`render::sms_cost`), since it depends on the display name.
    pub fn parse(
        text: &str,
        channel: Channel,
        locale: &Locale,
        knows_durations: bool,
    ) -> Result<Template, TemplateError> {
        if text.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let max = match channel {
            Channel::Sms => SMS_MAX_CHARS,
            Channel::Voice => VOICE_MAX_CHARS,
            Channel::Email => EMAIL_MAX_CHARS,
            Channel::Whatsapp => return Err(TemplateError::WhatsappPreset),
        };
        if text.chars().count() > max {
            return Err(TemplateError::TooLong(max));
        }
        let newline_ok = matches!(channel, Channel::Sms | Channel::Email);
        if text.chars().any(|c| c.is_control() && !(newline_ok && c == '\n')) {
            return Err(TemplateError::Control);
        }
        let parts = parts(text)?;
        let codes = parts.iter().filter(|p| **p == Part::Slot(Placeholder::Code)).count();
        if codes == 0 {
            return Err(TemplateError::MissingCode);
        }
        if channel == Channel::Voice {
            let last_code = parts.iter().rposition(|p| *p == Part::Slot(Placeholder::Code));
            let after_is_blank = last_code.is_some_and(|i| {
                parts[i + 1..].iter().all(|p| matches!(p, Part::Text(t) if t.chars().all(trailing_mark)))
            });
            if codes != 1 || !after_is_blank {
                return Err(TemplateError::VoiceCodeNotLast);
            }
        }
        if !knows_durations && parts.contains(&Part::Slot(Placeholder::ExpiresIn)) {
            return Err(TemplateError::NoDurationWords(locale.language().to_owned()));
        }
        Ok(Template { source: text.to_owned(), parts })
    }

    /// A built-in text (a constant of this crate, tested to parse).
    pub(crate) fn built_in(text: &'static str) -> Template {
        let parts = parts(text).unwrap_or_else(|_| vec![Part::Text(text.to_owned())]);
        Template { source: text.to_owned(), parts }
    }

    /// A text without placeholders (to show a stored text that no longer parses).
    pub fn literal(text: &str) -> Template {
        Template { source: text.to_owned(), parts: vec![Part::Text(text.to_owned())] }
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.parts.contains(&Part::Slot(placeholder))
    }

    fn fill(parts: &[Part], v: &Values<'_>) -> String {
        let mut out = String::new();
        for part in parts {
            out.push_str(match part {
                Part::Text(t) => t,
                Part::Slot(Placeholder::Code) => v.code,
                Part::Slot(Placeholder::App) => v.app,
                Part::Slot(Placeholder::ExpiresIn) => v.expires_in,
            });
        }
        out
    }

    /// The whole text (an SMS).
    pub fn render(&self, v: &Values<'_>) -> String {
        Self::fill(&self.parts, v)
    }

    /// What a call reads before the digits: the text before `{code}`.
    pub fn intro(&self, v: &Values<'_>) -> String {
        let end = self.parts.iter().position(|p| *p == Part::Slot(Placeholder::Code)).unwrap_or(self.parts.len());
        Self::fill(&self.parts[..end], v).trim_end().to_owned()
    }
}

/// What may follow the code in a voice text (and is not read).
fn trailing_mark(c: char) -> bool {
    c.is_whitespace() || ".!。！".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(text: &str) -> Result<Template, TemplateError> {
        Template::parse(text, Channel::Sms, &Locale::default(), true)
    }

    fn voice(text: &str) -> Result<Template, TemplateError> {
        Template::parse(text, Channel::Voice, &Locale::default(), true)
    }

    const V: Values<'static> = Values { code: "1234567", app: "Acme {code}", expires_in: "10 minutes" };

    #[test]
    fn placeholders_are_replaced_once_and_values_are_never_read_as_placeholders() {
        let t = sms("{app}: {code} ({expires_in}). {{code}} is literal.").unwrap();
        assert_eq!(t.render(&V), "Acme {code}: 1234567 (10 minutes). {code} is literal.");
        assert_eq!(sms("@acme.example #{code}\nYour code: {code}").unwrap().render(&V).matches("1234567").count(), 2);
    }

    #[test]
    fn a_template_is_refused_with_the_reason() {
        assert_eq!(sms("Your code"), Err(TemplateError::MissingCode));
        assert_eq!(sms("{{code}}"), Err(TemplateError::MissingCode), "a literal is not the placeholder");
        assert_eq!(sms("{code} {name}"), Err(TemplateError::UnknownPlaceholder("name".into())));
        assert_eq!(sms("{Code}"), Err(TemplateError::UnknownPlaceholder("Code".into())));
        assert_eq!(sms("{code} {app"), Err(TemplateError::Unclosed));
        assert_eq!(sms("{code} }"), Err(TemplateError::StrayClose));
        assert_eq!(sms("   "), Err(TemplateError::Empty));
        assert_eq!(sms("{code}\tx"), Err(TemplateError::Control));
        assert!(sms("{code}\nx").is_ok(), "an SMS may hold a new line");
        assert_eq!(sms(&format!("{{code}}{}", "x".repeat(SMS_MAX_CHARS))), Err(TemplateError::TooLong(SMS_MAX_CHARS)));
        let it = Locale::parse("it").unwrap();
        assert_eq!(
            Template::parse("{code} {expires_in}", Channel::Sms, &it, false),
            Err(TemplateError::NoDurationWords("it".into()))
        );
        assert!(Template::parse("{code}", Channel::Sms, &it, false).is_ok());
        let message = TemplateError::UnknownPlaceholder("name".into()).to_string();
        assert!(message.contains("`{name}`") && message.contains("{code}, {app} and {expires_in}"), "{message}");
    }

    #[test]
    fn a_call_reads_the_text_before_the_code() {
        let t = voice("This is {app}. Your code is {code}.").unwrap();
        assert_eq!(t.intro(&V), "This is Acme {code}. Your code is");
        assert_eq!(voice("{code}, then more"), Err(TemplateError::VoiceCodeNotLast));
        assert_eq!(voice("{code} {code}"), Err(TemplateError::VoiceCodeNotLast));
        assert_eq!(voice("Your code\nis {code}"), Err(TemplateError::Control));
    }

    #[test]
    fn a_display_name_is_unicode_bounded_and_printable() {
        assert_eq!(DisplayName::parse("  Acme Cloud ").unwrap().as_str(), "Acme Cloud");
        assert!(DisplayName::parse("Ünïcödé 雲").is_ok());
        assert_eq!(DisplayName::parse(" "), Err(DisplayNameError::Empty));
        assert_eq!(DisplayName::parse(&"x".repeat(65)), Err(DisplayNameError::TooLong));
        assert!(DisplayName::parse(&"é".repeat(64)).is_ok(), "characters, not bytes");
        assert_eq!(DisplayName::parse("Acme\nCloud"), Err(DisplayNameError::Control));
    }
}
