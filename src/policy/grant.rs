//! What a matched rule lets one request have: `Rule::grant` narrows the rule's allowance to what
//! the request asks for, refusing anything beyond it (`Denial`), and builds the session policy that
//! enforces the result at AWS; `Rule::session_identity` renders the session's name, source identity
//! and tags. A request can only narrow, never widen.

use serde_json::{Map, Value};

use super::request::{IssueRequest, Selection};
use super::session_policy::{self, Permissions, PolicyTooLarge, RepositoryScope, SessionPolicy};
use super::{RenderError, Rule, SessionTag, ValueRule};
use crate::domain::{
    Access, Region, RegistryHost, RegistryId, RepositoryPattern, RoleSessionName, SessionDuration,
    SourceIdentity,
};

/// What a matched rule lets one request have.
#[derive(Debug)]
pub(crate) struct Grant {
    /// One entry per registry endpoint asked for.
    pub endpoints: Vec<RegistryHost>,
    /// Pull or push.
    pub access: Access,
    /// The repository patterns the session policy allows.
    pub repositories: Vec<RepositoryPattern>,
    /// The session's lifetime.
    pub duration: SessionDuration,
    /// The inline session policy that enforces all of the above at AWS.
    pub policy: SessionPolicy,
}

/// Why a matched rule gives a request nothing.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Denial {
    /// 403: the request asked for more than the rule allows.
    #[error(transparent)]
    NotAllowed(#[from] Refusal),
    /// 403: the rule cannot be applied to this token's claims (a template's claim is
    /// missing or its value would widen a pattern).
    #[error("rule {rule} cannot be applied to this token: {source}")]
    Unusable {
        /// The rule.
        rule: String,
        /// Why.
        source: RenderError,
    },
    /// 400: the session policy would exceed what STS accepts.
    #[error(transparent)]
    TooBroad(#[from] PolicyTooLarge),
}

/// A request that asked for more than its rule allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule} does not allow: {}", refused.join(", "))]
pub(crate) struct Refusal {
    /// The rule that matched.
    pub rule: String,
    /// Each refused item.
    pub refused: Vec<String>,
}

/// The session's identity: its name, source identity and tags.
#[derive(Debug, Clone)]
pub(crate) struct SessionIdentity {
    /// RoleSessionName.
    pub session_name: RoleSessionName,
    /// SourceIdentity, when the template renders to at least two characters.
    pub source_identity: Option<SourceIdentity>,
    /// Session tags.
    pub tags: Vec<SessionTag>,
    /// Keys of the tags that pass on to chained sessions.
    pub transitive_tag_keys: Vec<String>,
}

impl Rule {
    /// The repository patterns this rule allows this caller; `*` when the rule names none.
    pub(crate) fn allowed_repositories(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<Vec<RepositoryPattern>, Denial> {
        let unusable = |source| Denial::Unusable {
            rule: self.name.clone(),
            source,
        };
        if self.repositories.is_empty() {
            return Ok(vec![
                RepositoryPattern::try_from("*".to_owned()).expect("* is a pattern"),
            ]);
        }
        self.repositories
            .iter()
            .map(|template| {
                let rendered = template
                    .render(claims, ValueRule::RepositoryName)
                    .map_err(unusable)?;
                RepositoryPattern::try_from(rendered).map_err(|_| {
                    unusable(RenderError::Refused {
                        placeholder: template.as_str().to_owned(),
                        reason: "the rendered pattern is not a repository pattern",
                    })
                })
            })
            .collect()
    }

    /// Narrows this rule's allowance to what the request asks for, refusing anything beyond
    /// it, and builds the session policy that enforces the result.
    pub(crate) fn grant(
        &self,
        request: &IssueRequest,
        claims: &Map<String, Value>,
    ) -> Result<Grant, Denial> {
        let allowed_repositories = self.allowed_repositories(claims)?;
        let endpoints = self.endpoints(&request.selection);
        let mut refused = Vec::new();
        let mut refuse = |item: String| {
            if !refused.contains(&item) {
                refused.push(item);
            }
        };
        for endpoint in &endpoints {
            if !self.regions.contains(endpoint.region()) {
                refuse(format!("region {}", endpoint.region()));
            }
            if !self.registry_ids.contains(endpoint.registry_id()) {
                refuse(format!("registry {}", endpoint.registry_id()));
            }
        }
        if request.access > self.access {
            refuse(format!(
                "access {} (at most {})",
                request.access, self.access
            ));
        }
        let repositories = match &request.repositories {
            Some(asked) => {
                for pattern in asked
                    .iter()
                    .filter(|p| !allowed_repositories.iter().any(|a| a.covers(p)))
                {
                    refuse(format!("repository {}", pattern.as_str()));
                }
                asked.clone()
            }
            None => allowed_repositories,
        };
        let duration = request.duration_seconds.unwrap_or(self.session_duration);
        if duration > self.session_duration {
            refuse(format!(
                "durationSeconds {} (at most {})",
                duration.as_secs(),
                self.session_duration.as_secs()
            ));
        }
        if !refused.is_empty() {
            return Err(Refusal {
                rule: self.name.clone(),
                refused,
            }
            .into());
        }
        let scopes: Vec<RepositoryScope<'_>> = endpoints
            .iter()
            .map(|e| RepositoryScope {
                region: e.region(),
                registry_id: e.registry_id(),
            })
            .collect();
        let permissions = Permissions {
            access: request.access,
            pull_through_cache: self.pull_through_cache,
        };
        let policy = session_policy::build(permissions, &scopes, &repositories)?;
        Ok(Grant {
            endpoints,
            access: request.access,
            repositories,
            duration,
            policy,
        })
    }

    fn endpoints(&self, selection: &Selection) -> Vec<RegistryHost> {
        let standard =
            |region: &Region, id: &RegistryId| RegistryHost::standard(id.clone(), region.clone());
        match selection {
            Selection::Defaults => vec![standard(&self.regions[0], &self.registry_ids[0])],
            Selection::Product {
                regions,
                registry_ids,
            } => {
                let regions = regions.as_deref().unwrap_or(&self.regions[..1]);
                let ids = registry_ids.as_deref().unwrap_or(&self.registry_ids[..1]);
                regions
                    .iter()
                    .flat_map(|r| ids.iter().map(move |id| standard(r, id)))
                    .collect()
            }
            Selection::Hosts(hosts) => hosts.clone(),
        }
    }

    /// The session's name, source identity and tags for this caller. `unique_suffix` makes
    /// the session name unique per issuance.
    pub(crate) fn session_identity(
        &self,
        claims: &Map<String, Value>,
        unique_suffix: &str,
    ) -> Result<SessionIdentity, Denial> {
        let unusable = |source| Denial::Unusable {
            rule: self.name.clone(),
            source,
        };
        let name = self
            .session_name
            .render(claims, ValueRule::Any)
            .map_err(unusable)?;
        let source = self
            .source_identity
            .render(claims, ValueRule::Any)
            .map_err(unusable)?;
        Ok(SessionIdentity {
            session_name: RoleSessionName::for_caller(&name, unique_suffix),
            source_identity: SourceIdentity::for_caller(&source),
            tags: self.session_tags.render(claims).map_err(unusable)?,
            transitive_tag_keys: self.session_tags.transitive_keys().to_vec(),
        })
    }
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
