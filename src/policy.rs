//! Which role a caller gets: ordered rules, first match wins, no match is a denial.
//!
//! A rule matches a verified caller when the caller's issuer is the rule's and every claim
//! matcher of the rule matches. The request may then only narrow what the rule allows.

mod admin_rules;
mod claim_path;
mod grant;
mod matcher;
mod request;
mod rule;
pub(crate) mod session_policy;
mod session_tags;
mod template;

pub(crate) use admin_rules::AdminRules;
pub(crate) use claim_path::{ClaimPath, InvalidPointer};
pub(crate) use grant::{Denial, Grant, Refusal, SessionIdentity};
pub(crate) use matcher::{ClaimMatcher, ClaimPattern, ClaimPatterns, InvalidPattern, Mismatch};
pub(crate) use request::IssueRequest;
/// A minimal rule, for other modules' unit tests.
#[cfg(test)]
pub(crate) use rule::tests::test_rule;
pub(crate) use rule::{Rule, Rules};
pub(crate) use session_tags::{SessionTag, SessionTagTemplates};
pub(crate) use template::{RenderError, Template, ValueRule};
