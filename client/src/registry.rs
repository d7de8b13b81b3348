//! Which registry a docker server URL or a kubelet image names, and whether it is ECR's.
//!
//! Only the shape is checked here (twelve digits, then one of ECR's service labels): enough
//! to answer "not ours" for docker.io or ghcr.io without a network call. The broker parses
//! the host fully (region, partition, DNS suffix) and refuses anything else with a 400, so
//! the client never has to be the judge of what a valid ECR host is.

use std::fmt;

/// The labels between the registry ID and the region, one per ECR endpoint kind.
const SERVICE_LABELS: [&str; 4] = ["dkr.ecr.", "dkr.ecr-fips.", "dkr-ecr.", "dkr-ecr-fips."];

/// A bare, lowercase host name shaped like a private ECR registry's, such as
/// `123456789012.dkr.ecr.eu-west-1.amazonaws.com`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EcrHost(String);

impl EcrHost {
    /// The host docker means by a server URL: `HOST`, `https://HOST` or `https://HOST/v2/`;
    /// `None` when it is not shaped like an ECR registry.
    pub(crate) fn from_server_url(url: &str) -> Option<Self> {
        let url = url.trim();
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or(url);
        let host = rest.split('/').next().unwrap_or_default();
        // ECR serves on 443 only; docker may spell that port out.
        let host = host.strip_suffix(":443").unwrap_or(host);
        Self::from_host(host)
    }

    /// The registry of a kubelet image reference (`HOST/REPOSITORY[:TAG][@DIGEST]`); `None`
    /// when the reference names no registry or one not shaped like ECR's.
    pub(crate) fn from_image(image: &str) -> Option<Self> {
        let (host, _repository) = image.trim().split_once('/')?;
        Self::from_host(host)
    }

    /// The standard (not FIPS, not dual-stack) endpoint of registry `registry_id` in
    /// `region`, as the broker's `/v1/whoami` names them; `None` if they make no ECR host.
    pub(crate) fn standard(registry_id: &str, region: &str) -> Option<Self> {
        // China's regions are the one partition with a DNS suffix of their own for ECR.
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Self::from_host(&format!("{registry_id}.dkr.ecr.{region}.{suffix}"))
    }

    fn from_host(host: &str) -> Option<Self> {
        let host = host.to_ascii_lowercase();
        let (id, rest) = host.split_once('.')?;
        if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let after_label = SERVICE_LABELS
            .iter()
            .find_map(|label| rest.strip_prefix(label))?;
        let (region, suffix) = after_label.split_once('.')?;
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        (label_ok(region) && suffix.split('.').all(label_ok)).then_some(Self(host))
    }

    /// The host name, as the broker's `registries` field takes it.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EcrHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    #[test]
    fn docker_server_urls_name_the_bare_host() {
        for url in [
            HOST,
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",
            "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/v2/",
            "123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
            "  123456789012.dkr.ecr.eu-west-1.amazonaws.com\n",
        ] {
            assert_eq!(
                EcrHost::from_server_url(url).map(|h| h.to_string()),
                Some(HOST.to_owned()),
                "{url:?}"
            );
        }
    }

    #[test]
    fn every_endpoint_kind_is_recognised() {
        for host in [
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
        ] {
            assert!(EcrHost::from_server_url(host).is_some(), "{host}");
        }
    }

    #[test]
    fn other_registries_are_not_ours() {
        for url in [
            "",
            "https://index.docker.io/v1/",
            "docker.io",
            "ghcr.io",
            "public.ecr.aws",
            "12345678901.dkr.ecr.eu-west-1.amazonaws.com",
            "1234567890123.dkr.ecr.eu-west-1.amazonaws.com",
            "12345678901a.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecrx.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1",
            "123456789012.dkr.ecr..amazonaws.com",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com:5000",
            "123456789012.dkr.ecr.eu_west-1.amazonaws.com",
            "user@123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        ] {
            assert_eq!(EcrHost::from_server_url(url), None, "{url:?}");
        }
    }

    #[test]
    fn standard_endpoints_take_their_partition_s_suffix() {
        let standard = |id: &str, region: &str| EcrHost::standard(id, region).map(|h| h.0);
        assert_eq!(standard("123456789012", "eu-west-1").as_deref(), Some(HOST));
        assert_eq!(
            standard("123456789012", "cn-north-1").as_deref(),
            Some("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn")
        );
        assert_eq!(
            standard("123456789012", "us-gov-west-1").as_deref(),
            Some("123456789012.dkr.ecr.us-gov-west-1.amazonaws.com")
        );
        assert_eq!(standard("1234", "eu-west-1"), None);
        assert_eq!(standard("123456789012", "eu_west-1"), None);
        assert_eq!(standard("123456789012", "eu-west-1.evil.com/x"), None);
    }

    #[test]
    fn images_name_their_registry() {
        for image in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team-a/api:1.2",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/api@sha256:0123",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/a/b/c",
        ] {
            assert_eq!(
                EcrHost::from_image(image).map(|h| h.to_string()),
                Some(HOST.to_owned()),
                "{image}"
            );
        }
        for image in ["nginx:1.27", "library/nginx", "ghcr.io/acme/api:1"] {
            assert_eq!(EcrHost::from_image(image), None, "{image}");
        }
    }
}
