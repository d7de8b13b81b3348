//! `RawConfig`, the file's shape as serde reads it, and the one pass that turns it into a
//! `Config`: each section parsed into the types that run, then the checks across sections,
//! every problem collected with its path. Nothing outside `config` sees a raw type.

use super::audit::{self, RawAudit};
use super::cache::{self, CacheConfig};
use super::database::{self, DatabaseConfig};
use super::errors::{ConfigErrors, Findings};
use super::issuers::{self, RawIssuer};
use super::rules::{self, RawRule};
use super::server::{self, MetricsConfig, ServerConfig};
use super::{AdminConfig, Config, ReloadConfig, limits, validate};
use crate::audit::{AuditChainConfig, AuditSinkConfig};
use crate::credentials::AwsConfig;
use crate::kill_switch::EntrySpec;
use crate::policy::Rules;
use crate::rate_limit::RateLimitsConfig;

/// The whole configuration file, as written.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: ServerConfig,
    pub(super) database: DatabaseConfig,
    pub(super) audit: RawAudit,
    #[serde(default)]
    audit_chain: AuditChainConfig,
    #[serde(default)]
    audit_sink: AuditSinkConfig,
    #[serde(default)]
    aws: AwsConfig,
    #[serde(default)]
    pub(super) cache: CacheConfig,
    #[serde(default)]
    pub(super) issuers: Vec<RawIssuer>,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    #[serde(default)]
    rate_limit: RateLimitsConfig,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    pub(super) deny: Vec<EntrySpec>,
    #[serde(default)]
    pub(super) admin: AdminConfig,
    #[serde(default)]
    pub(super) reload: ReloadConfig,
}

impl RawConfig {
    /// Parses every section, then checks them against each other; `f` holds the problems
    /// found while loading (in the environment, or in files the config names).
    pub(super) fn parse(
        mut self,
        env: &impl Fn(&str) -> Option<String>,
        mut f: Findings,
    ) -> Result<Config, ConfigErrors> {
        if let Some(tls) = &self.server.tls {
            f.0.extend(tls.problems());
        }
        server::server(&mut self.server, &self.metrics, &mut f);
        database::database(&self.database, &mut f);
        let audit = audit::audit(&self.audit, &mut f);
        f.at_least(
            self.aws.operation_timeout_secs,
            1,
            "aws.operation_timeout_secs",
        );
        cache::cache(&self.cache, &mut f);
        let issuers = issuers::issuers(&self.issuers, env, &mut f);
        let rules = rules::rules(&self.rules, &mut f);
        audit::audit_sink(&self.audit_sink, &mut f);
        let rate_limit = limits::limits(
            &self.aws,
            self.server.request_timeout_secs,
            self.rate_limit,
            self.rules.iter().map(|r| (r.name.as_str(), r.rate_limit)),
            &mut f,
        );
        validate::across_sections(&self, &mut f);
        f.into_result()?;
        let (Some(audit), Some(rules)) = (audit, rules.into_iter().collect::<Option<_>>()) else {
            unreachable!("a section that does not parse leaves a problem behind")
        };
        Ok(Config {
            server: self.server,
            database: self.database,
            audit,
            audit_chain: self.audit_chain,
            audit_sink: self.audit_sink,
            aws: self.aws,
            cache: self.cache,
            issuers,
            rules: Rules::new(rules).into(),
            rate_limit,
            metrics: self.metrics,
            deny: self.deny,
            admin: self.admin,
            reload: self.reload,
        })
    }
}
