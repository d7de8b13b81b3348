//! An ECR registry ID: the twelve-digit account ID that owns the registry.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A registry ID: the twelve-digit AWS account ID that owns an ECR registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryId(String);

impl RegistryId {
    /// The account ID digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RegistryId {
    type Error = InvalidValue;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "{value:?} is not a registry ID (twelve digits)"
            )))
        }
    }
}

impl From<RegistryId> for String {
    fn from(id: RegistryId) -> Self {
        id.0
    }
}

impl fmt::Display for RegistryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_digits_only() {
        assert_eq!(
            RegistryId::try_from("123456789012".to_owned())
                .unwrap()
                .as_str(),
            "123456789012"
        );
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            " 23456789012",
        ] {
            assert_eq!(
                RegistryId::try_from(bad.to_owned()),
                Err(InvalidValue(format!(
                    "{bad:?} is not a registry ID (twelve digits)"
                )))
            );
        }
    }
}
