//! AWS behind a small, typed surface: STS `AssumeRole`, then ECR `GetAuthorizationToken`
//! with exactly the credentials that `AssumeRole` returned.
//!
//! The SDK config comes from the standard chain (environment, profiles, web identity,
//! container and instance roles), including `AWS_ENDPOINT_URL`, so the same code runs
//! against AWS and against a local emulator.

mod ecr;
mod error;
mod sts;

use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

pub use ecr::{AuthorizationData, EcrToken};
pub use error::{AwsError, AwsErrorKind};
pub use sts::{AssumeRole, SessionCredentials};

/// Clients for the two AWS APIs the broker calls.
#[derive(Clone)]
pub struct Aws {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    timeouts: TimeoutConfig,
}

impl Aws {
    /// Builds the clients; every call, retries included, is bounded by `operation_timeout`.
    pub fn new(sdk: SdkConfig, operation_timeout: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            sdk.region().is_some(),
            "no AWS region is configured: set AWS_REGION (STS is called in that region)"
        );
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(operation_timeout)
            .connect_timeout(operation_timeout.min(Duration::from_secs(3)))
            .build();
        let sts_config = aws_sdk_sts::config::Builder::from(&sdk)
            .timeout_config(timeouts.clone())
            .build();
        Ok(Self {
            sts: aws_sdk_sts::Client::from_conf(sts_config),
            sdk,
            timeouts,
        })
    }

    /// Loads the SDK config from the standard chain.
    pub async fn load_sdk_config() -> SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await
    }
}
