//! The session policy's exact IAM JSON: pull, push and pull-through statements, ARNs per partition,
//! one text for one grant whatever its order, pruning of covered patterns, and the size limit.

use serde_json::{Value, json};

use super::*;
use crate::domain::Partition;

fn region(code: &str) -> Region {
    Region::try_from(code.to_owned()).unwrap()
}

fn registry(id: &str) -> RegistryId {
    RegistryId::try_from(id.to_owned()).unwrap()
}

fn patterns(patterns: &[&str]) -> Vec<RepositoryPattern> {
    patterns
        .iter()
        .map(|p| RepositoryPattern::try_from((*p).to_owned()).unwrap())
        .collect()
}

/// Pull or push, without the pull-through cache.
fn plain(access: Access) -> Permissions {
    Permissions {
        access,
        pull_through_cache: false,
    }
}

/// [`checked_with`] for plain pull or push.
fn checked(
    access: Access,
    scopes: &[(&Region, &RegistryId)],
    repositories: &[&str],
) -> (String, Vec<String>) {
    checked_with(plain(access), scopes, repositories)
}

/// Builds a policy and checks that it is minified IAM JSON of the expected shape: the token
/// statement first, then one repository statement (`Pull`, `PullAndPush`, or either with
/// `ThroughCache` after it) on sorted, distinct repository ARNs, with exactly the actions
/// `permissions` call for. Returns the policy text and those ARNs.
fn checked_with(
    permissions: Permissions,
    scopes: &[(&Region, &RegistryId)],
    repositories: &[&str],
) -> (String, Vec<String>) {
    let scopes: Vec<RepositoryScope<'_>> = scopes
        .iter()
        .map(|(region, registry_id)| RepositoryScope {
            region,
            registry_id,
        })
        .collect();
    let policy = build(permissions, &scopes, &patterns(repositories)).unwrap();
    let text = policy.to_string();
    assert_eq!(text, policy.as_str());
    assert!(!text.contains(char::is_whitespace), "not minified: {text}");
    assert!(text.chars().count() <= MAX_SESSION_POLICY_CHARS);

    let document: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = document.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["Statement", "Version"], "{document}");
    assert_eq!(document["Version"], "2012-10-17");
    let statements = document["Statement"].as_array().unwrap();
    assert_eq!(
        statements[0],
        json!({"Sid": "GetAuthorizationToken", "Effect": "Allow",
               "Action": "ecr:GetAuthorizationToken", "Resource": "*"})
    );
    let sids: Vec<&str> = statements
        .iter()
        .map(|s| s["Sid"].as_str().unwrap())
        .collect();
    let repository_sid = match (permissions.access, permissions.pull_through_cache) {
        (Access::Pull, false) => "Pull",
        (Access::Push, false) => "PullAndPush",
        (Access::Pull, true) => "PullThroughCache",
        (Access::Push, true) => "PullAndPushThroughCache",
    };
    let expected_sids = if scopes.is_empty() {
        vec!["GetAuthorizationToken"]
    } else {
        vec!["GetAuthorizationToken", repository_sid]
    };
    assert_eq!(sids, expected_sids);
    // Written out, not derived from the constants, so a change to them shows here.
    let mut expected_actions = vec![
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
    ];
    if permissions.access == Access::Push {
        expected_actions.extend([
            "ecr:CompleteLayerUpload",
            "ecr:InitiateLayerUpload",
            "ecr:PutImage",
            "ecr:UploadLayerPart",
        ]);
    }
    if permissions.pull_through_cache {
        expected_actions.extend(["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]);
    }

    let mut arns: Option<Vec<String>> = None;
    for statement in &statements[1..] {
        let keys: Vec<&String> = statement.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Action", "Effect", "Resource", "Sid"], "{statement}");
        assert_eq!(statement["Effect"], "Allow");
        let actions = statement["Action"].as_array().unwrap();
        assert_eq!(
            actions,
            &expected_actions
                .iter()
                .map(|a| json!(a))
                .collect::<Vec<_>>()
        );
        let resources: Vec<String> = statement["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_owned())
            .collect();
        assert!(!resources.is_empty());
        assert!(resources.windows(2).all(|w| w[0] < w[1]), "{resources:?}");
        for arn in &resources {
            let fields: Vec<&str> = arn.splitn(6, ':').collect();
            assert_eq!(fields[0], "arn", "{arn}");
            assert!(
                ["aws", "aws-cn", "aws-us-gov"].contains(&fields[1]),
                "{arn}"
            );
            assert_eq!(fields[2], "ecr", "{arn}");
            assert_eq!(
                Partition::of(&region(fields[3])).as_str(),
                fields[1],
                "{arn}"
            );
            assert!(fields[5].starts_with("repository/"), "{arn}");
        }
        assert!(
            arns.replace(resources).is_none(),
            "one repository statement only"
        );
    }
    (text, arns.unwrap_or_default())
}

#[test]
fn pull_policy_is_exactly_this() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let (text, _) = checked(Access::Pull, &[(&eu, &acme)], &["team-a/*"]);
    assert_eq!(
        text,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"GetAuthorizationToken","Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},{"Sid":"Pull","Effect":"Allow","Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Resource":["arn:aws:ecr:eu-west-1:123456789012:repository/team-a/*"]}]}"#
    );
}

#[test]
fn push_policy_is_exactly_this() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let (text, _) = checked(Access::Push, &[(&eu, &acme)], &["team-a/api"]);
    assert_eq!(
        text,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"GetAuthorizationToken","Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},{"Sid":"PullAndPush","Effect":"Allow","Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:CompleteLayerUpload","ecr:InitiateLayerUpload","ecr:PutImage","ecr:UploadLayerPart"],"Resource":["arn:aws:ecr:eu-west-1:123456789012:repository/team-a/api"]}]}"#
    );
}

#[test]
fn pull_through_cache_adds_import_and_create_on_the_same_repositories() {
    let (eu, us, acme) = (
        region("eu-west-1"),
        region("us-east-1"),
        registry("123456789012"),
    );
    let through_cache = |access| Permissions {
        access,
        pull_through_cache: true,
    };
    let (text, _) = checked_with(
        through_cache(Access::Pull),
        &[(&eu, &acme)],
        &["docker-hub/*"],
    );
    assert_eq!(
        text,
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"GetAuthorizationToken","Effect":"Allow","Action":"ecr:GetAuthorizationToken","Resource":"*"},{"Sid":"PullThroughCache","Effect":"Allow","Action":["ecr:BatchCheckLayerAvailability","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchImportUpstreamImage","ecr:CreateRepository"],"Resource":["arn:aws:ecr:eu-west-1:123456789012:repository/docker-hub/*"]}]}"#
    );
    // The cache's actions never reach further than pulling does.
    let scopes = [(&eu, &acme), (&us, &acme)];
    let repositories = ["docker-hub/*", "ghcr/acme/*", "ghcr/*"];
    for access in [Access::Pull, Access::Push] {
        let (_, without) = checked(access, &scopes, &repositories);
        let (_, with) = checked_with(through_cache(access), &scopes, &repositories);
        assert_eq!(with, without);
    }
    let (_, arns) = checked_with(through_cache(Access::Push), &[], &["docker-hub/*"]);
    assert!(arns.is_empty());
}

#[test]
fn no_repositories_named_means_every_repository() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let (_, arns) = checked(Access::Pull, &[(&eu, &acme)], &[]);
    assert_eq!(arns, ["arn:aws:ecr:eu-west-1:123456789012:repository/*"]);
}

#[test]
fn every_region_and_registry_gets_every_pattern() {
    let (eu, us) = (region("eu-west-1"), region("us-east-1"));
    let (a, b) = (registry("111111111111"), registry("222222222222"));
    let scopes = [(&us, &b), (&eu, &a), (&us, &a), (&eu, &b)];
    let (_, arns) = checked(Access::Push, &scopes, &["web", "api/*"]);
    assert_eq!(
        arns,
        [
            "arn:aws:ecr:eu-west-1:111111111111:repository/api/*",
            "arn:aws:ecr:eu-west-1:111111111111:repository/web",
            "arn:aws:ecr:eu-west-1:222222222222:repository/api/*",
            "arn:aws:ecr:eu-west-1:222222222222:repository/web",
            "arn:aws:ecr:us-east-1:111111111111:repository/api/*",
            "arn:aws:ecr:us-east-1:111111111111:repository/web",
            "arn:aws:ecr:us-east-1:222222222222:repository/api/*",
            "arn:aws:ecr:us-east-1:222222222222:repository/web",
        ]
    );
}

#[test]
fn arns_carry_the_partition_of_their_region() {
    let (cn, gov) = (region("cn-north-1"), region("us-gov-west-1"));
    let acme = registry("123456789012");
    let (_, arns) = checked(Access::Pull, &[(&cn, &acme), (&gov, &acme)], &["api"]);
    assert_eq!(
        arns,
        [
            "arn:aws-cn:ecr:cn-north-1:123456789012:repository/api",
            "arn:aws-us-gov:ecr:us-gov-west-1:123456789012:repository/api",
        ]
    );
}

#[test]
fn same_grant_same_text_whatever_the_order_or_repetition() {
    let (eu, us, acme) = (
        region("eu-west-1"),
        region("us-east-1"),
        registry("123456789012"),
    );
    let (one, _) = checked(Access::Push, &[(&eu, &acme), (&us, &acme)], &["web", "a/*"]);
    let (two, _) = checked(
        Access::Push,
        &[(&us, &acme), (&eu, &acme), (&us, &acme)],
        &["a/*", "web", "a/*", "web"],
    );
    assert_eq!(one, two);
}

#[test]
fn patterns_covered_by_others_are_left_out() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let arn = |p: &str| format!("arn:aws:ecr:eu-west-1:123456789012:repository/{p}");
    let (_, arns) = checked(
        Access::Pull,
        &[(&eu, &acme)],
        &["team/api", "team/*", "web"],
    );
    assert_eq!(arns, [arn("team/*"), arn("web")]);
    let (_, arns) = checked(Access::Pull, &[(&eu, &acme)], &["**", "team/*", "*"]);
    assert_eq!(arns, [arn("*")]);
    let (_, arns) = checked(Access::Pull, &[(&eu, &acme)], &["a*b", "a*"]);
    assert_eq!(arns, [arn("a*")]);
}

#[test]
fn long_lists_are_refused_rather_than_pruned() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let scope = [RepositoryScope {
        region: &eu,
        registry_id: &acme,
    }];
    let mut names: Vec<String> = (0..MAX_PATTERNS_TO_PRUNE)
        .map(|i| format!("r{i}"))
        .collect();
    names.push("*".to_owned());
    let too_many = patterns(&names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        matches!(
            build(plain(Access::Pull), &scope, &too_many),
            Err(PolicyTooLarge { chars }) if chars > MAX_SESSION_POLICY_CHARS
        ),
        "a list too long to prune is refused as too large"
    );
    let (_, arns) = checked(Access::Pull, &[(&eu, &acme)], &["*", "r1", "r2"]);
    assert_eq!(arns, ["arn:aws:ecr:eu-west-1:123456789012:repository/*"]);
}

#[test]
fn no_scopes_grant_only_the_token() {
    let (text, arns) = checked(Access::Push, &[], &["api"]);
    assert!(arns.is_empty());
    assert!(!text.contains("repository"), "{text}");
}

#[test]
fn the_size_limit_is_exact() {
    let (eu, acme) = (region("eu-west-1"), registry("123456789012"));
    let scope = [RepositoryScope {
        region: &eu,
        registry_id: &acme,
    }];
    let length =
        |repositories: &[RepositoryPattern]| match build(plain(Access::Pull), &scope, repositories)
        {
            Ok(policy) => policy.as_str().chars().count(),
            Err(too_large) => too_large.chars,
        };
    // Fill up with long names until growing one short name by up to 254 characters must
    // cross the limit; each character then adds exactly one to the policy.
    let mut repositories = patterns(&["zz"]);
    while length(&repositories) + 254 <= MAX_SESSION_POLICY_CHARS {
        let filler = format!("f{}/{}", repositories.len(), "x".repeat(200));
        repositories.extend(patterns(&[&filler]));
    }
    let at = |n: usize| {
        let mut repositories = repositories.clone();
        repositories[0] = patterns(&[&"z".repeat(n)]).remove(0);
        repositories
    };
    let n = (2..=256)
        .find(|&n| length(&at(n)) == MAX_SESSION_POLICY_CHARS)
        .expect("some length hits the limit exactly");
    let at_limit = build(plain(Access::Pull), &scope, &at(n)).unwrap();
    assert_eq!(at_limit.as_str().len(), MAX_SESSION_POLICY_CHARS);
    let over = build(plain(Access::Pull), &scope, &at(n + 1)).unwrap_err();
    assert_eq!(over, PolicyTooLarge { chars: 2049 });
}

#[test]
fn too_large_says_what_to_do() {
    assert_eq!(
        PolicyTooLarge { chars: 3000 }.to_string(),
        "the session policy would be 3000 characters; STS accepts at most 2048 — ask for fewer \
         regions, registries or repositories"
    );
}
