//! What an SMS costs: its encoding and how many segments it is sent as.
//!
//! A text whose every character is in the GSM 03.38 default alphabet (the
//! basic set, or its extension table, whose characters take an escape and so
//! two septets) goes as GSM-7: 160 septets in one segment, 153 per segment
//! once concatenated (the user data header takes the rest). Any other
//! character makes the whole message UCS-2: 70 UTF-16 units in one segment,
//! 67 per segment concatenated. A segment never splits an escape pair or a
//! surrogate pair, as handsets and providers count them.

use serde::Serialize;

/// The 128 characters of the basic set, in table order (0x1B, the escape to
/// the extension table, is not a character of its own and is left out).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
                     ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: each is sent as ESC + one septet.
const EXTENSION: &str = "\u{0C}^{}\\[~]|€";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Encoding {
    #[serde(rename = "GSM-7")]
    Gsm7,
    #[serde(rename = "UCS-2")]
    Ucs2,
}

/// What a text costs as one SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Cost {
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 units (UCS-2).
    pub length: usize,
    pub segments: usize,
}

/// Septets a character takes in GSM-7 (1 or 2), `None` outside the alphabet.
fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// How many segments units of these sizes fill: `single` in one, else
/// `per_part` each, a unit never split over two.
fn segments(units: impl Iterator<Item = usize>, single: usize, per_part: usize) -> (usize, usize) {
    let units: Vec<usize> = units.collect();
    let total: usize = units.iter().sum();
    if total <= single {
        return (total, 1);
    }
    let (mut parts, mut used) = (1, 0);
    for u in units {
        if used + u > per_part {
            parts += 1;
            used = 0;
        }
        used += u;
    }
    (total, parts)
}

pub fn cost(text: &str) -> Cost {
    let gsm: Option<Vec<usize>> = text.chars().map(septets).collect();
    match gsm {
        Some(units) => {
            let (length, segments) = segments(units.into_iter(), 160, 153);
            Cost { encoding: Encoding::Gsm7, length, segments }
        }
        None => {
            let (length, segments) = segments(text.chars().map(char::len_utf16), 70, 67);
            Cost { encoding: Encoding::Ucs2, length, segments }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_hold_what_gsm_03_38_holds() {
        assert_eq!(BASIC.chars().count(), 127, "128 positions, less the escape");
        assert_eq!(EXTENSION.chars().count(), 10);
        for c in "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà".chars() {
            assert_eq!(septets(c), Some(1), "{c}");
        }
        for c in "€[]{}\\^~|".chars() {
            assert_eq!(septets(c), Some(2), "{c}");
        }
        for c in "çáíóúâêãõ`ş😀\t".chars() {
            assert_eq!(septets(c), None, "{c:?}");
        }
    }

    #[test]
    fn gsm7_fits_160_septets_in_one_segment_then_153_each() {
        assert_eq!(cost(&"a".repeat(160)), Cost { encoding: Encoding::Gsm7, length: 160, segments: 1 });
        assert_eq!(cost(&"a".repeat(161)).segments, 2);
        assert_eq!(cost(&"a".repeat(306)).segments, 2);
        assert_eq!(cost(&"a".repeat(307)).segments, 3);
        // An extension character counts twice …
        assert_eq!(cost(&"€".repeat(80)), Cost { encoding: Encoding::Gsm7, length: 160, segments: 1 });
        assert_eq!(cost(&format!("{}€", "a".repeat(159))).segments, 2);
        // … and its escape pair is never split: 152 + 2 goes to the next segment.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(cost(&text), Cost { encoding: Encoding::Gsm7, length: 306, segments: 3 });
    }

    #[test]
    fn one_character_outside_the_alphabet_makes_it_ucs2_of_70_then_67() {
        assert_eq!(cost("Lösenord 1234567"), Cost { encoding: Encoding::Gsm7, length: 16, segments: 1 });
        assert_eq!(cost("Código 1234567").encoding, Encoding::Ucs2, "ó is not in the alphabet (ò is)");
        assert_eq!(cost("Seu código é 1234567: ã"), Cost { encoding: Encoding::Ucs2, length: 23, segments: 1 });
        assert_eq!(cost(&"ç".repeat(70)).segments, 1);
        assert_eq!(cost(&"ç".repeat(71)).segments, 2);
        assert_eq!(cost(&"ç".repeat(134)).segments, 2);
        assert_eq!(cost(&"ç".repeat(135)).segments, 3);
        // An emoji is two UTF-16 units, never split over two segments.
        assert_eq!(cost("😀").length, 2);
        let text = format!("{}😀", "ç".repeat(66));
        assert_eq!(cost(&text), Cost { encoding: Encoding::Ucs2, length: 68, segments: 1 });
        let text = format!("{}😀{}", "ç".repeat(66), "ç".repeat(3));
        assert_eq!(cost(&text), Cost { encoding: Encoding::Ucs2, length: 71, segments: 2 });
    }
}
