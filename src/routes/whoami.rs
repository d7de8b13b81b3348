//! `GET /v1/whoami`: which issuer and rule a JWT maps to, what it may ask for and whether the deny
//! list stops it, the answer to "why am I denied". It issues nothing and calls no AWS API.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use super::RequestMeta;
use crate::app::{AppState, Current};
use crate::auth::Caller;
use crate::config::WhoamiDetail;
use crate::error::ApiError;
use crate::policy::{Denial, Rule};
use crate::routes::no_store_json;

pub(super) fn router() -> super::Routes {
    super::Routes::new().get("/v1/whoami", get_whoami)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WhoAmI {
    issuer: String,
    subject: String,
    /// The rule that matched, if any.
    rule: Option<String>,
    /// What the matched rule lets this caller ask for.
    allowed: Option<Allowed>,
    /// Whether the caller is on the deny list, or the stored one is too old to clear it:
    /// then nothing is issued to it, whatever rule matches.
    denied: bool,
    /// Why the matched rule cannot be applied to this token, if it cannot.
    problem: Option<String>,
    /// The issuer's rules in order, up to the one that matched; with minimal detail only
    /// when none matched.
    rules: Vec<RuleCheck>,
    request_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Allowed {
    role_arn: String,
    regions: Vec<String>,
    registry_ids: Vec<String>,
    access: String,
    repositories: Vec<String>,
    max_duration_seconds: u32,
    source_identity: Option<String>,
    session_tags: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RuleCheck {
    name: String,
    matches: bool,
    /// The first claim that did not match.
    mismatch: Option<ClaimMismatch>,
}

#[derive(Serialize)]
struct ClaimMismatch {
    claim: String,
    /// What the rule expected: only with full detail.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Which issuer and rule this JWT maps to and what it may ask for, issuing nothing and
/// calling no AWS API: the answer to "why am I denied".
async fn get_whoami(
    State(state): State<AppState>,
    current: Current,
    meta: RequestMeta,
    caller: Caller,
) -> Response {
    let full = state.server.whoami_detail == WhoamiDetail::Full;
    let mut rules = Vec::new();
    let mut matched = None;
    for rule in current.rules.of_issuer(&caller.issuer) {
        let mismatch = rule.first_mismatch(&caller.claims);
        rules.push(RuleCheck {
            name: rule.name.clone(),
            matches: mismatch.is_none(),
            mismatch: mismatch.map(|m| ClaimMismatch {
                claim: m.claim,
                reason: full.then_some(m.reason),
            }),
        });
        if rules.last().is_some_and(|r| r.matches) {
            matched = Some(rule);
            break;
        }
    }
    // The rules before the match are other callers' business, however they failed.
    if matched.is_some() && !full {
        rules.clear();
    }
    // Which entry denies it is the operators' business: the entry may name other callers.
    // A stored list too old to trust clears nobody, so it counts as denied too.
    let denial = match current
        .deny
        .denial(&caller, matched.map(|r| r.name.as_str()))
    {
        Ok(entry) => entry.map(|_| ApiError::DeniedByPolicy),
        Err(stale) => Some(ApiError::from(stale)),
    };
    let denied = denial.is_some();
    let (allowed, problem) = match matched.map(|rule| allowed(rule, &caller)) {
        _ if denied => (None, denial.map(|d| d.to_string())),
        Some(Ok(allowed)) => (Some(allowed), None),
        Some(Err(denial)) => (None, Some(denial.to_string())),
        None => (None, None),
    };
    let body = WhoAmI {
        issuer: caller.issuer.to_string(),
        subject: caller.subject,
        rule: matched.map(|r| r.name.clone()),
        allowed,
        denied,
        problem,
        rules,
        request_id: meta.request_id,
    };
    no_store_json(body)
}

fn allowed(rule: &Rule, caller: &Caller) -> Result<Allowed, Denial> {
    let repositories = rule.allowed_repositories(&caller.claims)?;
    let identity = rule.session_identity(&caller.claims, "whoami")?;
    Ok(Allowed {
        role_arn: rule.role_arn.to_string(),
        regions: rule.regions.iter().map(ToString::to_string).collect(),
        registry_ids: rule.registry_ids.iter().map(ToString::to_string).collect(),
        access: rule.access.to_string(),
        repositories: repositories.iter().map(|r| r.as_str().to_owned()).collect(),
        max_duration_seconds: rule.session_duration.as_secs(),
        source_identity: identity.source_identity.map(|s| s.as_str().to_owned()),
        session_tags: identity
            .tags
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect(),
    })
}
