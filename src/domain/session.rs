//! What the broker names an STS session with: `RoleSessionName` and `SourceIdentity` derived from
//! the caller's subject in STS's alphabet (so a claim cannot smuggle in syntax), and the
//! `SessionDuration` STS allows.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// STS allows `[\w+=,.@-]` in session names and source identities.
fn is_sts_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

/// Maps a caller-chosen string onto STS's alphabet: every other character becomes `-`,
/// so the result is recognisable but can never smuggle in syntax.
fn sanitise(raw: &str, max_len: usize) -> String {
    raw.chars()
        .map(|c| if is_sts_name_char(c) { c } else { '-' })
        .take(max_len)
        .collect()
}

/// An STS `RoleSessionName`: 2 to 64 of `[\w+=,.@-]`, unique per issuance.
///
/// It shows up in CloudTrail and in the assumed-role ARN, so it leads with the caller's subject
/// and ends with a short unique suffix that ties it to one audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoleSessionName(String);

impl RoleSessionName {
    const MAX_LEN: usize = 64;

    /// Builds the name from the caller's subject and a unique suffix (at least 1 character of
    /// the STS alphabet; longer suffixes are cut to 16).
    pub(crate) fn for_caller(subject: &str, unique_suffix: &str) -> Self {
        let suffix = sanitise(unique_suffix, 16);
        let room = Self::MAX_LEN - suffix.len() - 1;
        let mut name = sanitise(subject, room);
        if name.is_empty() {
            name.push_str("caller");
        }
        name.push('.');
        name.push_str(&suffix);
        Self(name)
    }

    /// The name as sent to STS.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoleSessionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An STS `SourceIdentity`: the caller's subject in STS's alphabet, 2 to 64 characters.
///
/// It sticks to the session (and to any session chained from it), so CloudTrail names the
/// person or pipeline behind every ECR call made with the issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SourceIdentity(String);

impl SourceIdentity {
    /// Derives the identity from the caller's subject; `None` when fewer than two characters
    /// would remain.
    pub(crate) fn for_caller(subject: &str) -> Option<Self> {
        let identity = sanitise(subject, 64);
        (identity.len() >= 2).then_some(Self(identity))
    }

    /// The identity as sent to STS.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// How long assumed-role credentials live: STS accepts 900 to 43200 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct SessionDuration(u32);

impl SessionDuration {
    /// The shortest session STS grants.
    pub const MIN: Self = Self(900);
    /// The longest session STS grants (the role's own maximum may be lower).
    pub const MAX: Self = Self(43_200);

    /// Seconds, as STS takes them.
    pub fn as_secs(self) -> u32 {
        self.0
    }
}

impl Default for SessionDuration {
    fn default() -> Self {
        Self::MIN
    }
}

impl TryFrom<u32> for SessionDuration {
    type Error = InvalidValue;

    fn try_from(secs: u32) -> Result<Self, Self::Error> {
        if (Self::MIN.0..=Self::MAX.0).contains(&secs) {
            Ok(Self(secs))
        } else {
            Err(InvalidValue(format!(
                "{secs} seconds is outside the session durations STS allows (900 to 43200)"
            )))
        }
    }
}

impl From<SessionDuration> for u32 {
    fn from(duration: SessionDuration) -> Self {
        duration.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_sts_name(name: &str) {
        assert!(
            (2..=64).contains(&name.len()),
            "{name:?} has {} chars",
            name.len()
        );
        assert!(name.chars().all(is_sts_name_char), "{name:?}");
    }

    #[test]
    fn session_name_keeps_subject_and_suffix() {
        let name = RoleSessionName::for_caller("repo:acme/api:ref:refs/heads/main", "3f2a9c1b");
        assert_eq!(name.as_str(), "repo-acme-api-ref-refs-heads-main.3f2a9c1b");
    }

    #[test]
    fn session_name_is_valid_for_hostile_or_odd_subjects() {
        let long = "x".repeat(500);
        for subject in [
            "",
            "é",
            "a\"b<c>{d}\n",
            "*",
            long.as_str(),
            "user@example.com",
            "../../etc",
        ] {
            let name = RoleSessionName::for_caller(subject, "0123456789abcdef0123");
            assert_sts_name(name.as_str());
            assert!(name.as_str().ends_with(".0123456789abcdef"), "{name}");
        }
    }

    #[test]
    fn source_identity_fits_sts_rules() {
        assert_eq!(
            SourceIdentity::for_caller("alice@example.com")
                .unwrap()
                .as_str(),
            "alice@example.com"
        );
        assert_eq!(
            SourceIdentity::for_caller("aws:x").unwrap().as_str(),
            "aws-x"
        );
        assert!(SourceIdentity::for_caller("a").is_none());
        assert_sts_name(
            SourceIdentity::for_caller(&"y".repeat(100))
                .unwrap()
                .as_str(),
        );
    }

    #[test]
    fn durations_follow_sts_limits() {
        for secs in [0, 899, 43_201] {
            assert_eq!(
                SessionDuration::try_from(secs),
                Err(InvalidValue(format!(
                    "{secs} seconds is outside the session durations STS allows (900 to 43200)"
                )))
            );
        }
        assert_eq!(SessionDuration::try_from(900).unwrap().as_secs(), 900);
        assert_eq!(SessionDuration::try_from(43_200).unwrap().as_secs(), 43_200);
        assert_eq!(SessionDuration::try_from(3600).unwrap().as_secs(), 3600);
    }
}
