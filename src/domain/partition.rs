//! The AWS partition (`aws`, `aws-cn`, `aws-us-gov`) a region belongs to, which decides ARN
//! prefixes and registry DNS suffixes. Only these three are told apart.

use std::fmt;

use super::Region;

/// An AWS partition: a separate copy of AWS with its own ARNs, DNS names and accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    /// The commercial regions, `aws`.
    Aws,
    /// The China regions, `aws-cn`.
    AwsCn,
    /// The AWS GovCloud (US) regions, `aws-us-gov`.
    AwsUsGov,
}

impl Partition {
    /// The partition a region belongs to, read from its code.
    ///
    /// Only the three partitions this service supports are told apart: a code from any other
    /// (such as the isolated `us-iso-*` regions) is taken for `aws`.
    pub fn of(region: &Region) -> Self {
        let code = region.as_str();
        if code.starts_with("cn-") {
            Self::AwsCn
        } else if code.starts_with("us-gov-") {
            Self::AwsUsGov
        } else {
            Self::Aws
        }
    }

    /// The partition as it appears in ARNs: `aws`, `aws-cn` or `aws-us-gov`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
        }
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(code: &str) -> Partition {
        Partition::of(&Region::try_from(code.to_owned()).unwrap())
    }

    #[test]
    fn regions_map_to_their_partition() {
        for (code, expected) in [
            ("us-east-1", Partition::Aws),
            ("eu-west-1", Partition::Aws),
            ("ap-southeast-4", Partition::Aws),
            ("cn-north-1", Partition::AwsCn),
            ("cn-northwest-1", Partition::AwsCn),
            ("us-gov-west-1", Partition::AwsUsGov),
            ("us-gov-east-1", Partition::AwsUsGov),
        ] {
            assert_eq!(partition(code), expected, "{code}");
        }
    }

    #[test]
    fn prefixes_must_be_whole_labels() {
        // `us-govx-1` and `cnx-north-1` are well-formed codes but not in those partitions.
        assert_eq!(partition("us-govx-1"), Partition::Aws);
        assert_eq!(partition("ca-north-1"), Partition::Aws);
    }

    #[test]
    fn names_as_in_arns() {
        assert_eq!(Partition::Aws.as_str(), "aws");
        assert_eq!(Partition::AwsCn.to_string(), "aws-cn");
        assert_eq!(Partition::AwsUsGov.to_string(), "aws-us-gov");
    }
}
