//! `[aws]` as the config file spells it: the per-call timeout and the ceilings on calls to
//! STS and ECR. Plain settings, read by the config; no AWS call is made here.

use serde::Deserialize;

/// `[aws]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AwsConfig {
    /// Per AWS operation, retries included; beyond it the caller gets 504.
    pub operation_timeout_secs: u64,
    /// `[aws.ecr_ceiling]`: GetAuthorizationToken calls per AWS account and region.
    pub ecr_ceiling: CeilingConfig,
    /// `[aws.sts_ceiling]`: AssumeRole calls, all made with the broker's own account.
    pub sts_ceiling: CeilingConfig,
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            operation_timeout_secs: 10,
            // Per replica, well below AWS's default quotas (ECR GetAuthorizationToken and
            // STS both allow hundreds per second per account and region), so a few replicas
            // together still stay under them.
            ecr_ceiling: CeilingConfig {
                max_concurrent: 16,
                per_second: 50,
                max_wait_ms: 1000,
            },
            sts_ceiling: CeilingConfig {
                max_concurrent: 32,
                per_second: 100,
                max_wait_ms: 1000,
            },
        }
    }
}

/// The most calls the broker makes to one AWS API at once and per second; a call beyond
/// it waits up to `max_wait_ms`, then fails with 503 and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CeilingConfig {
    /// Calls in flight at once.
    pub max_concurrent: u32,
    /// Calls started per second (also the burst allowed after a quiet second).
    pub per_second: u32,
    /// How long a call may wait for room before it is refused.
    pub max_wait_ms: u64,
}
