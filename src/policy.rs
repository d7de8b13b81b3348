//! Which role a caller gets: ordered rules, first match wins, no match is a denial.
//!
//! A rule matches a verified caller when the caller's issuer is the rule's and every claim
//! matcher of the rule matches. The request may then only narrow what the rule allows.

mod matcher;
mod rule;

pub use matcher::{ClaimMatcher, InvalidPattern};
pub use rule::{Grant, IssueRequest, Refusal, Rule, Rules};
