//! `check-config FILE --assume-role RULE --claims JSON`: the AWS call a rule makes for a
//! token with these claims, built by the issuing path's own code and printed instead of sent,
//! so that the IAM roles and policies a config relies on can be checked without a token.

use anyhow::Context;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::Caller;
use crate::config::Config;
use crate::credentials::CredentialRequest;
use crate::issuance::{credential_request, unique_session_suffix};
use crate::kill_switch::DenyList;
use crate::policy::IssueRequest;

/// The printout: what the broker grants, and the AssumeRole call it makes for it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AssumedRole {
    rule: String,
    access: &'static str,
    pull_through_cache: bool,
    repositories: Vec<String>,
    endpoints: Vec<Endpoint>,
    assume_role: AssumeRoleInput,
}

/// One registry endpoint the token is fetched for.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    host: String,
    region: String,
    registry_id: String,
}

/// The AssumeRole parameters under AWS's own names, so that the object is the input of
/// `aws sts assume-role --cli-input-json` as it stands.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AssumeRoleInput {
    role_arn: String,
    role_session_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_identity: Option<String>,
    duration_seconds: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<String>,
    policy: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tags: Vec<Tag>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    transitive_tag_keys: Vec<String>,
}

/// A session tag, as AWS spells it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

/// The JSON printout for rule `rule_name` of a validated `config`, a token with `claims` (a
/// JSON object) and the issue request `request` (a body as JSON; `None`: the most the rule
/// allows). Fails, saying why, wherever the service would refuse such a token: another rule
/// matches it first, the rule does not match it, a `[[deny]]` entry refuses it, or the rule
/// cannot be applied to it.
pub(super) fn explain(
    config: &Config,
    rule_name: &str,
    claims: &str,
    request: Option<&str>,
) -> anyhow::Result<String> {
    let claims: Map<String, Value> = serde_json::from_str(claims)
        .context("--claims must be a JSON object of a token's claims")?;
    let rules = &config.rules;
    let rule = rules.named(rule_name).with_context(|| {
        format!(
            "no rule is named {rule_name:?} (rules: {})",
            rules.names().collect::<Vec<_>>().join(", ")
        )
    })?;
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.name == rule.issuer)
        .context("the rule's issuer is configured")?;
    if let Some(iss) = claims.get("iss") {
        anyhow::ensure!(
            iss.as_str() == Some(issuer.issuer.as_str()),
            "the claims' iss is {iss}, but rule {rule_name} is for issuer {} ({})",
            issuer.name,
            issuer.issuer
        );
    }
    if let Some(mismatch) = rule.first_mismatch(&claims) {
        anyhow::bail!(
            "rule {rule_name} does not match these claims: {}: {}",
            mismatch.claim,
            mismatch.reason
        );
    }
    if let Some(first) = rules
        .first_match(&rule.issuer, &claims)
        .filter(|first| first.name != rule.name)
    {
        anyhow::bail!(
            "rule {} comes before rule {rule_name} and matches these claims first: the broker would apply it",
            first.name
        );
    }
    let caller = Caller {
        issuer: rule.issuer.as_str().into(),
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        claims,
    };
    let deny = DenyList::compile(&config.deny).context("compiling [[deny]]")?;
    if let Some(entry) = deny.first_denial(&caller, Some(&rule.name)) {
        anyhow::bail!(
            "{} refuses these claims: the broker would answer 403 (denied_by_policy)",
            entry.source
        );
    }
    let request = match request {
        Some(body) => {
            serde_json::from_str(body).context("--request must be an issue request body")?
        }
        None => IssueRequest::widest(rule),
    };
    let grant = rule.grant(&request, &caller.claims)?;
    let identity = rule.session_identity(&caller.claims, &unique_session_suffix())?;
    let access = grant.access;
    let repositories = grant
        .repositories
        .iter()
        .map(|p| p.as_str().to_owned())
        .collect();
    let CredentialRequest { assume, endpoints } = credential_request(rule, grant, identity);
    let printout = AssumedRole {
        rule: rule.name.clone(),
        access: access.as_str(),
        pull_through_cache: rule.pull_through_cache,
        repositories,
        endpoints: endpoints
            .iter()
            .map(|e| Endpoint {
                host: e.host(),
                region: e.region().to_string(),
                registry_id: e.registry_id().to_string(),
            })
            .collect(),
        assume_role: AssumeRoleInput {
            role_arn: assume.role_arn.to_string(),
            role_session_name: assume.session_name.to_string(),
            source_identity: assume.source_identity.map(|s| s.as_str().to_owned()),
            duration_seconds: assume.duration.as_secs(),
            external_id: assume.external_id,
            policy: assume.policy.as_str().to_owned(),
            tags: assume
                .tags
                .into_iter()
                .map(|t| Tag {
                    key: t.key,
                    value: t.value,
                })
                .collect(),
            transitive_tag_keys: assume.transitive_tag_keys,
        },
    };
    Ok(serde_json::to_string_pretty(&printout).expect("the printout serialises"))
}
