//! A compiled `[[rules]]` entry (`Rule`) and the ordered list of them (`Rules`), where the first
//! rule whose issuer and claim matchers all match wins.

use serde_json::{Map, Value};

use super::Mismatch;
use super::{ClaimMatcher, SessionTagTemplates, Template};
use crate::domain::CacheMode;
use crate::domain::{Access, Region, RegistryId, RoleArn, SessionDuration};

/// A compiled `[[rules]]` entry, built by the config, which compiles its matchers and
/// templates once.
#[derive(Debug)]
pub(crate) struct Rule {
    /// The rule's name.
    pub name: String,
    /// The issuer (by config name) whose callers it considers.
    pub issuer: String,
    /// One matcher per claim the rule names.
    pub claims: Vec<ClaimMatcher>,
    /// The token's `aud` must be one of the rule's own audiences
    /// ([`ClaimMatcher::audiences`]), if it names any.
    pub audiences: Option<ClaimMatcher>,
    /// The role it grants.
    pub role_arn: RoleArn,
    /// The regions it allows; the first is the default.
    pub regions: Vec<Region>,
    /// The registries it allows (at least the role's account); the first is the default.
    pub registry_ids: Vec<RegistryId>,
    /// The most it grants.
    pub access: Access,
    /// Repository pattern templates; empty means every repository.
    pub repositories: Vec<Template>,
    /// The longest session it grants.
    pub session_duration: SessionDuration,
    /// RoleSessionName template.
    pub session_name: Template,
    /// SourceIdentity template.
    pub source_identity: Template,
    /// Session tag templates.
    pub session_tags: SessionTagTemplates,
    /// ExternalId for the role's trust policy, if it needs one.
    pub external_id: Option<String>,
    /// Whether pulls may go through a pull-through cache rule.
    pub pull_through_cache: bool,
    /// Who may be handed a cached credential.
    pub cache: CacheMode,
}

impl Rule {
    fn matchers(&self) -> impl Iterator<Item = &ClaimMatcher> {
        self.claims.iter().chain(&self.audiences)
    }

    /// The claims (names or JSON pointers) the rule matches on, as written.
    pub(crate) fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.claims.iter().map(ClaimMatcher::claim)
    }

    /// Whether a caller of `issuer` with these claims matches every claim matcher.
    pub(crate) fn matches(&self, issuer: &str, claims: &Map<String, Value>) -> bool {
        self.issuer == issuer && self.matchers().all(|m| m.matches(claims))
    }

    /// The first claim matcher these claims fail, if any.
    pub(crate) fn first_mismatch(&self, claims: &Map<String, Value>) -> Option<Mismatch> {
        self.matchers().find_map(|m| m.explain(claims).err())
    }
}

/// The ordered rule list.
#[derive(Debug, Default)]
pub(crate) struct Rules(Vec<Rule>);

impl Rules {
    /// The rules, in this order.
    pub(crate) fn new(rules: Vec<Rule>) -> Self {
        Self(rules)
    }

    /// Every rule, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.0.iter()
    }

    /// How many rules there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The first rule that matches, if any.
    pub(crate) fn first_match(&self, issuer: &str, claims: &Map<String, Value>) -> Option<&Rule> {
        self.first_match_at(issuer, claims).map(|at| self.at(at))
    }

    /// Where the first rule that matches is, if any.
    pub(crate) fn first_match_at(
        &self,
        issuer: &str,
        claims: &Map<String, Value>,
    ) -> Option<usize> {
        self.0.iter().position(|r| r.matches(issuer, claims))
    }

    /// The rule at `position`, as [`Rules::first_match_at`] gave it.
    pub(crate) fn at(&self, position: usize) -> &Rule {
        &self.0[position]
    }

    /// The rule with this name, if any.
    pub(crate) fn named(&self, name: &str) -> Option<&Rule> {
        self.0.iter().find(|r| r.name == name)
    }

    /// Every rule's name, in order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|r| r.name.as_str())
    }

    /// The rules of one issuer, in order.
    pub(crate) fn of_issuer<'a>(&'a self, issuer: &'a str) -> impl Iterator<Item = &'a Rule> {
        self.0.iter().filter(move |r| r.issuer == issuer)
    }
}

#[cfg(test)]
pub(super) mod tests;
