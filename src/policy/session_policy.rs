//! The inline session policy passed to STS `AssumeRole`, which narrows the role's own
//! permissions to the granted access, registries, regions and repositories.
//!
//! The role's policies stay the ceiling: a session policy can only take permissions away.

use std::collections::BTreeSet;
use std::fmt;

use serde::Serialize;

use crate::domain::{Access, Region, RegistryId, RepositoryPattern};

/// The most characters STS accepts in a session policy's plain text.
pub(crate) const MAX_SESSION_POLICY_CHARS: usize = 2048;

/// Longer repository lists are not searched for patterns that cover others.
const MAX_PATTERNS_TO_PRUNE: usize = 64;

/// The actions that read images.
const PULL_ACTIONS: [&str; 3] = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
];

/// The actions that write images, granted on top of [`PULL_ACTIONS`].
const PUSH_ACTIONS: [&str; 4] = [
    "ecr:CompleteLayerUpload",
    "ecr:InitiateLayerUpload",
    "ecr:PutImage",
    "ecr:UploadLayerPart",
];

/// The actions a first pull through an ECR pull-through cache rule needs on top of
/// [`PULL_ACTIONS`]: importing the upstream image, and creating its repository when this is
/// the first image of it.
const PULL_THROUGH_CACHE_ACTIONS: [&str; 2] =
    ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"];

/// What a session may do with the repositories it is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permissions {
    /// Pull, or pull and push.
    pub access: Access,
    /// Whether a pull may import an image through a pull-through cache rule, which creates its
    /// repository on the first pull: the rule's `pull_through_cache`.
    pub pull_through_cache: bool,
}

/// A session policy document: minified IAM policy JSON that fits STS's size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionPolicy(String);

impl SessionPolicy {
    /// The JSON text, as passed to STS's `Policy` parameter.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One registry in one region whose repositories the policy grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RepositoryScope<'a> {
    /// The registry's region; it also picks the partition of the ARNs.
    pub region: &'a Region,
    /// The account that owns the registry.
    pub registry_id: &'a RegistryId,
}

/// The policy would be longer than STS accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the session policy would be {chars} characters; STS accepts at most {max} — ask for fewer \
     regions, registries or repositories",
    max = MAX_SESSION_POLICY_CHARS
)]
pub(crate) struct PolicyTooLarge {
    /// How many characters the policy would have been.
    pub chars: usize,
}

/// Builds the session policy granting `permissions` on `repositories` in every scope.
///
/// `ecr:GetAuthorizationToken` is always granted, on `*` as IAM requires; it only yields a
/// token, which is worth exactly the repository permissions granted beside it. Those are
/// granted on the ARN of every scope and repository pattern, deduplicated and sorted so the
/// same grant always gives the same text. An empty `repositories` means the rule names no
/// repositories, which allows every repository of the scopes: the pattern `*`. Patterns
/// covered by another pattern are dropped, as they add length and nothing else (in lists of
/// up to 64 patterns; longer lists are taken as they are). The pull-through cache's actions,
/// when granted, apply to exactly the same ARNs, never to a repository the grant does not
/// name. With no scopes, nothing but `ecr:GetAuthorizationToken` is granted.
pub(crate) fn build(
    permissions: Permissions,
    scopes: &[RepositoryScope<'_>],
    repositories: &[RepositoryPattern],
) -> Result<SessionPolicy, PolicyTooLarge> {
    let resources = resources(scopes, repositories);
    let mut statement = vec![Statement {
        sid: "GetAuthorizationToken",
        effect: "Allow",
        action: OneOrMany::One("ecr:GetAuthorizationToken"),
        resource: OneOrMany::One("*"),
    }];
    if !resources.is_empty() {
        // One statement whatever is granted, so each ARN is listed once and more fit the limit.
        let mut actions = PULL_ACTIONS.to_vec();
        if permissions.access == Access::Push {
            actions.extend(PUSH_ACTIONS);
        }
        if permissions.pull_through_cache {
            actions.extend(PULL_THROUGH_CACHE_ACTIONS);
        }
        let sid = match (permissions.access, permissions.pull_through_cache) {
            (Access::Pull, false) => "Pull",
            (Access::Push, false) => "PullAndPush",
            (Access::Pull, true) => "PullThroughCache",
            (Access::Push, true) => "PullAndPushThroughCache",
        };
        statement.push(Statement {
            sid,
            effect: "Allow",
            action: OneOrMany::Many(actions),
            resource: OneOrMany::Many(resources.iter().map(String::as_str).collect()),
        });
    }
    let document = Document {
        version: "2012-10-17",
        statement,
    };
    let json = serde_json::to_string(&document).expect("a policy document always serialises");
    let chars = json.chars().count();
    if chars > MAX_SESSION_POLICY_CHARS {
        return Err(PolicyTooLarge { chars });
    }
    Ok(SessionPolicy(json))
}

/// The repository ARNs for every scope and every pattern that no other pattern covers.
fn resources(
    scopes: &[RepositoryScope<'_>],
    repositories: &[RepositoryPattern],
) -> BTreeSet<String> {
    let every_repository = [RepositoryPattern::try_from("*".to_owned()).expect("`*` is valid")];
    let patterns: BTreeSet<&RepositoryPattern> = if repositories.is_empty() {
        every_repository.iter().collect()
    } else {
        repositories.iter().collect()
    };
    // Pruning is quadratic, and a list this long cannot fit unless it mostly prunes away; so
    // a caller cannot make us spend long on it, and gets `PolicyTooLarge` instead.
    let needed: Vec<&RepositoryPattern> = if patterns.len() > MAX_PATTERNS_TO_PRUNE {
        patterns.iter().copied().collect()
    } else {
        // Of patterns that cover each other (`*` and `**`), keep the first in sort order.
        patterns
            .iter()
            .copied()
            .filter(|p| {
                !patterns
                    .iter()
                    .any(|q| q != p && q.covers(p) && !(p.covers(q) && p < q))
            })
            .collect()
    };
    scopes
        .iter()
        .flat_map(|scope| {
            needed.iter().map(move |pattern| {
                format!(
                    "arn:{}:ecr:{}:{}:repository/{pattern}",
                    scope.region.partition(),
                    scope.region,
                    scope.registry_id
                )
            })
        })
        .collect()
}

/// An IAM policy document.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document<'a> {
    version: &'static str,
    statement: Vec<Statement<'a>>,
}

/// One `Allow` statement.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Statement<'a> {
    sid: &'static str,
    effect: &'static str,
    action: OneOrMany<&'static str>,
    resource: OneOrMany<&'a str>,
}

/// IAM accepts a single string or a list for `Action` and `Resource`.
#[derive(Serialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[cfg(test)]
mod tests;
