//! The reloadable part of the state, replaced as a whole by a config reload or a new read
//! of the stored deny list, and loaded once by each request when it starts, so that a
//! request runs to its end on the config it started with.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use crate::auth::{Caller, Verifier};
use crate::config::Config;
use crate::kill_switch::{Admission, DenyLists, Names};
use crate::metrics::Metrics;
use crate::policy::{AdminRules, Rules};
use crate::rate_limit::RateLimits;

/// Everything a config reload may change, and the stored deny list.
#[derive(Clone)]
pub(crate) struct Snapshot {
    /// Verifies bearer JWTs.
    pub verifier: Arc<Verifier>,
    /// The ordered rules.
    pub rules: Arc<Rules>,
    /// Which rules' callers administer the audit log.
    pub audit_admins: Arc<AdminRules>,
    /// Which rules' callers administer the deny list.
    pub deny_admins: Arc<AdminRules>,
    /// Each caller's token bucket on the issuing endpoint.
    pub rate_limits: Arc<RateLimits>,
    /// The config's `[[deny]]` and the stored deny list, as last read (and changed here
    /// since), compiled against this config.
    pub deny: DenyLists,
}

impl Snapshot {
    /// The snapshot of a validated config. With `previous`, what did not change is kept:
    /// issuers (with their keys), and rate limit buckets when the limits are the same. The
    /// stored deny list starts unread: installing the snapshot carries the one in force
    /// over, compiled against this config ([`super::Shared::install`]).
    pub(crate) fn build(
        config: &Config,
        previous: Option<&Self>,
        http: &reqwest::Client,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let verifier = match previous {
            Some(previous) => previous.verifier.renewed(&config.issuers, http, metrics)?,
            None => Verifier::new(&config.issuers, http, metrics)?,
        };
        verifier.spawn_key_refresh();
        let rate_limits = match previous {
            Some(previous) => previous.rate_limits.renewed(&config.rate_limit),
            None => Arc::new(RateLimits::new(&config.rate_limit)),
        };
        let names = Names {
            issuers: config
                .issuers
                .iter()
                .map(|i| (i.name.clone(), i.issuer.clone()))
                .collect(),
            rules: config.rules.names().map(str::to_owned).collect(),
        };
        Ok(Self {
            verifier: Arc::new(verifier),
            rules: Arc::clone(&config.rules),
            audit_admins: Arc::new(AdminRules::new(&config.audit.admin_rules)),
            deny_admins: Arc::new(AdminRules::new(&config.admin.rules)),
            rate_limits,
            deny: DenyLists::new(&config.deny, names, config.admin.deny_max_staleness())
                .context("compiling [[deny]]")?,
        })
    }

    /// Where `caller` stands under this snapshot: its first matching rule and what the deny
    /// lists say of it, decided once for the whole request.
    pub(crate) fn admission(&self, caller: &Caller) -> Admission {
        Admission::decide(&self.rules, &self.deny, caller)
    }
}

/// The request's snapshot: loaded by whichever extractor asks first, and the same for
/// everything else in the request.
#[derive(Clone)]
pub(crate) struct Current(pub Arc<Snapshot>);

impl FromRequestParts<AppState> for Current {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(current) = parts.extensions.get::<Self>() {
            return Ok(current.clone());
        }
        let current = Self(state.snapshot.load_full());
        parts.extensions.insert(current.clone());
        Ok(current)
    }
}

impl std::ops::Deref for Current {
    type Target = Snapshot;

    fn deref(&self) -> &Snapshot {
        &self.0
    }
}
