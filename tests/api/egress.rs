//! Outbound HTTPS through an egress proxy: `HTTPS_PROXY` (either case) carries the calls to
//! STS, ECR, discovery and the key set, `NO_PROXY` keeps the hosts it names direct, and the
//! AWS endpoints are trusted under a private CA with `AWS_CA_BUNDLE`.

use crate::helpers::connect_proxy::ConnectProxy;
use crate::helpers::moto::Moto;
use crate::helpers::proxy::{FaultProxy, Operation};
use crate::helpers::tls::TestCa;
use crate::helpers::{ServiceProcess, TestApp, TestIssuer};

/// The proxy's password, in its URL: the log may never show it.
const PROXY_PASSWORD: &str = "proxy-pw-never-shown-4242";

/// Everything the service calls, each over HTTPS under one private CA on 127.0.0.1: an
/// issuer, and moto behind one front for STS and another for ECR, so that each service's
/// tunnel can be told apart.
struct Upstreams {
    ca: TestCa,
    issuer: TestIssuer,
    sts: FaultProxy,
    ecr: FaultProxy,
    moto: Moto,
}

impl Upstreams {
    async fn start() -> Self {
        let ca = TestCa::new("egress test CA");
        let issuer = TestIssuer::start_https(&ca.server_cert(&["IP:127.0.0.1"])).await;
        let moto = Moto::start().await;
        let cert = ca.server_cert(&["IP:127.0.0.1"]);
        let sts = FaultProxy::start_with(&moto.url, Vec::new(), Some(&cert)).await;
        let ecr = FaultProxy::start_with(&moto.url, Vec::new(), Some(&cert)).await;
        Self {
            ca,
            issuer,
            sts,
            ecr,
            moto,
        }
    }

    /// The service, with these proxy variables, calling only these upstreams, after it
    /// issued one token.
    async fn service(self, proxy_env: &[(&str, &str)]) -> (ServiceProcess, Targets) {
        let ca_bundle = self.ca.cert.to_str().unwrap().to_owned();
        self.service_with(proxy_env, Some(&ca_bundle), 200).await
    }

    /// The service with these proxy variables and `AWS_CA_BUNDLE`, after it answered one
    /// token request with `status`.
    async fn service_with(
        self,
        proxy_env: &[(&str, &str)],
        ca_bundle: Option<&str>,
        status: u16,
    ) -> (ServiceProcess, Targets) {
        let targets = Targets {
            issuer: authority(&self.issuer.url),
            sts: authority(&self.sts.url),
            ecr: authority(&self.ecr.url),
        };
        let mut builder = TestApp::builder()
            .moto(self.moto)
            .issuer(self.issuer.clone())
            .issuer_keys(&format!("discovery = true\nca_file = {:?}", self.ca.cert))
            .env("AWS_ENDPOINT_URL_STS", &self.sts.url)
            .env("AWS_ENDPOINT_URL_ECR", &self.ecr.url)
            .env("RUST_LOG", "info");
        if let Some(bundle) = ca_bundle {
            builder = builder.env("AWS_CA_BUNDLE", bundle);
        }
        for (name, value) in proxy_env {
            builder = builder.env(name, value);
        }
        let service = builder.spawn_process().await;
        let response = service.issue(&self.issuer.token().sign()).await;
        assert_eq!(
            response.status(),
            status,
            "{proxy_env:?}: {}",
            service.log()
        );
        // Each front counts what reached it, proxied or not.
        let reached = usize::from(status == 200);
        assert_eq!(self.sts.calls(Operation::AssumeRole), reached);
        assert_eq!(self.ecr.calls(Operation::GetAuthorizationToken), reached);
        assert!(self.issuer.discovery_fetches() >= 1);
        assert!(self.issuer.jwks_fetches() >= 1);
        drop(self.ca);
        (service, targets)
    }
}

/// Where each upstream listens, `host:port`, as a CONNECT request names it.
struct Targets {
    issuer: String,
    sts: String,
    ecr: String,
}

fn authority(url: &str) -> String {
    let url = reqwest::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap())
}

/// The proxy's URL with a user name and password in it.
fn with_credentials(proxy: &ConnectProxy) -> String {
    proxy
        .url
        .replace("http://", &format!("http://egress:{PROXY_PASSWORD}@"))
}

#[tokio::test]
async fn sts_ecr_discovery_and_keys_go_through_the_https_proxy() {
    for variable in ["HTTPS_PROXY", "https_proxy"] {
        // Arrange: nothing in NO_PROXY, so loopback is proxied too.
        let proxy = ConnectProxy::start().await;
        let proxy_url = with_credentials(&proxy);

        // Act: start the service and issue one token.
        let (service, targets) = Upstreams::start()
            .await
            .service(&[(variable, &proxy_url)])
            .await;

        // Assert: every upstream was reached through a tunnel, and nothing else was.
        for target in [&targets.issuer, &targets.sts, &targets.ecr] {
            assert!(
                proxy.tunnels_to(target) >= 1,
                "{variable}: no tunnel to {target}"
            );
        }
        let log = service.log();
        assert!(log.contains("outbound HTTPS goes through a proxy"), "{log}");
        assert!(
            !log.contains(PROXY_PASSWORD),
            "{variable}: the log shows the password"
        );
    }
}

#[tokio::test]
async fn no_proxy_keeps_loopback_direct() {
    for (proxy_variable, bypass_variable) in
        [("HTTPS_PROXY", "NO_PROXY"), ("https_proxy", "no_proxy")]
    {
        // Arrange
        let proxy = ConnectProxy::start().await;
        let proxy_url = with_credentials(&proxy);

        // Act: the same calls, every upstream on the bypassed address.
        let (_service, _targets) = Upstreams::start()
            .await
            .service(&[(proxy_variable, &proxy_url), (bypass_variable, "127.0.0.1")])
            .await;

        // Assert: the calls were made (checked in `service`), none through the proxy.
        assert_eq!(proxy.tunnels(), 0, "{bypass_variable}");
    }
}

#[tokio::test]
async fn an_aws_endpoint_under_a_private_ca_is_refused_without_aws_ca_bundle() {
    // Arrange
    let proxy = ConnectProxy::start().await;

    // Act: the same service and calls, through the proxy, with no AWS_CA_BUNDLE.
    let (service, targets) = Upstreams::start()
        .await
        .service_with(&[("HTTPS_PROXY", &proxy.url)], None, 502)
        .await;

    // Assert: the tunnel to STS opened, but no request came out of it (checked in
    // `service_with`) because the certificate was refused.
    assert!(proxy.tunnels_to(&targets.sts) >= 1);
    assert!(service.log().contains("UnknownIssuer"), "{}", service.log());
}
