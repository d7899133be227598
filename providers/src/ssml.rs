//! What the SSML-speaking voice providers (Sinch, Vonage) share: escaping text
//! for SSML, one reading of the code, and choosing a text-to-speech language
//! the provider supports.

use crate::domain::Locale;
use crate::provider::VoiceCall;

/// The pause between the intro and the digits of one reading.
const AFTER_INTRO: &str = r#"<break time="500ms"/>"#;
/// The pause between two readings.
pub(crate) const BETWEEN_READINGS: &str = r#"<break time="1s"/>"#;

/// Escapes text for SSML (XML) content, dropping the control characters XML
/// does not allow.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// One reading: the intro (already made safe by the caller), a short pause,
/// then the digits one by one ("1, 2, 3, 4": commas make the engine read them
/// digit by digit). An empty intro is left out.
pub(crate) fn reading(intro: &str, call: &VoiceCall) -> String {
    let intro = intro.trim();
    if intro.is_empty() { call.spoken_digits() } else { format!("{intro}{AFTER_INTRO}{}", call.spoken_digits()) }
}

/// The language tag to ask the provider for: the locale itself when the
/// provider lists it, else the provider's preferred region for the language,
/// else any region of the language it lists, else `en-US`.
pub(crate) fn pick_language(
    locale: &Locale,
    supported: &[&'static str],
    preferred: &[(&str, &'static str)],
) -> &'static str {
    if let Some(tag) = supported.iter().find(|tag| **tag == locale.as_str()) {
        return tag;
    }
    let language = locale.language();
    if let Some((_, tag)) = preferred.iter().find(|(lang, _)| *lang == language) {
        return tag;
    }
    supported
        .iter()
        .find(|tag| **tag == language || tag.strip_prefix(language).is_some_and(|rest| rest.starts_with('-')))
        .copied()
        .unwrap_or("en-US")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUPPORTED: &[&str] = &["ar", "en-GB", "en-US", "es-ES", "es-MX", "pt-BR", "pt-PT"];
    const PREFERRED: &[(&str, &str)] = &[("en", "en-US"), ("pt", "pt-BR")];

    fn pick(tag: &str) -> &'static str {
        pick_language(&Locale::parse(tag).unwrap(), SUPPORTED, PREFERRED)
    }

    #[test]
    fn listed_tags_pass_and_others_fall_back_to_a_region_then_en_us() {
        assert_eq!(pick("en-GB"), "en-GB");
        assert_eq!(pick("pt-PT"), "pt-PT");
        assert_eq!(pick("en"), "en-US");
        assert_eq!(pick("en-NZ"), "en-US");
        assert_eq!(pick("pt"), "pt-BR");
        assert_eq!(pick("es-AR"), "es-ES");
        assert_eq!(pick("ar"), "ar");
        assert_eq!(pick("ar-EG"), "ar");
        assert_eq!(pick("xx"), "en-US");
    }

    #[test]
    fn escapes_markup_and_control_characters() {
        assert_eq!(escape("Tom & <Jerry> \"1\" 'a'\u{7}"), "Tom &amp; &lt;Jerry&gt; &quot;1&quot; &apos;a&apos; ");
    }
}
