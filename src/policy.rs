//! Which role a caller gets: ordered rules, first match wins, no match is a denial.
//!
//! A rule matches a verified caller when the caller's issuer is the rule's and every claim
//! matcher of the rule matches. The request may then only narrow what the rule allows.

mod audit_admins;
mod claim_path;
mod grant;
mod matcher;
mod request;
mod rule;
pub mod session_policy;
mod session_tags;
mod template;

pub use audit_admins::AuditAdmins;
pub use claim_path::{ClaimPath, InvalidPointer, JsonPointer};
pub use grant::{Denial, Grant, Refusal, SessionIdentity};
pub use matcher::{ClaimMatcher, InvalidPattern, Mismatch};
pub use request::{IssueRequest, MAX_ENDPOINTS, MAX_REPOSITORIES, Selection};
/// A minimal rule config, for other modules' unit tests.
#[cfg(test)]
pub(crate) use rule::tests::rule_config;
pub use rule::{InvalidRule, Rule, Rules};
pub use session_tags::{SessionTag, SessionTagTemplates};
pub use template::{RenderError, Template, TemplateError, ValueRule};
