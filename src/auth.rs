//! Who is calling: bearer JWTs verified against the keys of trusted issuers.
//!
//! The token's `iss` (read before verification, used only to pick keys) selects the issuer;
//! then the signature, `alg` allowlist, `iss`, `aud`, `exp` and `nbf` are all checked with
//! that issuer's keys and settings before any claim is believed, and after them what the
//! issuer asks for beyond that: `typ`, `iat` and token age, and single use of each `jti`.
//! A token that verified lately is spared only its signature check ([`verified`]).

mod bearer;
mod ca_bundle;
mod checks;
mod expiring;
mod jwks;
mod replay;
mod settings;
mod verified;
mod verifier;

pub(crate) use bearer::verify_bearer;
pub(crate) use ca_bundle::CaBundle;
pub(crate) use jwks::{KeySet, key_client};
pub(crate) use settings::{FetchableUrl, IssuerSettings, KeySource, SharedSecret};
pub(crate) use verifier::{AuthError, Caller, Verifier};
