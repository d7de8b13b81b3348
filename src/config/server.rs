//! `[server]` and `[metrics]`: the listeners, request limits, shutdown timing and CORS
//! origins, checked as they are read. The TLS files are `server_tls.rs`'s.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::ServerTlsConfig;
use super::errors::Findings;

/// `[metrics]`: the Prometheus exposition.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MetricsConfig {
    /// A listener of its own for `GET /metrics`, which the main listener then does not
    /// serve; without it, the main listener serves it.
    pub listen: Option<SocketAddr>,
}

/// `[server]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Browser origins allowed to call the API, as written; parsed into
    /// `cors_allowed_origins`.
    #[serde(rename = "cors_allowed_origins")]
    origins_as_written: Vec<String>,
    /// Browser origins allowed to call the API; empty turns CORS off.
    #[serde(skip)]
    pub cors_allowed_origins: Vec<Origin>,
    /// Backstop for a whole request, beyond the per-call AWS timeout.
    pub request_timeout_secs: u64,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Larger header sections are refused with 431.
    pub max_header_bytes: usize,
    /// More header fields than this are refused by hyper with 431.
    pub max_headers: usize,
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Time allowed for a request's header section, and for an idle keep-alive connection.
    pub header_read_timeout_secs: u64,
    /// Proxies whose `X-Forwarded-For` names the client; from anyone else it is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// How much `GET /v1/whoami` tells about the rules.
    pub whoami_detail: WhoamiDetail,
    /// On SIGTERM: how long `/readyz` reports not ready, while requests are still served,
    /// before the listener closes, so that load balancers stop sending first.
    pub shutdown_drain_secs: u64,
    /// On SIGTERM, once the listener is closed: how long in-flight requests may take to
    /// finish.
    pub shutdown_grace_secs: u64,
    /// `[server.tls]`: HTTPS on `listen`, with the certificate files read again as they
    /// rotate; without it, plain HTTP behind a TLS-terminating proxy.
    pub tls: Option<ServerTlsConfig>,
}

/// How much `GET /v1/whoami` tells: with a public issuer, any stranger can ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhoamiDetail {
    /// The matched rule and what it grants; on no match, each rule's name and the claim that
    /// did not match, never what a rule expects.
    #[default]
    Minimal,
    /// Also every rule checked before the match, and what each expected: for development.
    Full,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            origins_as_written: Vec::new(),
            cors_allowed_origins: Vec::new(),
            request_timeout_secs: 30,
            max_body_bytes: 16 * 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            // Each open connection holds at most a header buffer (max_header_bytes plus a
            // little) and a task: about 40 KiB, so 1024 of them stay within tens of MiB.
            max_connections: 1024,
            header_read_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            whoami_detail: WhoamiDetail::default(),
            shutdown_drain_secs: 5,
            shutdown_grace_secs: 30,
            tls: None,
        }
    }
}

/// A browser origin: `http` or `https`, and a host with an optional port; no path, no
/// wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin(String);

impl Origin {
    /// `text`, if it is an origin.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let (scheme, host) = text.split_once("://")?;
        let valid = matches!(scheme, "http" | "https")
            && !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        valid.then(|| Self(text.to_owned()))
    }

    /// The origin as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks `[server]` (with `[metrics]`, whose listener must differ), parsing its origins.
pub(super) fn server(server: &mut ServerConfig, metrics: &MetricsConfig, f: &mut Findings) {
    f.at_least(
        server.request_timeout_secs,
        1,
        "server.request_timeout_secs",
    );
    f.at_least(server.max_body_bytes, 1024, "server.max_body_bytes");
    f.check(
        server.max_header_bytes >= 8 * 1024,
        "server.max_header_bytes",
        "must be at least 8192 (a JWT must fit)",
    );
    f.within(server.max_headers, 16..=1000, "server.max_headers");
    f.at_least(server.max_connections, 1, "server.max_connections");
    f.within(
        server.header_read_timeout_secs,
        1..=300,
        "server.header_read_timeout_secs",
    );
    f.within(
        server.shutdown_drain_secs,
        0..=300,
        "server.shutdown_drain_secs",
    );
    // A request may run for request_timeout_secs: a shorter grace would cut off requests
    // that are still within their time.
    f.check(
        (server.request_timeout_secs..=3600).contains(&server.shutdown_grace_secs),
        "server.shutdown_grace_secs",
        format!(
            "must be server.request_timeout_secs ({}) to 3600, so that a request in flight at shutdown may take its whole time",
            server.request_timeout_secs
        ),
    );
    if let Some(tls) = &server.tls {
        f.within(
            tls.reload_interval_secs,
            1..=3600,
            "server.tls.reload_interval_secs",
        );
        f.within(
            tls.handshake_timeout_secs,
            1..=300,
            "server.tls.handshake_timeout_secs",
        );
    }
    if let Some(metrics) = metrics.listen {
        // Port 0 picks a free port for each listener, so only a fixed port can collide.
        f.check(
            metrics.port() == 0 || metrics != server.listen,
            "metrics.listen",
            format!("{metrics} is server.listen too: give metrics another port, or leave metrics.listen out to serve /metrics there"),
        );
    }
    let mut origins = Vec::new();
    for (i, origin) in server.origins_as_written.iter().enumerate() {
        match Origin::parse(origin) {
            Some(origin) => origins.push(origin),
            None => f.check(
                false,
                format!("server.cors_allowed_origins[{i}]"),
                format!("{origin:?} is not an origin like \"https://portal.example.com\" (no path, no wildcard)"),
            ),
        }
    }
    server.cors_allowed_origins = origins;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_a_scheme_and_a_host_only() {
        for ok in [
            "https://portal.example.com",
            "http://localhost:3000",
            "https://[::1]:8443",
        ] {
            assert_eq!(
                Origin::parse(ok).map(|o| o.as_str().to_owned()),
                Some(ok.to_owned())
            );
        }
        for bad in [
            "portal.example.com",
            "https://",
            "https://*.example.com",
            "https://a/b",
            "ftp://a",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
    }
}
