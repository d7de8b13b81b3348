//! Whatever a request body says and whatever the token's claims hold, a grant stays within
//! its rule.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

/// The rule under test: pull from two regions and two registries, the caller's own
/// repositories and the shared base images, for at most 30 minutes.
fn rule() -> Rule {
    super::tests::parsed_rule(
        r#"
name = "ci"
issuer = "ci"
role_arn = "arn:aws:iam::111122223333:role/ecr"
regions = ["us-east-1", "eu-west-1"]
registry_ids = ["111122223333", "444455556666"]
repositories = ["{repository}/*", "shared/base-*"]
session_duration_secs = 1800
"#,
    )
}

/// Mostly the rule's regions.
fn region() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "us-east-1",
        "eu-west-1",
        "us-east-1",
        "eu-west-1",
        "ap-south-1",
        "cn-north-1",
        "us-gov-west-1",
    ])
}

fn registry_id() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["111122223333", "444455556666", "999999999999"])
}

fn host() -> impl Strategy<Value = String> {
    let kind = prop::sample::select(vec!["dkr.ecr", "dkr.ecr-fips"]);
    (registry_id(), kind, region()).prop_map(|(id, kind, region)| {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        format!("{id}.{kind}.{region}.{suffix}")
    })
}

/// Repository names and patterns near the rule's, and anything at all.
fn repository() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => "acme/api/[a-z*]{1,6}",
        2 => "(acme|shared|evil)/[a-z*-]{0,6}(/[a-z*]{1,4})?",
        4 => "shared/base-[a-z*]{1,4}",
        2 => "[a-z0-9*/._-]{1,16}",
        1 => any::<String>(),
    ]
}

/// Which endpoints a body asks for: the defaults, regions and registries, or hosts.
fn selection() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let regions = prop::sample::subsequence(vec!["us-east-1", "eu-west-1", "ap-south-1"], 1..=2);
    let ids =
        prop::sample::subsequence(vec!["111122223333", "444455556666", "999999999999"], 1..=2);
    prop_oneof![
        Just(Vec::new()),
        (region(), prop::option::of(ids.clone())).prop_map(|(region, ids)| {
            let mut fields = vec![("region", json!(region))];
            fields.extend(ids.map(|ids| ("registryIds", json!(ids))));
            fields
        }),
        (regions, prop::option::of(ids)).prop_map(|(regions, ids)| {
            let mut fields = vec![("regions", json!(regions))];
            fields.extend(ids.map(|ids| ("registryIds", json!(ids))));
            fields
        }),
        prop::collection::btree_set(host(), 1..3)
            .prop_map(|hosts| vec![("registries", json!(hosts))]),
    ]
}

/// Issue request bodies, mostly well-formed, asking for anything; now and then one field
/// holds anything at all.
fn body() -> impl Strategy<Value = Value> {
    let access = prop::sample::select(vec!["pull", "pull", "pull", "push", "admin"]);
    let repositories = prop::collection::btree_set(repository(), 1..4);
    let duration = prop_oneof![
        3 => Just(900u64),
        3 => Just(1800),
        1 => Just(3600),
        1 => 0u64..50_000,
    ];
    let junk = prop::option::weighted(
        0.05,
        (
            prop::sample::select(vec!["region", "registries", "access", "durationSeconds"]),
            arbitrary_json(),
        ),
    );
    (
        selection(),
        prop::option::of(access),
        prop::option::of(repositories),
        prop::option::of(duration),
        junk,
    )
        .prop_map(|(selection, access, repositories, duration, junk)| {
            let mut body: Map<String, Value> = selection
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            let optional = [
                ("access", access.map(Value::from)),
                ("repositories", repositories.map(|r| json!(r))),
                ("durationSeconds", duration.map(Value::from)),
            ];
            for (name, value) in optional {
                if let Some(value) = value {
                    body.insert(name.to_owned(), value);
                }
            }
            if let Some((name, value)) = junk {
                body.insert(name.to_owned(), value);
            }
            Value::Object(body)
        })
}

/// The token's claims: the `repository` the rule's template reads, honest or hostile.
fn claims() -> impl Strategy<Value = Map<String, Value>> {
    let repository = prop_oneof![
        4 => Just(json!("acme/api")),
        4 => "[a-z0-9/._*-]{1,12}".prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!(["acme/api", "*"])),
    ];
    (repository, prop::bool::weighted(0.95)).prop_map(|(repository, present)| {
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), json!("repo:acme/api"));
        if present {
            claims.insert("repository".to_owned(), repository);
        }
        claims
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_grant_never_exceeds_its_rule(body in body(), claims in claims()) {
        let rule = rule();
        let Ok(request) = serde_json::from_value::<IssueRequest>(body) else {
            return Ok(());
        };
        let Ok(grant) = rule.grant(&request, &claims) else {
            return Ok(());
        };
        let allowed = rule.allowed_repositories(&claims).unwrap();
        for endpoint in &grant.endpoints {
            prop_assert!(rule.regions.contains(endpoint.region()), "{endpoint:?}");
            prop_assert!(rule.registry_ids.contains(endpoint.registry_id()), "{endpoint:?}");
        }
        prop_assert!(!grant.endpoints.is_empty());
        prop_assert!(grant.access <= rule.access);
        prop_assert!(grant.duration <= rule.session_duration);
        for pattern in &grant.repositories {
            prop_assert!(
                allowed.iter().any(|a| a.covers(pattern)),
                "{pattern} is not within {allowed:?}"
            );
        }
        // The claim filled in never adds a wildcard to the rule's own.
        for pattern in &allowed {
            prop_assert!(pattern.as_str().matches('*').count() == 1, "{pattern}");
        }
    }

    /// What a request's repositories are held to: a pattern the rule's covers matches no
    /// repository that the rule's does not.
    #[test]
    fn a_covered_pattern_matches_nothing_its_cover_does_not(
        cover in "[ab*]{1,3}(/[ab*]{1,3}){0,2}",
        narrower in "[ab*]{1,3}(/[ab*]{1,3}){0,2}",
        name in "[ab]{1,3}(/[ab]{1,3}){0,3}",
    ) {
        let (Ok(cover), Ok(narrower)) = (
            RepositoryPattern::try_from(cover),
            RepositoryPattern::try_from(narrower),
        ) else {
            return Ok(());
        };
        if cover.covers(&narrower) && narrower.matches(&name) {
            prop_assert!(cover.matches(&name), "{cover} covers {narrower}, which matches {name}");
        }
    }

    #[test]
    fn any_json_is_parsed_or_refused_without_panicking(body in arbitrary_json()) {
        let _ = serde_json::from_value::<IssueRequest>(body);
    }
}

/// Any JSON value, nested a few levels, with the request's field names among the keys.
fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "region",
            "regions",
            "registryIds",
            "registries",
            "access",
            "repositories",
            "durationSeconds",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    leaf.prop_recursive(3, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}
