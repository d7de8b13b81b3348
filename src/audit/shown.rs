//! How the API shows an audit row's values (`GET /v1/audit/issuances`, `POST
//! /v1/audit/lookup`): times to the microsecond the log keeps, session tags as an object.
//! The shape itself, `IssuanceRecord`, is made from the record's field table
//! ([`super::fields`]); this file must not list the fields.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::Outcome;
use super::record::SessionTags;
use super::shed::ShedSummary;

/// When something happened, to the microsecond the audit log keeps, so that a value read
/// back can be given back as `since` or `until` exactly.
pub(crate) fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// When a token expires, in whole seconds, as the issuing response says it.
pub(super) fn expiry(time: Option<DateTime<Utc>>) -> Option<String> {
    time.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// How a value of a record field is shown in the API's JSON.
pub(crate) trait Shown {
    /// What is serialized.
    type Shown: Serialize;
    /// The value as shown.
    fn shown(self) -> Self::Shown;
}

/// Values shown as they are serialized.
macro_rules! as_is {
    ($($ty:ty),*) => {$(
        impl Shown for $ty {
            type Shown = $ty;
            fn shown(self) -> $ty {
                self
            }
        }
    )*};
}

as_is!(String, Vec<String>, Outcome, u16, i32, bool, ShedSummary);

impl Shown for DateTime<Utc> {
    type Shown = String;
    fn shown(self) -> String {
        instant(self)
    }
}

impl Shown for IpAddr {
    type Shown = String;
    fn shown(self) -> String {
        self.to_string()
    }
}

impl<T: Shown> Shown for Option<T> {
    type Shown = Option<T::Shown>;
    fn shown(self) -> Option<T::Shown> {
        self.map(T::shown)
    }
}

/// An object, `{}` when there are none.
impl Shown for SessionTags {
    type Shown = BTreeMap<String, String>;
    fn shown(self) -> BTreeMap<String, String> {
        self.as_slice().iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::ChainedRow;
    use super::super::{AuditRecord, IssuanceRecord};
    use super::*;

    #[test]
    fn the_api_shows_every_field_in_the_contracts_order_and_forms() {
        let at = DateTime::from_timestamp_micros(1_795_431_244_123_456).unwrap();
        let mut record =
            AuditRecord::start("r-1", Some("127.0.0.1".parse().unwrap()), Some("curl/8"));
        record.occurred_at = at;
        record.decide(Outcome::Issued, "issued", 200);
        record.latency_ms = 12;
        record.issuer = Some("ci".to_owned());
        record.session_tags = [("repo".to_owned(), "acme/api".to_owned())]
            .into_iter()
            .collect();
        record.expires_at = Some(at);
        let shown = IssuanceRecord::from(ChainedRow::new(7, at, record));
        assert_eq!(
            serde_json::to_string(&shown).unwrap(),
            concat!(
                r#"{"id":7,"occurredAt":"2026-11-23T10:54:04.123456Z","#,
                r#""recordedAt":"2026-11-23T10:54:04.123456Z","requestId":"r-1","#,
                r#""outcome":"issued","reason":"issued","httpStatus":200,"issuer":"ci","#,
                r#""subject":null,"rule":null,"roleArn":null,"sessionName":null,"#,
                r#""regions":[],"registryIds":[],"access":null,"repositories":null,"#,
                r#""sessionTags":{"repo":"acme/api"},"proxyEndpoints":[],"#,
                r#""expiresAt":"2026-11-23T10:54:04Z","tokenFingerprints":[],"#,
                r#""fingerprintKeyId":null,"fromCache":false,"clientAddr":"127.0.0.1","#,
                r#""userAgent":"curl/8","latencyMs":12,"upstreamError":null,"#,
                r#""callerRequestId":null,"shed":null}"#,
            )
        );
    }
}
