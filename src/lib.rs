//! ecr-token-broker exchanges a trusted caller's JWT for short-lived Amazon ECR credentials,
//! scoped by rules and recorded in an append-only audit log.
//!
//! A request to `POST /v1/ecr/authorization-token` travels through the modules in this order:
//!
//! 1. [`app`] — middleware: request id ([`request_id`]), tracing, CORS, size limits,
//!    timeouts; problem+json rendering of every error ([`error`]).
//! 2. [`auth`] — the bearer JWT is verified against the keys of the issuer its `iss` names.
//! 3. [`policy`] — the first rule whose claim matchers all match picks the role;
//!    [`rate_limit`] takes one request from the caller's token bucket (429 when empty); the
//!    request body may only narrow what that rule allows.
//! 4. [`credentials`] — a cached credential while it has enough life left; otherwise STS
//!    `AssumeRole` with the caller's identity on the session, then ECR
//!    `GetAuthorizationToken` with exactly those temporary credentials, once for all the
//!    requests that want the same credential at the same time, each call held to the
//!    upstream ceiling (503 when AWS would be called too much).
//! 5. [`audit`] — the decision is committed to Postgres before any token is returned; if it
//!    cannot be, the caller gets 503 and no token.
//!
//! [`issuance`] strings these steps together; [`routes`] holds the HTTP handlers, [`config`]
//! the typed configuration, [`domain`] the value types that can only hold valid values.

pub mod app;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod error;
pub mod issuance;
pub mod policy;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod telemetry;
