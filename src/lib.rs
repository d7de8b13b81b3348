//! ecr-token-broker exchanges a trusted caller's JWT for short-lived Amazon ECR credentials,
//! scoped by rules and recorded in an append-only audit log.
//!
//! # How the code is laid out
//!
//! A request to `POST /v1/ecr/authorization-token` travels through the modules in this order:
//!
//! 1. `app` — middleware: request id (`request_id`), tracing, CORS, size limits, timeouts;
//!    problem+json rendering of every error (`error`). `routes` holds the handlers, one
//!    module per resource; `routes/ecr.rs` is this one.
//! 2. `auth` — the bearer JWT is verified against the keys of the issuer its `iss` names;
//!    `rate_limit` then takes one request from the caller's token bucket before anything
//!    else is decided (`routes/caller.rs`, on every endpoint behind a token; 429 when
//!    empty), or from the client network's when the token fails.
//! 3. `kill_switch`, `policy` — a caller on the deny list (the config's `[[deny]]`, or the
//!    entries admins store through `/v1/admin/deny`, polled by `kill_switch`) is refused
//!    before any rule; then the first rule whose claim matchers all match picks the role;
//!    the request body may only narrow what that rule allows, and the grant becomes a
//!    session policy.
//! 4. `credentials` — a cached credential while it has enough life left (`credentials/cache`);
//!    otherwise STS `AssumeRole` with the caller's identity on the session, then ECR
//!    `GetAuthorizationToken` with exactly those temporary credentials, once for all the
//!    requests that want the same credential at the same time, each call held to the
//!    upstream ceiling (503 when AWS would be called too much).
//! 5. `audit` — the decision is committed to Postgres before any token is returned; if it
//!    cannot be, the caller gets 503 and no token.
//!
//! `issuance` is one issuance from step 3 to the commit of step 5, in its own task. `config`
//! reads the file once into the types the others run on; `domain` holds the value types
//! that can only hold valid values. What a config reload replaces (verifier,
//! rules, admins, rate limits, deny lists) is one snapshot (`app/snapshot.rs`) that each
//! request loads once, so it finishes on the config it started with (`app/reload.rs`).
//! `egress` builds how calls leave the service (the proxy from the environment, and
//! `AWS_CA_BUNDLE` for AWS).
//! `metrics` counts and times every stage for `GET /metrics`; each stage is handed its
//! handles when the application is built.
//!
//! The audit row follows the request: the handler starts an `AuditRecord`
//! (`audit/record.rs`) from the request's facts, `issuance` fills it in as each stage passes
//! (caller, rule, grant, session, what was issued and whether from the cache), decides it
//! and hands it to the `AuditWriter` (`audit/writer.rs`), which commits it with
//! whatever else is waiting in one transaction (`audit/store.rs`), each row hash-chained to
//! the one before (`audit/chain.rs`); only then is the response built, carrying the row's id
//! and hash as its receipt. The committed rows then go, as JSON lines, to the audit sink
//! (`audit/sink.rs`), never holding up a request. The record's fields are the table's
//! columns: the same type is inserted, read back by `GET /v1/audit/issuances`, `audit
//! verify` and `audit export`, shipped, and hashed, all of it made from one field table
//! (`audit/fields.rs`).

// Everything is crate-private but what the binary, the integration tests and the benchmark
// use, so that the compiler reports dead code and the exported surface stays small.
mod app;
mod audit;
mod auth;
pub mod cli;
mod config;
mod credentials;
mod domain;
mod egress;
mod error;
mod issuance;
mod kill_switch;
mod metrics;
mod policy;
mod rate_limit;
mod request_id;
mod routes;
pub mod telemetry;

pub use app::{Application, READER_APPLICATION_NAME};
pub use audit::chain::ChainKey;
pub use audit::{
    AppendBounds, AuditRecord, AuditWriter, ChainAppender, ChainEntry, MIGRATOR, Outcome,
    StoredRow, WriterLimits,
};
pub use config::Config;
pub use routes::{Endpoint, endpoints};
