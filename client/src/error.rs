//! The client's one error type. Every message is a single line that names what failed and
//! never carries a JWT, a password or an authorization token.

/// Why the client could not produce a credential.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// The environment's settings are missing or invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The caller's JWT could not be read from its source.
    #[error("reading the JWT: {0}")]
    Jwt(String),
    /// The broker refused the caller (401 or 403), with the problem's `detail`.
    #[error("the broker refused the request ({status}): {detail}{request_id}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The problem+json `detail`, or the reason phrase.
        detail: String,
        /// ` (request id …)` or empty.
        request_id: RequestId,
    },
    /// The broker answered with an error other than a refusal, after any retries.
    #[error("the broker failed ({status}): {detail}{request_id}")]
    Broker {
        /// The HTTP status.
        status: u16,
        /// The problem+json `detail`, or the reason phrase.
        detail: String,
        /// ` (request id …)` or empty.
        request_id: RequestId,
    },
    /// The broker's `/v1/whoami` says no rule allows this caller anything.
    #[error("the broker allows this caller nothing: {detail}{request_id}")]
    NotAllowed {
        /// Why, as the broker says.
        detail: String,
        /// ` (request id …)` or empty.
        request_id: RequestId,
    },
    /// The broker could not be reached, or its answer was not what the contract promises.
    #[error("talking to the broker: {0}")]
    Transport(String),
    /// The input on stdin did not follow the protocol.
    #[error("{0}")]
    Protocol(String),
    /// The on-disk cache could not be read or written.
    #[error("the credential cache: {0}")]
    Cache(String),
}

/// The broker's request id, rendered as ` (request id …)` so an operator can find the audit
/// row; empty when the response had none.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RequestId(pub(crate) Option<String>);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(id) => write!(f, " (request id {id})"),
            None => Ok(()),
        }
    }
}
