//! Escaping for the call scripts verifyd writes itself (TwiML, TeXML, Plivo
//! XML): the intro is operator-configured text and must not break the markup.

use crate::provider::VoiceCall;

/// Escapes text for XML content and attribute values, dropping the control
/// characters XML 1.0 does not allow.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The call script TwiML, TeXML and Plivo XML share: `repeat` readings (at
/// least one), each the intro (left out when blank) then the digits one by
/// one, separated by `pause`. `say` opens a spoken element with its voice and
/// language attributes (`<Say language="fr-FR">`); `end` closes it.
pub(crate) fn call_script(call: &VoiceCall, say: &str, end: &str, pause: &str) -> String {
    let intro = escape(call.intro.trim());
    let mut reading = String::new();
    if !intro.is_empty() {
        reading.push_str(&format!("{say}{intro}{end}"));
    }
    reading.push_str(&format!("{say}{}{end}", call.spoken_digits()));
    let readings = vec![reading; usize::from(call.repeat.max(1))];
    format!(r#"<?xml version="1.0" encoding="UTF-8"?><Response>{}</Response>"#, readings.join(pause))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_drops_control_characters() {
        assert_eq!(
            escape("Tom & Jerry's <b>\"code\"</b>\u{7}"),
            "Tom &amp; Jerry&apos;s &lt;b&gt;&quot;code&quot;&lt;/b&gt;"
        );
        assert_eq!(escape("line\nbreak"), "line\nbreak");
    }
}
