//! How outbound HTTPS leaves the service: the proxy named by `HTTPS_PROXY` / `NO_PROXY`
//! (either case) for every call, and `AWS_CA_BUNDLE`'s extra roots for the AWS endpoints.
//!
//! reqwest (key sets and discovery) reads the proxy variables by itself; the AWS SDK's
//! default HTTP client does not, so the SDK is handed one built here that does.

use anyhow::Context;
use aws_smithy_http_client::pool::{Client as PoolClient, ConnectionPool};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// The variable the AWS SDKs and CLI read for a PEM bundle to trust for AWS endpoints.
const AWS_CA_BUNDLE: &str = "AWS_CA_BUNDLE";

/// The HTTP client for every AWS call (STS, ECR, and the credential providers): the
/// proxy from the environment, and the system's roots plus `AWS_CA_BUNDLE`'s certificates.
pub(crate) fn aws_http_client() -> anyhow::Result<SharedHttpClient> {
    let mut trust = TrustStore::default();
    if let Some(path) = std::env::var_os(AWS_CA_BUNDLE).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path)
            .with_context(|| format!("reading {AWS_CA_BUNDLE} {}", path.display()))?;
        // The SDK checks the PEM only at the first connection; a bad bundle should stop
        // the service at start, with the file named, not fail every AWS call later.
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("reading certificates from {}", path.display()))?;
        anyhow::ensure!(
            !certificates.is_empty(),
            "{AWS_CA_BUNDLE} {} holds no PEM certificate",
            path.display()
        );
        // Added to, not instead of, the system's roots, as an issuer's `ca_file` is: a
        // corporate CA that re-signs AWS's certificates and the public ones both work.
        trust = trust.with_pem_certificate(pem);
    }
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .context("building the TLS settings for AWS")?;
    let pool = ConnectionPool::builder()
        .proxy_config(ProxyConfig::from_env())
        .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
        .context("building the HTTP client for AWS")?;
    let client = PoolClient::new(&pool).context("building the HTTP client for AWS")?;
    Ok(SharedHttpClient::new(client))
}

/// Logs which proxy outbound HTTPS takes, once at start, without its credentials: an
/// operator can see where calls go without the log holding the proxy's password.
pub(crate) fn log_proxy() {
    let proxy = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    let Some(proxy) = proxy else {
        return;
    };
    let no_proxy = ["NO_PROXY", "no_proxy"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok())
        .unwrap_or_default();
    tracing::info!(
        proxy = %redacted(&proxy),
        no_proxy = %no_proxy,
        "outbound HTTPS goes through a proxy"
    );
}

/// `url` without the user name and password it may carry.
fn redacted(url: &str) -> String {
    // A proxy variable without a scheme is taken as `http://` (as hyper-util takes it);
    // parsed as it stands, `user:pw@host` would be a URL of scheme `user` with the
    // password in its path.
    let full = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    match reqwest::Url::parse(&full) {
        Ok(mut parsed) if parsed.has_host() => {
            if !parsed.username().is_empty() || parsed.password().is_some() {
                // Both only fail on URLs without a host, and this one has one.
                let _ = parsed.set_username("redacted");
                let _ = parsed.set_password(None);
            }
            // A proxy has no use for a path or query, and one could hold a token.
            parsed.set_path("");
            parsed.set_query(None);
            parsed.set_fragment(None);
            parsed.to_string()
        }
        // Nothing to tell a password from in it: say nothing of it.
        _ => "(not a URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn a_proxy_url_is_logged_without_its_credentials() {
        for (url, shown) in [
            (
                "http://alice:s3cret@proxy.corp:3128",
                "http://redacted@proxy.corp:3128/",
            ),
            (
                "http://:s3cret@proxy.corp:3128",
                "http://redacted@proxy.corp:3128/",
            ),
            ("http://proxy.corp:3128", "http://proxy.corp:3128/"),
            (
                "alice:s3cret@proxy.corp:3128",
                "http://redacted@proxy.corp:3128/",
            ),
            (
                "socks5://alice:s3cret@proxy.corp:1080",
                "socks5://redacted@proxy.corp:1080",
            ),
            ("http://alice:s3cret@", "(not a URL)"),
            (
                "http://proxy.corp:3128/s3cret?k=s3cret#s3cret",
                "http://proxy.corp:3128/",
            ),
            ("alice:s3cret@proxy corp", "(not a URL)"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
            assert!(!redacted(url).contains("s3cret"));
        }
    }
}
