//! `ValueRule`: what a claim value must look like before it is substituted (a repository-name part,
//! an STS tag value, or anything for names that are sanitised later), and the STS tag charset and
//! length as AWS counts it.

use std::sync::LazyLock;

use regex::Regex;

use crate::domain::{MAX_REPOSITORY_NAME_LEN, is_repository_name_text};

/// The longest STS session tag value.
pub(in crate::policy) const MAX_TAG_VALUE_LEN: usize = 256;

/// STS's pattern for session tag keys and values, anchored to the whole text.
static TAG_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\A[\p{L}\p{Z}\p{N}_.:/=+\-@]*\z").expect("tag text pattern compiles")
});

/// Whether every character of `text` is one STS allows in session tag keys and values.
pub(in crate::policy) fn is_tag_text(text: &str) -> bool {
    TAG_TEXT.is_match(text)
}

/// The length of `text` as AWS counts it.
///
/// AWS documents lengths in characters without saying which; counting UTF-16 code units is
/// never less than counting code points, so a value within the limit here is within it there.
pub(in crate::policy) fn aws_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// What a claim value must look like before it is substituted into a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueRule {
    /// Substituted values must follow ECR's repository-name grammar
    /// ([`is_repository_name_text`]): no `*`, `?`, `..`, uppercase, etc. A claim can never
    /// widen a repository pattern.
    RepositoryName,
    /// Substituted values must fit STS session tag values: at most 256 chars of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`.
    TagValue,
    /// Anything; the caller sanitises (session names).
    Any,
}

impl ValueRule {
    /// Why `value` may not be substituted under this rule, if it may not.
    ///
    /// Reasons never quote the value: it comes from a token and may be hostile or huge.
    pub(super) fn check(self, value: &str) -> Result<(), &'static str> {
        match self {
            Self::RepositoryName => {
                if value.is_empty() {
                    Err("an empty value is not a repository name")
                } else if value.len() > MAX_REPOSITORY_NAME_LEN {
                    Err("longer than the 256 characters of an ECR repository name")
                } else if value.contains(['*', '?', '[', ']']) {
                    // Named apart from the general case: a wildcard is the attack to spot.
                    Err("a wildcard is not a repository name")
                } else if !is_repository_name_text(value) {
                    Err("not an ECR repository name (lowercase letters and digits, \
                         joined by single `.`, `_`, `-` or `/`)")
                } else {
                    Ok(())
                }
            }
            Self::TagValue => {
                if aws_len(value) > MAX_TAG_VALUE_LEN {
                    Err("longer than the 256 characters of an STS session tag value")
                } else if !is_tag_text(value) {
                    Err("has characters STS session tag values do not allow")
                } else {
                    Ok(())
                }
            }
            Self::Any => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_in_ecr_shape_pass() {
        let longest = "a".repeat(256);
        for value in [
            "api",
            "acme/api",
            "acme/team.x/api_v2",
            "a-b_c.d",
            "0",
            "a1/b2/c3",
            longest.as_str(),
        ] {
            assert_eq!(ValueRule::RepositoryName.check(value), Ok(()), "{value}");
        }
    }

    #[test]
    fn hostile_repository_values_are_refused() {
        let long = "a".repeat(300);
        let just_over = "a".repeat(257);
        for value in [
            "",
            "*",
            "**",
            "team/*",
            "a?b",
            "a[bc]",
            "..",
            ".",
            "a/../b",
            "../a",
            "a..b",
            "A",
            "Acme/api",
            "a b",
            " a",
            "a\nb",
            "a\n",
            "a\0b",
            "a\tb",
            "%2e%2e",
            "a%2fb",
            // Cyrillic `а` and `о`, fullwidth `ａ`, and a combining dot: not ASCII.
            "\u{0430}cme",
            "r\u{043e}ot",
            "\u{ff41}pi",
            "a\u{0307}",
            // Division slash and fraction slash look like `/`.
            "a\u{2215}b",
            "a\u{2044}b",
            // Zero-width space and right-to-left override hide in plain sight.
            "a\u{200b}b",
            "a\u{202e}b",
            long.as_str(),
            just_over.as_str(),
            "a//b",
            "a/",
            "/a",
            "/",
            "a-",
            "-a",
            "a--b",
            "a._b",
            "a\\b",
            "a:b",
            "a@sha256",
            "a,b",
            "a;b",
        ] {
            assert!(
                ValueRule::RepositoryName.check(value).is_err(),
                "{value:?} should be refused"
            );
        }
    }

    #[test]
    fn wildcards_get_their_own_reason() {
        assert_eq!(
            ValueRule::RepositoryName.check("team/*"),
            Err("a wildcard is not a repository name")
        );
    }

    #[test]
    fn tag_values_allow_letters_of_any_script_and_the_sts_punctuation() {
        let longest = "x".repeat(256);
        for value in [
            "",
            "acme",
            "é",
            "Zoë Ñúñez",
            "東京",
            "Ελλάδα",
            "v1.2.3",
            "repo:acme/api:ref:refs/heads/main",
            "a=b+c-d@e_f",
            "٣",
            "a\u{00a0}b",
            "a\u{2028}b",
            longest.as_str(),
        ] {
            assert_eq!(ValueRule::TagValue.check(value), Ok(()), "{value:?}");
        }
    }

    #[test]
    fn hostile_tag_values_are_refused() {
        let too_long = "x".repeat(257);
        // 129 astral letters: 129 code points, but 258 UTF-16 units.
        let astral = "\u{1d400}".repeat(129);
        for value in [
            too_long.as_str(),
            astral.as_str(),
            "a\nb",
            "a\rb",
            "a\tb",
            "a\0b",
            "\u{7f}",
            "\u{1b}[31m",
            "a\u{200b}b",
            "a\u{202e}b",
            "<script>alert(1)</script>",
            "a\"b",
            "a'b",
            "a,b",
            "a;b",
            "a*b",
            "a?b",
            "a\\b",
            "a%b",
            "a#b",
            "a&b",
            "a$b",
            "a!b",
            "a|b",
            "{x}",
            "😀",
        ] {
            assert!(
                ValueRule::TagValue.check(value).is_err(),
                "{value:?} should be refused"
            );
        }
    }

    #[test]
    fn any_takes_anything() {
        for value in ["", "*", "a\nb", "<script>", &"x".repeat(10_000)] {
            assert_eq!(ValueRule::Any.check(value), Ok(()));
        }
    }

    #[test]
    fn aws_length_counts_utf16_units() {
        assert_eq!(aws_len("abc"), 3);
        assert_eq!(aws_len("é"), 1);
        assert_eq!(aws_len("\u{1d400}"), 2);
    }
}
