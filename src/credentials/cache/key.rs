//! What a cached credential is keyed by: `CacheKey`, a SHA-256 digest of every input that
//! shapes a credential except the session name, so two different requests never share an
//! entry, and `CallerScope`, the caller a per-caller entry belongs to.

use sha2::{Digest, Sha256};

use crate::credentials::CredentialRequest;
use crate::domain::Access;

/// The caller a per-caller entry belongs to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerScope<'a> {
    /// The issuer's configured name.
    pub issuer: &'a str,
    /// The verified `sub`.
    pub subject: &'a str,
}

/// A digest of everything that shapes a credential: the rule, the caller for per-caller
/// entries, and every input of the AWS calls except the session name, which is unique per
/// issuance. SHA-256 keeps an entry's key at 32 bytes however large the session policy is,
/// and two different inputs never share an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey(pub(super) [u8; 32]);

impl CacheKey {
    /// The key of `request` under `rule`; `caller` is `None` for a shared entry.
    pub(crate) fn new(
        rule: &str,
        caller: Option<CallerScope<'_>>,
        access: Access,
        request: &CredentialRequest,
    ) -> Self {
        let assume = &request.assume;
        let mut key = KeyWriter(Sha256::new());
        key.field(rule);
        match caller {
            Some(caller) => {
                key.field("per-caller");
                key.field(caller.issuer);
                key.field(caller.subject);
            }
            None => key.field("shared"),
        }
        key.field(access.as_str());
        key.field(assume.role_arn.as_str());
        key.number(u64::from(assume.duration.as_secs()));
        key.field(assume.policy.as_str());
        key.optional(assume.source_identity.as_ref().map(|s| s.as_str()));
        key.optional(assume.external_id.as_deref());
        key.count(assume.tags.len());
        for tag in &assume.tags {
            key.field(&tag.key);
            key.field(&tag.value);
        }
        key.count(assume.transitive_tag_keys.len());
        for tag_key in &assume.transitive_tag_keys {
            key.field(tag_key);
        }
        key.count(request.endpoints.len());
        for endpoint in &request.endpoints {
            key.field(endpoint.registry_id().as_str());
            key.field(endpoint.region().as_str());
            key.number(endpoint.kind() as u64);
        }
        Self(key.0.finalize().into())
    }
}

/// Writes each field length-first, so that no two different field lists hash the same
/// bytes (`"ab", "c"` versus `"a", "bc"`), and without allocating: the key is computed on
/// every request, hits included.
struct KeyWriter(Sha256);

impl KeyWriter {
    fn number(&mut self, n: u64) {
        self.0.update(n.to_be_bytes());
    }

    fn count(&mut self, n: usize) {
        self.number(n as u64);
    }

    fn field(&mut self, value: &str) {
        self.count(value.len());
        self.0.update(value.as_bytes());
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            Some(value) => {
                self.0.update([1]);
                self.field(value);
            }
            None => self.0.update([0]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::AssumeRole;
    use crate::domain::{RegistryHost, RoleArn, RoleSessionName, SessionDuration, SourceIdentity};
    use crate::policy::SessionTag;
    use crate::policy::session_policy::{self, Permissions, RepositoryScope};

    fn request(session_name: &str) -> CredentialRequest {
        let endpoint =
            RegistryHost::try_from("111122223333.dkr.ecr.eu-west-1.amazonaws.com".to_owned())
                .expect("a registry host");
        let repositories = vec![
            crate::domain::RepositoryPattern::try_from("team-a/*".to_owned()).expect("pattern"),
        ];
        let policy = session_policy::build(
            Permissions {
                access: Access::Pull,
                pull_through_cache: false,
            },
            &[RepositoryScope {
                region: endpoint.region(),
                registry_id: endpoint.registry_id(),
            }],
            &repositories,
        )
        .expect("a small policy");
        CredentialRequest {
            assume: AssumeRole {
                role_arn: RoleArn::try_from("arn:aws:iam::111122223333:role/pull".to_owned())
                    .expect("an ARN"),
                session_name: RoleSessionName::for_caller(session_name, "0123456789ab"),
                source_identity: SourceIdentity::for_caller("alice"),
                duration: SessionDuration::try_from(900).expect("a duration"),
                external_id: None,
                policy,
                tags: vec![SessionTag {
                    key: "team".to_owned(),
                    value: "a".to_owned(),
                }],
                transitive_tag_keys: Vec::new(),
            },
            endpoints: vec![endpoint],
        }
    }

    const ALICE: CallerScope<'static> = CallerScope {
        issuer: "ci",
        subject: "alice",
    };

    #[test]
    fn the_session_name_does_not_change_the_key() {
        assert_eq!(
            CacheKey::new("r", Some(ALICE), Access::Pull, &request("one")),
            CacheKey::new("r", Some(ALICE), Access::Pull, &request("two")),
        );
    }

    #[test]
    fn every_input_that_shapes_the_credential_changes_the_key() {
        let base = CacheKey::new("r", Some(ALICE), Access::Pull, &request("s"));
        let bob = CallerScope {
            issuer: "ci",
            subject: "bob",
        };
        let other_issuer = CallerScope {
            issuer: "sso",
            subject: "alice",
        };
        let mut variants = vec![
            CacheKey::new("other-rule", Some(ALICE), Access::Pull, &request("s")),
            CacheKey::new("r", Some(bob), Access::Pull, &request("s")),
            CacheKey::new("r", Some(other_issuer), Access::Pull, &request("s")),
            CacheKey::new("r", None, Access::Pull, &request("s")),
            CacheKey::new("r", Some(ALICE), Access::Push, &request("s")),
        ];
        let changes: [fn(&mut CredentialRequest); 8] = [
            |r| {
                r.assume.role_arn =
                    RoleArn::try_from("arn:aws:iam::111122223333:role/other".to_owned()).unwrap()
            },
            |r| r.assume.duration = SessionDuration::try_from(901).unwrap(),
            |r| r.assume.source_identity = None,
            |r| r.assume.external_id = Some("x".to_owned()),
            |r| r.assume.tags[0].value = "b".to_owned(),
            |r| r.assume.transitive_tag_keys = vec!["team".to_owned()],
            |r| {
                r.endpoints = vec![
                    RegistryHost::try_from(
                        "111122223333.dkr.ecr.us-east-1.amazonaws.com".to_owned(),
                    )
                    .unwrap(),
                ];
            },
            |r| {
                r.endpoints = vec![
                    RegistryHost::try_from("111122223333.dkr-ecr.eu-west-1.on.aws".to_owned())
                        .unwrap(),
                ];
            },
        ];
        for change in changes {
            let mut changed = request("s");
            change(&mut changed);
            variants.push(CacheKey::new("r", Some(ALICE), Access::Pull, &changed));
        }
        // Pushing, or pulling through the cache, is another session policy.
        for (access, pull_through_cache) in [(Access::Push, false), (Access::Pull, true)] {
            let mut other_policy = request("s");
            other_policy.assume.policy = session_policy::build(
                Permissions {
                    access,
                    pull_through_cache,
                },
                &[RepositoryScope {
                    region: other_policy.endpoints[0].region(),
                    registry_id: other_policy.endpoints[0].registry_id(),
                }],
                &[crate::domain::RepositoryPattern::try_from("team-a/*".to_owned()).unwrap()],
            )
            .unwrap();
            variants.push(CacheKey::new("r", Some(ALICE), Access::Pull, &other_policy));
        }
        for (i, variant) in variants.iter().enumerate() {
            assert_ne!(*variant, base, "variant {i} must have its own key");
        }
    }

    #[test]
    fn a_caller_scope_cannot_be_spelled_by_shifting_text_between_fields() {
        let split = |issuer, subject| {
            CacheKey::new(
                "r",
                Some(CallerScope { issuer, subject }),
                Access::Pull,
                &request("s"),
            )
        };
        assert_ne!(split("ci", "alice"), split("cia", "lice"));
    }
}
