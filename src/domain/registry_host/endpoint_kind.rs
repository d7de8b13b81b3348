//! The four kinds of ECR registry endpoint (standard, FIPS, dual-stack, dual-stack FIPS) and the
//! host-name labels and DNS suffixes of each, per partition.

use crate::domain::Partition;

/// Which of a registry's endpoints a host name points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EndpointKind {
    /// IPv4 only: `<id>.dkr.ecr.<region>.amazonaws.com` (`.amazonaws.com.cn` in China).
    Standard,
    /// FIPS 140 validated, IPv4 only: `<id>.dkr.ecr-fips.<region>.amazonaws.com`.
    Fips,
    /// IPv4 and IPv6: `<id>.dkr-ecr.<region>.on.aws` (`.on.amazonwebservices.com.cn` in China).
    DualStack,
    /// FIPS 140 validated, IPv4 and IPv6: `<id>.dkr-ecr-fips.<region>.on.aws`.
    DualStackFips,
}

impl EndpointKind {
    /// Every kind, for parsers to try in turn.
    pub(super) const ALL: [Self; 4] = [
        Self::Standard,
        Self::Fips,
        Self::DualStack,
        Self::DualStackFips,
    ];

    /// The labels between the registry ID and the region.
    pub(super) fn service_label(self) -> &'static str {
        match self {
            Self::Standard => "dkr.ecr",
            Self::Fips => "dkr.ecr-fips",
            Self::DualStack => "dkr-ecr",
            Self::DualStackFips => "dkr-ecr-fips",
        }
    }

    /// The DNS suffix after the region, or `None` where the partition has no such endpoint
    /// (there is no FIPS endpoint in China).
    pub(super) fn dns_suffix(self, partition: Partition) -> Option<&'static str> {
        match (self, partition) {
            (Self::Standard, Partition::AwsCn) => Some("amazonaws.com.cn"),
            (Self::DualStack, Partition::AwsCn) => Some("on.amazonwebservices.com.cn"),
            (Self::Fips | Self::DualStackFips, Partition::AwsCn) => None,
            (Self::Standard | Self::Fips, Partition::Aws | Partition::AwsUsGov) => {
                Some("amazonaws.com")
            }
            (Self::DualStack | Self::DualStackFips, Partition::Aws | Partition::AwsUsGov) => {
                Some("on.aws")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_has_no_fips_endpoints() {
        for kind in EndpointKind::ALL {
            let fips = matches!(kind, EndpointKind::Fips | EndpointKind::DualStackFips);
            assert_eq!(
                kind.dns_suffix(Partition::AwsCn).is_none(),
                fips,
                "{kind:?}"
            );
            assert!(kind.dns_suffix(Partition::Aws).is_some(), "{kind:?}");
            assert!(kind.dns_suffix(Partition::AwsUsGov).is_some(), "{kind:?}");
        }
    }

    #[test]
    fn no_service_label_is_a_prefix_of_another_with_its_dot() {
        for a in EndpointKind::ALL {
            for b in EndpointKind::ALL.into_iter().filter(|b| *b != a) {
                let (a, b) = (a.service_label(), b.service_label());
                assert!(!format!("{b}.").starts_with(&format!("{a}.")), "{a} / {b}");
            }
        }
    }
}
