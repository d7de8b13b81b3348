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
    use super::super::IssuanceRecord;
    use super::super::chain::tests::row;

    #[test]
    fn the_api_shows_every_field_in_the_contracts_order_and_forms() {
        let shown = IssuanceRecord::from(row());
        let fingerprint = "ab".repeat(32);
        assert_eq!(
            serde_json::to_string(&shown).unwrap(),
            [
                r#"{"id":7,"occurredAt":"2026-11-23T10:54:04.123456Z","#,
                r#""recordedAt":"2026-11-23T10:54:04.123456Z","requestId":"r-1","#,
                r#""outcome":"issued","reason":"issued","httpStatus":200,"issuer":"ci","#,
                r#""subject":"repo:acme/api","rule":"acme","#,
                r#""roleArn":"arn:aws:iam::111122223333:role/ecr","#,
                r#""sessionName":"repo-acme-api.0123","regions":["us-east-1"],"#,
                r#""registryIds":["111122223333"],"access":"pull","repositories":["acme/*"],"#,
                r#""sessionTags":{"repo":"acme/api"},"#,
                r#""proxyEndpoints":["https://111122223333.dkr.ecr.us-east-1.amazonaws.com"],"#,
                r#""expiresAt":"2026-11-23T10:54:04Z","#,
                &format!(r#""tokenFingerprints":["{fingerprint}"],"fingerprintKeyId":"k1","#),
                r#""fromCache":false,"clientAddr":"127.0.0.1","userAgent":"curl/8","#,
                r#""latencyMs":12,"upstreamError":null,"callerRequestId":null,"shed":null}"#,
            ]
            .concat()
        );
    }
}
