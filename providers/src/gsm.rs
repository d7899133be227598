//! How an SMS text will be encoded: providers size their limits by encoding
//! (GSM 03.38 7-bit, or UCS-2 as soon as one character is outside it).

/// GSM 03.38 basic character set.
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// GSM 03.38 extension table (sent as an escape plus one septet).
const EXTENSION: &str = "^{}\\[~]|€\u{c}";

/// True when every character of `text` has a GSM 7-bit encoding.
pub(crate) fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| BASIC.contains(c) || EXTENSION.contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_gsm_from_unicode() {
        assert!(is_gsm7("Your code is 123456. [verifyd] €5"));
        assert!(is_gsm7("Ihr Code: 123456. Schöne Grüße"));
        assert!(!is_gsm7("Código 123456 válido"));
        assert!(!is_gsm7("認証コード 123456"));
    }
}
