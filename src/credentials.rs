//! AWS behind a small, typed surface: STS `AssumeRole`, then ECR `GetAuthorizationToken`
//! with exactly the credentials that `AssumeRole` returned, and the [`cache`] of what they
//! issued in front of both. Every call passes the upstream ceiling (`ceiling.rs`) first.
//!
//! The SDK config comes from the standard chain (environment, profiles, web identity,
//! container and instance roles), including `AWS_ENDPOINT_URL`, so the same code runs
//! against AWS and against a local emulator.

pub(crate) mod cache;
mod ceiling;
mod ecr;
mod error;
mod issued;
mod settings;
mod sts;

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;
use tokio::task::JoinHandle;

use crate::domain::{Access, CacheMode};
use cache::{CacheKey, CacheSettings, CachedOwner, CallerScope, CredentialCache, Served};

use crate::domain::Region;
use crate::metrics::{CacheMetrics, Metrics, Service, UpstreamMetrics};
use ceiling::Ceiling;

pub(crate) use ecr::{AuthorizationData, EcrToken};
pub(crate) use error::{AwsError, AwsErrorKind};
pub(crate) use issued::{CredentialRequest, Issued};
pub(crate) use settings::{AwsConfig, CeilingConfig};
pub(crate) use sts::{AssumeRole, SessionCredentials};

/// Clients for the two AWS APIs the broker calls.
#[derive(Clone)]
pub(crate) struct Aws {
    sdk: SdkConfig,
    sts: aws_sdk_sts::Client,
    timeouts: TimeoutConfig,
    /// AssumeRole: one lane, since every call is made with the broker's own account.
    sts_ceiling: Arc<Ceiling<()>>,
    /// GetAuthorizationToken: one lane per assumed role's account and region, the unit AWS
    /// throttles by.
    ecr_ceiling: Arc<Ceiling<(Option<String>, Region)>>,
    sts_metrics: UpstreamMetrics,
    ecr_metrics: UpstreamMetrics,
}

impl Aws {
    /// Builds the clients; every call, retries included, is bounded by the operation
    /// timeout, and held to the configured ceilings.
    pub(crate) fn new(
        sdk: SdkConfig,
        config: &AwsConfig,
        metrics: &Metrics,
    ) -> anyhow::Result<Self> {
        let operation_timeout = Duration::from_secs(config.operation_timeout_secs);
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
            sts_ceiling: Arc::new(Ceiling::new(config.sts_ceiling)),
            ecr_ceiling: Arc::new(Ceiling::new(config.ecr_ceiling)),
            sts_metrics: metrics.upstream(Service::Sts),
            ecr_metrics: metrics.upstream(Service::Ecr),
        })
    }

    /// Loads the SDK config from the standard chain, calling AWS through the proxy and
    /// with the extra roots the environment names (`crate::egress`).
    pub(crate) async fn load_sdk_config() -> anyhow::Result<SdkConfig> {
        Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(crate::egress::aws_http_client()?)
            .load()
            .await)
    }
}

/// Where the issuing path gets credentials: the cache, and AWS behind it.
#[derive(Clone)]
pub(crate) struct CredentialSource {
    aws: Aws,
    cache: Arc<CredentialCache>,
}

/// Expired entries are swept this often even when no new key arrives.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

impl CredentialSource {
    /// AWS with an empty cache in front.
    pub(crate) fn new(aws: Aws, settings: CacheSettings, metrics: CacheMetrics) -> Self {
        Self {
            aws,
            cache: Arc::new(CredentialCache::new(settings, metrics)),
        }
    }

    /// Drops the cached credentials whose owner is `doomed` (every caller they may be served
    /// to is denied), now; returns how many.
    pub(crate) fn forget_owned_by(&self, doomed: impl Fn(CachedOwner<'_>) -> bool) -> usize {
        self.cache.forget(doomed)
    }

    /// Drops the credentials cached for this one caller alone: it has been denied.
    pub(crate) fn forget_caller(&self, issuer: &str, subject: &str) -> usize {
        self.cache
            .forget(|owner| owner.issuer == issuer && owner.subject == Some(subject))
    }

    /// Starts the task that evicts expired entries.
    pub(crate) fn spawn_sweeper(&self) -> JoinHandle<()> {
        self.cache.spawn_sweeper(SWEEP_EVERY)
    }

    /// The credential for `request` under `rule` for `caller`: cached as the rule's `mode`
    /// says, fetched from AWS when nothing cached may be served.
    pub(crate) async fn get(
        &self,
        mode: CacheMode,
        rule: &str,
        caller: CallerScope<'_>,
        access: Access,
        request: CredentialRequest,
    ) -> Result<Served, AwsError> {
        let scope = match mode {
            CacheMode::Off => {
                // Boxed: the AWS calls' future is many kilobytes, and inline it would make
                // every request's future that large, cached answers too.
                let issued = Box::pin(self.aws.issue(&request)).await?;
                return Ok(Served {
                    issued: Arc::new(issued),
                    from_cache: false,
                    hidden_error: None,
                });
            }
            CacheMode::PerCaller => Some(caller),
            CacheMode::Shared => None,
        };
        let key = CacheKey::new(rule, scope, access, &request);
        let owner = CachedOwner {
            rule,
            issuer: caller.issuer,
            subject: scope.map(|c| c.subject),
        };
        // The client is cloned only when this request has to fetch: a hit stays cheap.
        self.cache
            .get(key, owner, || {
                let aws = self.aws.clone();
                async move { aws.issue(&request).await }
            })
            .await
    }
}
