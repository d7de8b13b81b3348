//! The audit log: one append-only, hash-chained Postgres row per decision, committed before
//! any token is returned. Tokens are never stored; a keyed fingerprint identifies them.
//!
//! Requests hand records to a group-commit [`AuditWriter`]; [`chain`] defines what each row's
//! hash covers, [`verify()`] walks the chain and [`prune()`] drops old months of it.
//! [`AuditLog`] also reads the log back: pages of records by filter, and the records of a
//! token found by its fingerprints.

mod appender;
pub(crate) mod chain;
mod chain_settings;
mod columns;
mod export;
mod fields;
mod fingerprint;
mod log;
mod prune;
mod query;
mod record;
mod shed;
mod shown;
mod sink;
mod store;
mod verify;
mod witness;
mod writer;

pub use appender::{AppendBounds, ChainAppender};
pub use chain::ChainEntry;
pub(crate) use chain_settings::AuditChainConfig;
pub(crate) use export::export;
pub(crate) use fingerprint::{Fingerprinter, Fingerprinters, KeyedFingerprint};
pub(crate) use log::AuditLog;
pub(crate) use prune::{MonthStart, prune};
pub(crate) use query::{IssuanceFilter, Page, Scope};
pub(crate) use record::IssuanceRecord;
pub use record::{AuditRecord, Outcome};
pub(crate) use shown::instant;
pub(crate) use sink::spawn as spawn_sink;
pub(crate) use sink::{AuditSinkConfig, SinkKind};
pub use store::MIGRATOR;
pub use store::StoredRow;
pub(crate) use store::migrate;
pub(crate) use verify::verify;
pub(crate) use witness::spawn_head_log;
pub(crate) use writer::AuditError;
pub use writer::{AuditWriter, WriterLimits};
