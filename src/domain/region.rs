//! An AWS region code, parsed from its shape only: this type does not know which regions exist.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// An AWS region code such as `eu-west-1` or `us-gov-west-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// The region code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The partition the region belongs to.
    pub fn partition(&self) -> super::Partition {
        super::Partition::of(self)
    }
}

impl TryFrom<String> for Region {
    type Error = InvalidValue;

    /// Accepts `<letters>(-<letters>)+-<digits>`: the shape of every AWS region code.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let mut parts = value.split('-').collect::<Vec<_>>();
        let number = parts.pop().unwrap_or_default();
        let well_formed = value.len() <= 32
            && parts.len() >= 2
            && parts[0].len() == 2
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit());
        if well_formed {
            Ok(Self(value))
        } else {
            Err(InvalidValue(format!(
                "{value:?} is not an AWS region code (like \"eu-west-1\")"
            )))
        }
    }
}

impl From<Region> for String {
    fn from(region: Region) -> Self {
        region.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_real_region_codes() {
        for code in [
            "us-east-1",
            "eu-central-2",
            "us-gov-west-1",
            "cn-north-1",
            "ap-southeast-4",
        ] {
            assert_eq!(Region::try_from(code.to_owned()).unwrap().as_str(), code);
        }
    }

    #[test]
    fn refuses_anything_else() {
        for code in [
            "",
            "us-east",
            "US-EAST-1",
            "useast1",
            "us-east-1a",
            "us--east-1",
            "e-west-1",
            "us-east-1/../x",
        ] {
            assert_eq!(
                Region::try_from(code.to_owned()),
                Err(InvalidValue(format!(
                    "{code:?} is not an AWS region code (like \"eu-west-1\")"
                )))
            );
        }
    }

    #[test]
    fn knows_its_partition() {
        let region = Region::try_from("cn-northwest-1".to_owned()).unwrap();
        assert_eq!(region.partition(), crate::domain::Partition::AwsCn);
    }
}
