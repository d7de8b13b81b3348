//! Text a caller searches by: what a query filter may hand to the database.

use std::fmt;

use super::InvalidValue;

/// At most this many characters: longer than any subject, issuer or rule name, short enough
/// that a filter can never be a large payload.
pub(crate) const MAX_SEARCH_TEXT_CHARS: usize = 1024;

/// A filter's value: 1 to [`MAX_SEARCH_TEXT_CHARS`] characters, none of them NUL.
///
/// Postgres refuses NUL in `text`, so a value that held one would fail the read (a 5xx)
/// instead of being refused as the caller's mistake (a 400). Every other character may stand
/// in a verified claim, so a filter may name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SearchText(String);

impl SearchText {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SearchText {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.is_empty() {
            return Err(InvalidValue("must not be empty".to_owned()));
        }
        if value.chars().count() > MAX_SEARCH_TEXT_CHARS {
            return Err(InvalidValue(format!(
                "must be at most {MAX_SEARCH_TEXT_CHARS} characters"
            )));
        }
        if value.contains('\0') {
            return Err(InvalidValue("must not contain NUL".to_owned()));
        }
        Ok(Self(value))
    }
}

impl fmt::Display for SearchText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_any_text_but_nul_within_its_length() {
        for good in ["repo:acme/api:ref:refs/heads/main", "é", "a\tb", "%00"] {
            assert_eq!(
                SearchText::try_from(good.to_owned()).unwrap().as_str(),
                good
            );
        }
        let longest = "x".repeat(MAX_SEARCH_TEXT_CHARS);
        assert!(SearchText::try_from(longest.clone()).is_ok());
        for bad in [String::new(), "a\0b".to_owned(), format!("{longest}x")] {
            assert!(SearchText::try_from(bad.clone()).is_err(), "{bad:?}");
        }
    }
}
