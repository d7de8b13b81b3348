//! The audit log: one append-only Postgres row per decision, committed before any token is
//! returned. Tokens are never stored; a keyed fingerprint identifies them.

mod fingerprint;
mod record;
mod store;

pub use fingerprint::Fingerprinter;
pub use record::{AuditRecord, Outcome};
pub use store::{AuditLog, MIGRATOR};
