//! Integration tests: the real service over HTTP, with real Postgres, moto and a JWKS issuer.

#![expect(
    unreachable_pub,
    reason = "a test binary exports nothing; `pub` marks what the harness offers the test modules"
)]

mod helpers;

mod audit;
mod audit_api;
mod audit_reads;
mod authentication;
mod authorization;
mod aws_failures;
mod cache;
mod chain;
mod chain_faults;
mod cli;
mod client;
mod config_secrets;
mod connections;
mod deny;
mod deny_faults;
mod durability;
mod egress;
mod flood;
mod formats;
mod health;
mod issue;
mod jwt_cache;
mod limits;
mod metrics;
mod openapi;
mod reload;
mod scoping;
mod shipping;
mod shutdown;
mod tls;
mod tls_listener;
mod token_checks;
mod whoami;
