//! The limits on calls, which relate sections to each other: the AWS ceilings (whose wait
//! must end within `[server]`'s request timeout) and the rate limits of `[rate_limit]` and of
//! each rule, gathered into one `RateLimitSettings`.

use std::collections::BTreeMap;

use super::errors::Findings;
use crate::credentials::{AwsConfig, CeilingConfig};
use crate::rate_limit::{RateLimitConfig, RateLimitSettings, RateLimitsConfig};

/// Checks `[aws]`'s ceilings and every rate limit; `rules` are each rule's name and own limit.
pub(super) fn limits<'a>(
    aws: &AwsConfig,
    request_timeout_secs: u64,
    global: RateLimitsConfig,
    rules: impl IntoIterator<Item = (&'a str, Option<RateLimitConfig>)>,
    f: &mut Findings,
) -> RateLimitSettings {
    let request_timeout_ms = request_timeout_secs.saturating_mul(1000);
    ceiling(&aws.ecr_ceiling, "aws.ecr_ceiling", request_timeout_ms, f);
    ceiling(&aws.sts_ceiling, "aws.sts_ceiling", request_timeout_ms, f);
    rate_limit(&global.per_caller(), "rate_limit", f);
    rate_limit(&global.unadmitted, "rate_limit.unadmitted", f);
    rate_limit(&global.unauthenticated, "rate_limit.unauthenticated", f);
    let prefix = &global.unauthenticated_prefix;
    f.check(
        prefix.ipv4 <= 32,
        "rate_limit.unauthenticated_prefix.ipv4",
        "must be from 0 to 32",
    );
    f.check(
        prefix.ipv6 <= 128,
        "rate_limit.unauthenticated_prefix.ipv6",
        "must be from 0 to 128",
    );
    let mut by_rule = BTreeMap::new();
    for (i, (name, limit)) in rules.into_iter().enumerate() {
        if let Some(limit) = limit {
            rate_limit(&limit, &format!("rules[{i}].rate_limit"), f);
            by_rule.insert(name.to_owned(), limit);
        }
    }
    RateLimitSettings { global, by_rule }
}

fn ceiling(ceiling: &CeilingConfig, at: &str, request_timeout_ms: u64, f: &mut Findings) {
    f.at_least(ceiling.max_concurrent, 1, format!("{at}.max_concurrent"));
    f.at_least(ceiling.per_second, 1, format!("{at}.per_second"));
    // A wait as long as the whole request would turn every refusal into a 504.
    f.check(
        ceiling.max_wait_ms < request_timeout_ms,
        format!("{at}.max_wait_ms"),
        format!(
            "must be below server.request_timeout_secs ({request_timeout_ms} ms), so a refused call still gets its 503"
        ),
    );
}

/// The smallest rate accepted: one request a day. Below it the bucket never refills in
/// any useful time, which is a typo rather than a policy.
const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;

fn rate_limit(limit: &RateLimitConfig, at: &str, f: &mut Findings) {
    f.check(
        limit.per_second.is_finite() && (MIN_PER_SECOND..=1_000_000.0).contains(&limit.per_second),
        format!("{at}.per_second"),
        "must be between 0.0000116 (one a day) and 1000000",
    );
    f.at_least(limit.burst, 1, format!("{at}.burst"));
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, TEST_BASE, TEST_CI_ISSUER};

    const RULE: &str = r#"
[[rules]]
name = "r"
issuer = "ci"
claims = { sub = "*" }
role_arn = "arn:aws:iam::123456789012:role/ecr"
regions = ["us-east-1"]
"#;

    fn problems(extra: &str) -> Vec<(String, String)> {
        match Config::parse(&format!("{TEST_BASE}{TEST_CI_ISSUER}{extra}"), |_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e
                .iter()
                .map(|(p, m)| (p.to_owned(), m.to_owned()))
                .collect(),
        }
    }

    fn paths(extra: &str) -> Vec<String> {
        problems(extra).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(problems(RULE), Vec::new());
        let config =
            Config::parse(&format!("{TEST_BASE}{TEST_CI_ISSUER}{RULE}"), |_| None).unwrap();
        assert!(config.aws.ecr_ceiling.max_wait_ms < 30_000);
        assert!(!config.rate_limit.by_rule.contains_key("r"));
    }

    #[test]
    fn ceilings_name_the_field_at_fault() {
        let paths = paths(
            r#"
[aws.ecr_ceiling]
max_concurrent = 0
per_second = 5
max_wait_ms = 100
[aws.sts_ceiling]
max_concurrent = 1
per_second = 0
max_wait_ms = 30000
"#,
        );
        assert_eq!(
            paths,
            [
                "aws.ecr_ceiling.max_concurrent",
                "aws.sts_ceiling.per_second",
                "aws.sts_ceiling.max_wait_ms",
            ]
        );
    }

    #[test]
    fn rate_limits_name_the_field_at_fault_globally_and_per_rule() {
        let paths = paths(&format!(
            "[rate_limit]\nper_second = 0.0\nburst = 0\n{RULE}rate_limit = {{ per_second = inf, burst = 3 }}\n"
        ));
        assert_eq!(
            paths,
            [
                "rate_limit.per_second",
                "rate_limit.burst",
                "rules[0].rate_limit.per_second",
            ]
        );
    }

    #[test]
    fn an_integer_rate_and_a_per_rule_override_parse() {
        let config = Config::parse(
            &format!(
                "{TEST_BASE}{TEST_CI_ISSUER}[rate_limit]\nper_second = 2\nburst = 4\n{RULE}rate_limit = {{ per_second = 0.5, burst = 1 }}\n"
            ),
            |_| None,
        )
        .unwrap();
        assert_eq!(config.rate_limit.global.per_second, 2.0);
        let rule = config.rate_limit.by_rule["r"];
        assert_eq!((rule.per_second, rule.burst), (0.5, 1));
    }
}
