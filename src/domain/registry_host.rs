//! A private ECR registry's host name, parsed so that only AWS's own host names for a real
//! partition's DNS suffix are accepted; a caller-supplied host can then be trusted to name that
//! registry and nothing else.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{InvalidValue, Region, RegistryId};

mod endpoint_kind;

pub(crate) use endpoint_kind::EndpointKind;

/// The host name of a private ECR registry, the part of an image reference before the first
/// `/`, such as `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
///
/// Only AWS's own host names parse, each with the DNS suffix of its region's partition, so the
/// host can be trusted to name that registry and nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegistryHost {
    registry_id: RegistryId,
    region: Region,
    kind: EndpointKind,
}

impl RegistryHost {
    /// The host of `registry_id`'s registry in `region`; refused where the region's partition
    /// has no endpoint of that kind (FIPS in China).
    pub fn new(
        registry_id: RegistryId,
        region: Region,
        kind: EndpointKind,
    ) -> Result<Self, InvalidValue> {
        if kind.dns_suffix(region.partition()).is_none() {
            return Err(InvalidValue(format!(
                "{region} ({}) has no {kind:?} ECR endpoint",
                region.partition()
            )));
        }
        Ok(Self {
            registry_id,
            region,
            kind,
        })
    }

    /// The standard (IPv4) host of `registry_id`'s registry in `region`, which every
    /// partition has.
    pub fn standard(registry_id: RegistryId, region: Region) -> Self {
        Self {
            registry_id,
            region,
            kind: EndpointKind::Standard,
        }
    }

    /// The account that owns the registry.
    pub fn registry_id(&self) -> &RegistryId {
        &self.registry_id
    }

    /// The registry's region.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Which endpoint the host names.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// The canonical host name, as ECR's `proxyEndpoint` has it but without the scheme.
    pub fn host(&self) -> String {
        let suffix = self
            .kind
            .dns_suffix(self.region.partition())
            .expect("construction refuses kinds the partition lacks");
        format!(
            "{}.{}.{}.{suffix}",
            self.registry_id,
            self.kind.service_label(),
            self.region
        )
    }

    /// The registry's URL, as ECR's `proxyEndpoint` gives it: `https://` and the host.
    pub fn proxy_endpoint(&self) -> String {
        format!("https://{}", self.host())
    }
}

impl TryFrom<String> for RegistryHost {
    type Error = InvalidValue;

    /// Accepts a bare host, optionally behind `https://` and before one trailing `/`.
    fn try_from(value: String) -> Result<Self, Self::Error> {
        let invalid = |why: &str| {
            InvalidValue(format!(
                "{value:?} is not an ECR registry host ({why}); expected one like \
                 \"123456789012.dkr.ecr.eu-west-1.amazonaws.com\""
            ))
        };
        let host = value.strip_prefix("https://").unwrap_or(&value);
        let host = host.strip_suffix('/').unwrap_or(host);
        let Some((id, rest)) = host.split_once('.') else {
            return Err(invalid("no registry ID"));
        };
        let registry_id = RegistryId::try_from(id.to_owned())
            .map_err(|_| invalid("the registry ID must be twelve digits"))?;
        // The label's trailing `.` keeps "dkr.ecr" from matching the start of "dkr.ecr-fips".
        let Some((kind, rest)) = EndpointKind::ALL.iter().find_map(|kind| {
            rest.strip_prefix(kind.service_label())
                .and_then(|r| r.strip_prefix('.'))
                .map(|r| (*kind, r))
        }) else {
            return Err(invalid("not an ECR registry endpoint"));
        };
        let Some((region, suffix)) = rest.split_once('.') else {
            return Err(invalid("no region"));
        };
        let region =
            Region::try_from(region.to_owned()).map_err(|_| invalid("unknown region code"))?;
        match kind.dns_suffix(region.partition()) {
            Some(expected) if expected == suffix => Ok(Self {
                registry_id,
                region,
                kind,
            }),
            Some(expected) => Err(invalid(&format!(
                "a {kind:?} host in {region} ends in .{expected}"
            ))),
            None => Err(invalid(&format!(
                "{} has no {kind:?} endpoint",
                region.partition()
            ))),
        }
    }
}

impl From<RegistryHost> for String {
    fn from(host: RegistryHost) -> Self {
        host.host()
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(host: &str) -> Result<RegistryHost, InvalidValue> {
        RegistryHost::try_from(host.to_owned())
    }

    #[test]
    fn parses_every_kind_in_every_partition() {
        use EndpointKind::{DualStack, DualStackFips, Fips, Standard};
        for (kind, region, rest) in [
            (Standard, "eu-west-1", "dkr.ecr.eu-west-1.amazonaws.com"),
            (
                Standard,
                "cn-north-1",
                "dkr.ecr.cn-north-1.amazonaws.com.cn",
            ),
            (
                Standard,
                "us-gov-west-1",
                "dkr.ecr.us-gov-west-1.amazonaws.com",
            ),
            (Fips, "us-east-1", "dkr.ecr-fips.us-east-1.amazonaws.com"),
            (
                Fips,
                "us-gov-east-1",
                "dkr.ecr-fips.us-gov-east-1.amazonaws.com",
            ),
            (DualStack, "eu-west-1", "dkr-ecr.eu-west-1.on.aws"),
            (
                DualStack,
                "cn-north-1",
                "dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
            ),
            (DualStack, "us-gov-west-1", "dkr-ecr.us-gov-west-1.on.aws"),
            (DualStackFips, "us-east-1", "dkr-ecr-fips.us-east-1.on.aws"),
            (
                DualStackFips,
                "us-gov-west-1",
                "dkr-ecr-fips.us-gov-west-1.on.aws",
            ),
        ] {
            let host = format!("123456789012.{rest}");
            let parsed = parse(&host).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(parsed.registry_id().as_str(), "123456789012");
            assert_eq!(parsed.region().as_str(), region);
            assert_eq!(parsed.kind(), kind, "{host}");
            assert_eq!(parsed.host(), host);
            assert_eq!(parsed.to_string(), host);
            assert_eq!(parsed.proxy_endpoint(), format!("https://{host}"));
            let rebuilt = RegistryHost::new(
                parsed.registry_id().clone(),
                parsed.region().clone(),
                parsed.kind(),
            );
            assert_eq!(rebuilt.as_ref(), Ok(&parsed));
        }
    }

    #[test]
    fn accepts_the_proxy_endpoint_form_and_one_trailing_slash() {
        let bare = parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
        for form in [
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
        ] {
            assert_eq!(parse(form).as_ref(), Ok(&bare), "{form}");
        }
    }

    #[test]
    fn serde_round_trips_through_the_canonical_host() {
        let host: RegistryHost =
            serde_json::from_str(r#""https://123456789012.dkr-ecr.eu-west-1.on.aws/""#).unwrap();
        let json = serde_json::to_string(&host).unwrap();
        assert_eq!(json, r#""123456789012.dkr-ecr.eu-west-1.on.aws""#);
        assert_eq!(serde_json::from_str::<RegistryHost>(&json).unwrap(), host);
        let error = serde_json::from_str::<RegistryHost>(r#""evil.com""#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(r#""evil.com" is not an ECR registry host"#),
            "{error}"
        );
    }

    #[test]
    fn refuses_hostile_and_malformed_hosts() {
        // Each for the reason given: a host refused by an earlier check than intended would
        // leave the later one untested.
        const ID: &str = "the registry ID must be twelve digits";
        const NOT_ECR: &str = "not an ECR registry endpoint";
        const REGION: &str = "unknown region code";
        const STANDARD: &str = "a Standard host in eu-west-1 ends in .amazonaws.com";
        for (bad, why) in [
            ("", "no registry ID"),
            ("evil.com", ID),
            ("https://", "no registry ID"),
            ("123456789012", "no registry ID"),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.com",
                STANDARD,
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com@evil",
                STANDARD,
            ),
            ("evil@123456789012.dkr.ecr.eu-west-1.amazonaws.com", ID),
            (
                "https://evil@123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                ID,
            ),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com.", STANDARD),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/", STANDARD),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com//", STANDARD),
            (
                "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/api",
                STANDARD,
            ),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com:443", STANDARD),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com?x=1", STANDARD),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com#x", STANDARD),
            ("http://123456789012.dkr.ecr.eu-west-1.amazonaws.com", ID),
            ("HTTPS://123456789012.dkr.ecr.eu-west-1.amazonaws.com", ID),
            (
                "https://https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                ID,
            ),
            ("123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM", NOT_ECR),
            ("123456789012.dkr.ecr.eu-west-1.AmazonAWS.com", STANDARD),
            (" 123456789012.dkr.ecr.eu-west-1.amazonaws.com", ID),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com ", STANDARD),
            ("12345678901.dkr.ecr.eu-west-1.amazonaws.com", ID),
            ("1234567890123.dkr.ecr.eu-west-1.amazonaws.com", ID),
            ("x23456789012.dkr.ecr.eu-west-1.amazonaws.com", ID),
            ("123456789012.dkr.ecr.eu-west.amazonaws.com", REGION),
            ("123456789012.dkr.ecr.eu-west-1x.amazonaws.com", REGION),
            ("123456789012.dkr.ecr..amazonaws.com", REGION),
            ("123456789012.dkr.ecr.eu-west-1", "no region"),
            ("123456789012.ecr.eu-west-1.amazonaws.com", NOT_ECR),
            ("123456789012.api.ecr.eu-west-1.amazonaws.com", NOT_ECR),
            (
                "123456789012.dkr.ecr-fips.cn-north-1.amazonaws.com.cn",
                "aws-cn has no Fips endpoint",
            ),
            (
                "123456789012.dkr-ecr-fips.cn-north-1.on.amazonwebservices.com.cn",
                "aws-cn has no DualStackFips endpoint",
            ),
            ("123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn", STANDARD),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
                "a Standard host in cn-north-1 ends in .amazonaws.com.cn",
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.aws",
                "a DualStack host in cn-north-1 ends in .on.amazonwebservices.com.cn",
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.amazonwebservices.com.cn",
                "a DualStack host in eu-west-1 ends in .on.aws",
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.amazonaws.com",
                "a DualStack host in eu-west-1 ends in .on.aws",
            ),
            ("123456789012.dkr.ecr.eu-west-1.on.aws", STANDARD),
            (
                "123456789012.dkr.ecr-fips.us-east-1.on.aws",
                "a Fips host in us-east-1 ends in .amazonaws.com",
            ),
            (
                "123456789012.dkr-ecr-fips.us-east-1.amazonaws.com",
                "a DualStackFips host in us-east-1 ends in .on.aws",
            ),
            ("public.ecr.aws", ID),
        ] {
            let message = parse(bad).expect_err(bad).to_string();
            assert!(
                message.starts_with(&format!("{bad:?} is not an ECR registry host ({why})")),
                "{message}"
            );
        }
    }

    #[test]
    fn errors_name_the_input_and_a_valid_example() {
        let message = parse("evil.com").unwrap_err().to_string();
        assert!(message.contains("\"evil.com\""), "{message}");
        assert!(
            message.contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            "{message}"
        );
        let message = parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com")
            .unwrap_err()
            .to_string();
        assert!(message.contains(".amazonaws.com.cn"), "{message}");
    }

    #[test]
    fn new_refuses_fips_in_china_and_standard_is_everywhere() {
        let id = RegistryId::try_from("123456789012".to_owned()).unwrap();
        let region = Region::try_from("cn-northwest-1".to_owned()).unwrap();
        for kind in [EndpointKind::Fips, EndpointKind::DualStackFips] {
            assert_eq!(
                RegistryHost::new(id.clone(), region.clone(), kind),
                Err(InvalidValue(format!(
                    "cn-northwest-1 (aws-cn) has no {kind:?} ECR endpoint"
                )))
            );
        }
        let host = RegistryHost::new(id.clone(), region.clone(), EndpointKind::Standard);
        assert_eq!(host, Ok(RegistryHost::standard(id, region)));
        assert_eq!(
            host.unwrap().host(),
            "123456789012.dkr.ecr.cn-northwest-1.amazonaws.com.cn"
        );
    }
}
