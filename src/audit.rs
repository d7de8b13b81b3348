//! The audit log: one append-only, hash-chained Postgres row per decision, committed before
//! any token is returned. Tokens are never stored; a keyed fingerprint identifies them.
//!
//! Requests hand records to a group-commit [`AuditWriter`]; [`chain`] defines what each row's
//! hash covers, [`verify()`] walks the chain and [`prune()`] drops old months of it.
//! [`AuditLog`] also reads the log back: pages of records by filter, and the records of a
//! token found by its fingerprints.

pub mod chain;
mod fingerprint;
mod log;
mod prune;
mod query;
mod record;
mod shed;
mod store;
mod verify;
mod witness;
mod writer;

pub use fingerprint::{Fingerprinter, Fingerprinters, KeyedFingerprint};
pub use log::AuditLog;
pub use prune::{MonthStart, Pruned, prune};
pub use query::{IssuanceFilter, MAX_TOKEN_RECORDS, Page, Scope};
pub use record::{AuditRecord, Outcome, SessionTags};
pub use shed::{SHED_REASON, ShedCount, ShedSummary};
pub use store::{AppendBounds, MIGRATOR, append, migrate};
pub use verify::{Break, ExpectedHead, Predecessor, Verification, Walk, verify};
pub use witness::spawn_head_log;
pub use writer::{AuditError, AuditWriter, WriterLimits};
