//! Login tokens: random, short enough to type, without look-alike
//! characters; and finding one in what a person actually texted.

use crate::random::Random;
use rand::Rng;

/// The token alphabet: digits and capitals without 0/O and 1/I.
pub const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// Characters in a token (40 bits).
pub const LEN: usize = 8;

/// A fresh random token.
pub fn generate(rng: &Random) -> String {
    let mut rng = rng.rng();
    (0..LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Whether `s` is a token in canonical form.
pub fn is_token(s: &str) -> bool {
    s.len() == LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Full-width forms (a Chinese or Japanese keyboard's `ＬＯＧＩＮ　ＡＢ…`)
/// to ASCII, upper case.
pub fn fold(c: char) -> char {
    let c = match c {
        '\u{3000}' => ' ',
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_ascii_uppercase()
}

/// The token in an MO's text, if there is one: case, spaces, dashes and
/// full-width characters do not matter, and one of `keywords` (e.g.
/// "LOGIN") may come first. `None` when no run of characters reads as
/// exactly one token.
pub fn extract(text: &str, keywords: &[String]) -> Option<String> {
    let folded: String = text.chars().map(fold).collect();
    // The token may be typed in groups ("ABCD 2345", "ABCD-2345").
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != ':')
            .collect()
    };
    // The whole text first: a bare token may begin like a keyword ("REG…").
    let whole = squeeze(&folded);
    if is_token(&whole) {
        return Some(whole);
    }
    // Then after a keyword, longest first ("REGISTER" before "REG").
    let mut keywords: Vec<String> = keywords.iter().map(|k| k.to_ascii_uppercase()).collect();
    keywords.sort_by_key(|k| std::cmp::Reverse(k.len()));
    let rest = folded.trim();
    keywords.iter().find_map(|k| {
        let after = squeeze(rest.strip_prefix(k.as_str())?);
        is_token(&after).then_some(after)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_unambiguous() {
        let rng = Random::os();
        let a = generate(&rng);
        assert!(is_token(&a), "{a}");
        assert!(!a.contains(['0', 'O', '1', 'I']));
        assert_ne!(a, generate(&rng));
    }

    #[test]
    fn what_people_type_is_read_as_the_token() {
        let kw = vec!["LOGIN".to_string(), "REG".to_string()];
        for text in [
            "ABCD2345",
            "abcd2345",
            " login ABCD2345 ",
            "Login: abcd-2345",
            "REG abcd 2345",
            "ＬＯＧＩＮ　ＡＢＣＤ２３４５",
            "ａｂｃｄ２３４５",
        ] {
            assert_eq!(extract(text, &kw).as_deref(), Some("ABCD2345"), "{text:?}");
        }
        for text in [
            "",
            "HELLO",
            "LOGIN",
            "ABCD234",
            "ABCD23456",
            "ABCD2340",
            "LOGIN ABCD2345 please",
            "STOP",
        ] {
            assert_eq!(extract(text, &kw), None, "{text:?}");
        }
    }
}
