//! Kubernetes names the issuing endpoint writes into a pull Secret manifest: a Secret's name (a
//! DNS-1123 subdomain) and a namespace (a DNS-1123 label), held to the API server's own rules so a
//! manifest it is handed never fails to apply for its names.

use std::fmt;

use super::InvalidValue;

/// The longest DNS-1123 label Kubernetes takes (a namespace).
const MAX_LABEL_LEN: usize = 63;
/// The longest DNS-1123 subdomain Kubernetes takes (most object names, a Secret's included).
const MAX_SUBDOMAIN_LEN: usize = 253;

/// A Kubernetes Secret's name: a DNS-1123 subdomain, as the API server checks it (1 to 253
/// characters, `.`-separated labels of lower-case letters, digits and `-`, each starting
/// and ending with a letter or digit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretName(String);

/// A Kubernetes namespace: a DNS-1123 label (1 to 63 lower-case letters, digits and `-`,
/// starting and ending with a letter or digit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Namespace(String);

/// The text of one DNS-1123 label, of any length: lower-case letters, digits and inner `-`.
fn is_label_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

impl TryFrom<String> for SecretName {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        // A subdomain's labels are bounded by the whole name's length, not by 63 each: the
        // API server's `IsDNS1123Subdomain` checks only the total.
        let labels_ok = value.split('.').all(is_label_text);
        if labels_ok && value.len() <= MAX_SUBDOMAIN_LEN {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "{value:?} is not a Kubernetes Secret name (a DNS-1123 subdomain: at most \
                 {MAX_SUBDOMAIN_LEN} characters, `.`-separated parts of a-z, 0-9 and `-`, each \
                 starting and ending with a letter or digit)"
            )))
        }
    }
}

impl TryFrom<String> for Namespace {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if is_label_text(&value) && value.len() <= MAX_LABEL_LEN {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "{value:?} is not a Kubernetes namespace (a DNS-1123 label: 1 to \
                 {MAX_LABEL_LEN} characters of a-z, 0-9 and `-`, starting and ending with a \
                 letter or digit)"
            )))
        }
    }
}

impl SecretName {
    /// The name as the manifest carries it.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl Namespace {
    /// The namespace as the manifest carries it.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Result<SecretName, InvalidValue> {
        SecretName::try_from(text.to_owned())
    }

    fn namespace(text: &str) -> Result<Namespace, InvalidValue> {
        Namespace::try_from(text.to_owned())
    }

    #[test]
    fn secret_names_are_dns_1123_subdomains() {
        let longest = [
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61),
        ]
        .join(".");
        assert_eq!(longest.len(), 253);
        for good in [
            "ecr",
            "ecr-pull",
            "a",
            "0",
            "ecr.pull-1",
            "a.b.c",
            longest.as_str(),
        ] {
            assert_eq!(name(good).unwrap().as_str(), good);
        }
        let too_long = format!("{longest}e");
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "ecr_pull",
            "a..b",
            ".a",
            "a.",
            "a.-b",
            "ecr pull",
            "é",
            "a/b",
            too_long.as_str(),
        ] {
            assert!(name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn namespaces_are_dns_1123_labels() {
        let longest = "n".repeat(63);
        for good in ["default", "team-a", "0", longest.as_str()] {
            assert_eq!(namespace(good).unwrap().as_str(), good);
        }
        let too_long = "n".repeat(64);
        for bad in ["", "-a", "a-", "Team", "a.b", "a_b", too_long.as_str()] {
            assert!(namespace(bad).is_err(), "{bad:?}");
        }
    }
}
