//! ECR repository names and patterns: ECR's grammar, `*` wildcards, and
//! `RepositoryPattern::covers`, the check that keeps a narrowed pattern inside the one it narrows.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use self::glob::glob_matches;
use super::InvalidValue;

mod glob;

/// ECR's grammar for repository names, whole text: `/`-separated components of `word`
/// characters, joined inside a component by single `.`, `_` or `-`.
fn grammar(word: &str) -> Regex {
    let component = format!("{word}+(?:[._-]{word}+)*");
    Regex::new(&format!(r"\A(?:{component}/)*{component}\z")).expect("a valid regex")
}

/// Names: lowercase letters and digits.
static NAME: LazyLock<Regex> = LazyLock::new(|| grammar("[a-z0-9]"));

/// The same grammar with `*` allowed wherever a letter or digit is. Separators stay literal,
/// so a pattern cannot start or end with one or hold two in a row (`//`, `..`, `/.`), yet
/// `*`, `team-a/*`, `team-*/api` and `*/api` are all fine.
static PATTERN: LazyLock<Regex> = LazyLock::new(|| grammar("[a-z0-9*]"));

/// The longest ECR repository name.
pub(crate) const MAX_REPOSITORY_NAME_LEN: usize = 256;

/// Whether `s` follows ECR's repository-name grammar, at any length and without wildcards.
///
/// Claim values are held to it before they are filled into a repository template, so a
/// claim cannot widen the template with `*` or climb out of it with `..` or `/`. Such a part
/// of a name, as in `team-{n}/*`, may be a single character; [`is_repository_name`] holds a
/// whole name to ECR's length limits too.
pub(crate) fn is_repository_name_text(s: &str) -> bool {
    NAME.is_match(s)
}

/// Whether `s` is an ECR repository name: 2 to 256 characters of ECR's grammar, no wildcard.
pub(crate) fn is_repository_name(s: &str) -> bool {
    (2..=MAX_REPOSITORY_NAME_LEN).contains(&s.len()) && is_repository_name_text(s)
}

/// An ECR repository name, or a pattern of names in which `*` matches any sequence of
/// characters (`/` included), as it appears at the end of `arn:…:repository/<pattern>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RepositoryPattern(String);

impl RepositoryPattern {
    /// The pattern as written, ready for an ARN.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern holds a `*`, i.e. may match more than one repository.
    pub fn has_wildcard(&self) -> bool {
        self.0.contains('*')
    }

    /// Whether the repository `name` matches. Anything that is not a repository name (see
    /// [`is_repository_name`]) matches nothing, so a caller cannot pass `team/*` as a name.
    pub fn matches(&self, name: &str) -> bool {
        is_repository_name(name) && glob_matches(self.0.as_bytes(), name.as_bytes())
    }

    /// Whether every repository name that `narrower` matches, `self` matches too.
    ///
    /// Decided by matching `self` against the text of `narrower` with its `*` taken literally:
    /// a literal character of `self` is never `*`, so each `*` of `narrower` must fall inside
    /// a span matched by a `*` of `self`, which then matches whatever that `*` stands for.
    pub fn covers(&self, narrower: &RepositoryPattern) -> bool {
        glob_matches(self.0.as_bytes(), narrower.0.as_bytes())
    }
}

impl TryFrom<String> for RepositoryPattern {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let well_formed = if value.contains('*') {
            value.len() <= MAX_REPOSITORY_NAME_LEN && PATTERN.is_match(&value)
        } else {
            is_repository_name(&value)
        };
        if well_formed {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "{value:?} is not an ECR repository name or pattern: expected one like \
                 \"team-a/api\" or \"team-a/*\" (lowercase letters and digits, single . _ - \
                 or / between them, * for any characters; names have 2 to 256 characters)"
            )))
        }
    }
}

impl From<RepositoryPattern> for String {
    fn from(pattern: RepositoryPattern) -> Self {
        pattern.0
    }
}

impl fmt::Display for RepositoryPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> RepositoryPattern {
        RepositoryPattern::try_from(s.to_owned()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn accepts_names_and_patterns() {
        for ok in [
            "ab",
            "acme/api",
            "team-a/api.v2_x",
            "a/b/c/d",
            "*",
            "**",
            "team-a/*",
            "team-*/api",
            "*/api",
            "a*b",
            "team.*",
            "*-cache",
        ] {
            assert_eq!(pattern(ok).as_str(), ok);
        }
        let longest = "a".repeat(256);
        assert_eq!(pattern(&longest).as_str(), longest);
    }

    #[test]
    fn refuses_what_no_repository_name_looks_like() {
        let too_long = "a".repeat(257);
        let too_long_pattern = format!("{}*", "a".repeat(256));
        for bad in [
            "",
            "a",
            "/",
            "team-a/",
            "/x",
            "a//b",
            "a/../b",
            "..",
            "a..b",
            "./a",
            "a/./b",
            "A/b",
            "acme/API",
            "a b",
            " ab",
            "ab\n",
            "a\tb",
            "team-a/?",
            "a?",
            "[ab]",
            "{a,b}",
            "a-",
            "-a",
            "a_-b",
            "a/-b",
            "*/",
            "/*",
            "*-",
            "a:b",
            "arn:aws:ecr:eu-west-1:123456789012:repository/a",
            "a\\b",
            "é/a",
            too_long.as_str(),
            too_long_pattern.as_str(),
        ] {
            let message = RepositoryPattern::try_from(bad.to_owned())
                .expect_err(bad)
                .to_string();
            assert!(
                message.starts_with(&format!("{bad:?} is not an ECR repository name or pattern")),
                "{message}"
            );
        }
    }

    #[test]
    fn errors_name_the_input_and_a_valid_example() {
        let message = RepositoryPattern::try_from("Team/API".to_owned())
            .unwrap_err()
            .to_string();
        assert!(message.contains("\"Team/API\""), "{message}");
        assert!(message.contains("team-a/*"), "{message}");
    }

    #[test]
    fn names_are_patterns_without_wildcards() {
        assert!(is_repository_name("acme/api"));
        assert!(!is_repository_name("acme/*"));
        assert!(!is_repository_name("a"));
        assert!(!is_repository_name("acme/../api"));
        // A part of a name only has to follow the grammar, at any length.
        assert!(is_repository_name_text("a"));
        assert!(is_repository_name_text(&"a".repeat(300)));
        for bad in ["", "*", "a/", "a..b", "A", "a\n"] {
            assert!(!is_repository_name_text(bad), "{bad:?}");
        }
        assert!(!pattern("acme/api").has_wildcard());
        assert!(pattern("acme/*").has_wildcard());
    }

    #[test]
    fn wildcards_match_any_sequence_including_slashes() {
        let p = pattern("team/*");
        assert!(p.matches("team/api"));
        assert!(p.matches("team/a/b/c"));
        assert!(!p.matches("team"));
        assert!(!p.matches("team2/api"));
        assert!(!p.matches("xteam/api"));
        assert!(pattern("*").matches("anything/at/all"));
        assert!(pattern("*/api").matches("a/b/api"));
        assert!(!pattern("*/api").matches("a/api2"));
        assert!(pattern("a*b*c").matches("a-x-b-y-c"));
        assert!(!pattern("a*b*c").matches("a-x-c-y-b"));
        assert!(pattern("acme/api").matches("acme/api"));
        assert!(!pattern("acme/api").matches("acme/api2"));
    }

    #[test]
    fn only_repository_names_can_match() {
        assert!(!pattern("team/*").matches("team/*"));
        assert!(!pattern("*").matches("*"));
        assert!(!pattern("*").matches("a"));
        assert!(!pattern("team/*").matches("team/../other"));
        assert!(!pattern("team/*").matches("team/API"));
    }

    #[test]
    fn covers_exactly_when_every_match_of_the_narrower_matches() {
        for (wide, narrow, expected) in [
            ("team/*", "team/api", true),
            ("team/*", "team/api*", true),
            ("team/*", "team/*", true),
            ("team/*", "team/a/*/b", true),
            ("team/*", "*", false),
            ("team/*", "team2/x", false),
            ("team/*", "team*", false),
            ("*", "anything/at/all", true),
            ("*", "*", true),
            ("*", "team-*/x*", true),
            ("team/a*", "team/*", false),
            ("*/api", "x/api", true),
            ("*/api", "*/api", true),
            ("*/api", "x/*", false),
            ("a*b", "a*", false),
            ("a*", "a*b", true),
            ("a*b", "a*b", true),
            ("a*b*", "a*b", true),
            ("a*b", "ab", true),
            ("**", "*", true),
            ("*", "**", true),
            ("acme/api", "acme/api", true),
            ("acme/api", "acme/*", false),
            ("acme/api", "acme/api2", false),
        ] {
            assert_eq!(
                pattern(wide).covers(&pattern(narrow)),
                expected,
                "{wide} covers {narrow}"
            );
        }
    }

    #[test]
    fn covering_agrees_with_matching_on_sample_names() {
        // Soundness spot check: whenever `covers` says yes, no sample name breaks it.
        let patterns = [
            "*",
            "team/*",
            "team/a*",
            "*/api",
            "a*b",
            "a*",
            "team-*/api",
            "ab",
        ];
        let names = [
            "ab",
            "axb",
            "team/api",
            "team/a/b",
            "team-x/api",
            "x/api",
            "team/b",
        ];
        for wide in patterns.map(pattern) {
            for narrow in patterns.map(pattern) {
                if wide.covers(&narrow) {
                    for name in names.iter().filter(|n| narrow.matches(n)) {
                        assert!(wide.matches(name), "{wide} covers {narrow} but not {name}");
                    }
                }
            }
        }
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let p: RepositoryPattern = serde_json::from_str(r#""team-a/*""#).unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), r#""team-a/*""#);
        let error = serde_json::from_str::<RepositoryPattern>(r#""team-a/""#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#""team-a/" is not an ECR repository name or pattern"#),
            "{error}"
        );
    }
}
