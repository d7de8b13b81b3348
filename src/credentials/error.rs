//! `AwsError`: a failed AWS call classified into what the HTTP layer and the audit log need
//! (timeout, throttled, refused with its code, unavailable, over the broker's own ceiling). SDK
//! error types stop here.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::metrics::{CountedFailure, UpstreamFailure};

/// How an AWS call failed, in the terms the HTTP layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsErrorKind {
    /// No answer in time.
    Timeout,
    /// AWS asked us to slow down.
    Throttled,
    /// AWS answered with an error, such as `AccessDenied`.
    Refused {
        /// The AWS error code, or `HTTP <status>` when the answer carried none.
        code: String,
    },
    /// AWS could not be reached, or answered with something unusable.
    Unavailable,
    /// Not sent: the broker's own ceiling on calls to this API was reached and did not
    /// free up in time.
    Ceiling {
        /// When there should be room again.
        retry_after: Duration,
    },
}

impl fmt::Display for AwsErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Throttled => f.write_str("throttled"),
            Self::Refused { code } => write!(f, "refused ({code})"),
            Self::Unavailable => f.write_str("unavailable"),
            Self::Ceiling { .. } => f.write_str("held back by the upstream ceiling"),
        }
    }
}

/// A failed AWS call. Cloneable, because every request waiting on one shared call gets its
/// failure.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} {kind}")]
pub(crate) struct AwsError {
    /// The operation, such as `AssumeRole`.
    pub operation: &'static str,
    /// What went wrong.
    pub kind: AwsErrorKind,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl CountedFailure for AwsError {
    fn upstream_failure(&self) -> UpstreamFailure {
        match self.kind {
            AwsErrorKind::Timeout => UpstreamFailure::Timeout,
            AwsErrorKind::Throttled => UpstreamFailure::Throttled,
            AwsErrorKind::Refused { .. } => UpstreamFailure::Refused,
            AwsErrorKind::Unavailable => UpstreamFailure::Unavailable,
            AwsErrorKind::Ceiling { .. } => UpstreamFailure::Ceiling,
        }
    }
}

/// Error codes AWS uses for rate limiting across its APIs.
const THROTTLING_CODES: [&str; 7] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
];

impl AwsError {
    /// A failure without an SDK error behind it.
    pub(crate) fn new(operation: &'static str, kind: AwsErrorKind) -> Self {
        Self {
            operation,
            kind,
            source: None,
        }
    }

    /// Classifies an SDK error. Some endpoints (and emulators) answer with bodies the SDK
    /// cannot parse, so the HTTP status decides when there is no error code.
    pub(super) fn from_sdk<E>(operation: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = match &error {
            SdkError::TimeoutError(_) => AwsErrorKind::Timeout,
            SdkError::DispatchFailure(failure) if failure.is_timeout() => AwsErrorKind::Timeout,
            SdkError::ServiceError(service) => {
                let status = service.raw().status().as_u16();
                match service.err().code() {
                    Some(code) if THROTTLING_CODES.contains(&code) => AwsErrorKind::Throttled,
                    _ if status == 429 => AwsErrorKind::Throttled,
                    Some(code) => AwsErrorKind::Refused {
                        code: code.to_owned(),
                    },
                    None if status >= 500 => AwsErrorKind::Unavailable,
                    None => AwsErrorKind::Refused {
                        code: format!("HTTP {status}"),
                    },
                }
            }
            SdkError::ResponseError(response) if response.raw().status().as_u16() == 429 => {
                AwsErrorKind::Throttled
            }
            _ => AwsErrorKind::Unavailable,
        };
        Self {
            operation,
            kind,
            source: Some(Arc::new(error)),
        }
    }

    /// The audit log's short reason, such as `aws_throttled:AssumeRole` or
    /// `aws_refused:AssumeRole:AccessDenied`: for a failed request, and for the upstream
    /// failure a cached answer hid.
    pub(crate) fn reason(&self) -> String {
        let kind = match &self.kind {
            AwsErrorKind::Refused { code } => {
                return format!("aws_refused:{}:{code}", self.operation);
            }
            AwsErrorKind::Ceiling { .. } => {
                return format!("upstream_ceiling:{}", self.operation);
            }
            AwsErrorKind::Timeout => "timeout",
            AwsErrorKind::Throttled => "throttled",
            AwsErrorKind::Unavailable => "unavailable",
        };
        format!("aws_{kind}:{}", self.operation)
    }
}
