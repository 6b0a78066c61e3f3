//! Phone numbers: E.164 validation and normalisation (national input with a
//! default region), and the country of a number for allow-lists.

use phonenumber::{Mode, PhoneNumber};

/// A valid number in E.164 form (`+447700900123`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct E164 {
    number: String,
    region: Option<String>,
}

impl E164 {
    /// `+` and digits.
    pub fn as_str(&self) -> &str {
        &self.number
    }

    /// Digits without `+`.
    pub fn digits(&self) -> &str {
        &self.number[1..]
    }

    /// ISO 3166 region of the number, when known.
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }
}

/// Why a phone number was refused (the caller's input is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// Not a phone number at all.
    #[error("{input:?} is not a phone number: {reason}")]
    Unparseable {
        /// What was given.
        input: String,
        /// Why.
        reason: String,
    },
    /// Parses but is not a valid number for its country.
    #[error(
        "{input:?} is not a valid phone number (wrong length or unassigned range for its country)"
    )]
    Invalid {
        /// What was given.
        input: String,
    },
}

/// A number with all its digits but the last two hidden, for logs and
/// answers that must not give the number away.
pub fn mask(n: &str) -> String {
    let digits = n.chars().filter(char::is_ascii_digit).count();
    let mut seen = 0;
    n.chars()
        .map(|c| {
            if c.is_ascii_digit() {
                seen += 1;
                if seen + 2 <= digits {
                    return '*';
                }
            }
            c
        })
        .collect()
}

/// Parses `input` (E.164 with `+`, or national with `default_region`) into E.164.
pub fn normalize(input: &str, default_region: &str) -> Result<E164, PhoneError> {
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Unparseable {
            input: input.into(),
            reason: "it is empty".into(),
        });
    }
    if trimmed.chars().any(|c| c.is_alphabetic()) {
        return Err(PhoneError::Unparseable {
            input: input.into(),
            reason: "it contains letters".into(),
        });
    }
    let region = default_region.parse::<phonenumber::country::Id>().ok();
    let n: PhoneNumber =
        phonenumber::parse(region, trimmed).map_err(|e| PhoneError::Unparseable {
            input: input.into(),
            reason: e.to_string(),
        })?;
    if !phonenumber::is_valid(&n) {
        return Err(PhoneError::Invalid {
            input: input.into(),
        });
    }
    let number = n.format().mode(Mode::E164).to_string();
    let region = n.country().id().map(|id| id.as_ref().to_string());
    Ok(E164 { number, region })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_all_but_the_last_two_digits() {
        assert_eq!(mask("+447400123456"), "+**********56");
        assert_eq!(mask("+44 7400 123456"), "+** **** ****56");
        assert_eq!(mask("12"), "12");
    }

    #[test]
    fn international_and_national_forms_normalise() {
        let a = normalize("+44 7400 123456", "US").unwrap();
        assert_eq!(a.as_str(), "+447400123456");
        assert_eq!(a.region(), Some("GB"));
        let b = normalize("07400 123456", "GB").unwrap();
        assert_eq!(b, a);
        let c = normalize("+86 138 0013 8000", "GB").unwrap();
        assert_eq!(c.as_str(), "+8613800138000");
        assert_eq!(c.region(), Some("CN"));
        assert_eq!(c.digits(), "8613800138000");
    }

    #[test]
    fn bad_numbers_say_why() {
        let e = normalize("hello", "GB").unwrap_err().to_string();
        assert!(e.contains("contains letters"), "{e}");
        let e = normalize("+44 12", "GB").unwrap_err().to_string();
        assert!(
            e.contains("not a valid phone number") || e.contains("not a phone number"),
            "{e}"
        );
        assert!(normalize("", "GB").is_err());
    }
}
