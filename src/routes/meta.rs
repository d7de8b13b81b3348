//! `RequestMeta`, the facts about a request that audit rows and response bodies need: request ids,
//! user agent and the client's address, taken from `X-Forwarded-For` only through trusted proxies.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::audit::AuditRecord;
use crate::config::ServerConfig;
use crate::request_id::{CallerRequestId, REQUEST_ID_HEADER};

/// The header in which proxies name the addresses a request came through.
const FORWARDED_FOR: &str = "x-forwarded-for";

/// Facts about the request that the audit log and response bodies need.
#[derive(Debug, Clone)]
pub(crate) struct RequestMeta {
    /// The `x-request-id` (always set by the request-id middleware).
    pub request_id: String,
    /// The caller's own `x-request-id`, when it sent a usable one.
    pub caller_request_id: Option<String>,
    /// The client's address: the peer's, or, when the peer is a trusted proxy, the one its
    /// `X-Forwarded-For` names.
    pub client_addr: Option<IpAddr>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

impl RequestMeta {
    /// This request's audit record, started: what it is and where it came from.
    pub(crate) fn audit_record(&self) -> AuditRecord {
        let mut record = AuditRecord::start(
            &self.request_id,
            self.client_addr,
            self.user_agent.as_deref(),
        );
        record.caller_request_id = self.caller_request_id.clone();
        record
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestMeta
where
    Arc<ServerConfig>: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let server = Arc::<ServerConfig>::from_ref(state);
        Ok(Self {
            request_id: header(REQUEST_ID_HEADER).unwrap_or_default(),
            caller_request_id: parts
                .extensions
                .get::<CallerRequestId>()
                .map(|c| c.0.clone()),
            client_addr: peer
                .map(|peer| client_addr(peer, &parts.headers, &server.trusted_proxies)),
            user_agent: header(USER_AGENT.as_str()),
        })
    }
}

/// The client behind `peer`: walking `X-Forwarded-For` from its right end (the entry the
/// nearest proxy added), the first address that is not a trusted proxy. Entries further left
/// were written by whoever sent the request and prove nothing, so they are only reached
/// through trusted proxies; a malformed entry ends the walk at the last address known good.
fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    let mut client = peer;
    if !is_trusted(&client) {
        return client;
    }
    // Several header lines are one list, in order.
    let entries: Vec<&str> = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in entries.iter().rev() {
        let Ok(addr) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = addr;
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn client(peer: &str, forwarded: &[&str], trusted: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for value in forwarded {
            headers.append(FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        client_addr(peer.parse().unwrap(), &headers, &trusted).to_string()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        assert_eq!(client("203.0.113.9", &["198.51.100.1"], &[]), "203.0.113.9");
        assert_eq!(
            client("203.0.113.9", &["198.51.100.1"], &["10.0.0.0/8"]),
            "203.0.113.9",
            "an untrusted peer names itself"
        );
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1"], &["10.0.0.0/8"]),
            "198.51.100.1"
        );
    }

    #[test]
    fn the_walk_stops_at_the_first_untrusted_address_from_the_right() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            client(
                "10.0.0.5",
                &["192.0.2.66, 198.51.100.1, 10.1.1.1"],
                &trusted
            ),
            "198.51.100.1",
            "the spoofable left end is not reached"
        );
        assert_eq!(
            client("10.0.0.5", &["192.0.2.66", "198.51.100.1"], &trusted),
            "198.51.100.1",
            "several header lines are one list"
        );
        assert_eq!(
            client("10.0.0.5", &["10.2.2.2, 10.3.3.3"], &trusted),
            "10.2.2.2",
            "all trusted: the leftmost"
        );
    }

    #[test]
    fn a_malformed_entry_ends_the_walk() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            client("10.0.0.5", &["198.51.100.1, junk"], &trusted),
            "10.0.0.5"
        );
        assert_eq!(client("10.0.0.5", &[""], &trusted), "10.0.0.5");
        assert_eq!(
            client("10.0.0.5", &["junk, 198.51.100.1"], &trusted),
            "198.51.100.1"
        );
    }
}
