//! The audit query string on arbitrary input: no panic, and nothing parsed that was not
//! asked for, so a query can only narrow what the caller's scope shows.

use proptest::prelude::*;

use super::*;

/// A parameter name, mostly a real one.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(Parameter::ALL.map(Parameter::name).to_vec())
            .prop_map(str::to_owned),
        1 => prop::sample::select(vec!["Subject", "subject ", "limit[]", ""]).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

/// A value, plausible for some parameter or anything at all.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        prop::sample::select(vec![
            "repo:acme/api",
            "issued",
            "denied",
            "arn:aws:iam::111122223333:role/ecr",
            "2026-11-23T21:04:05Z",
            "2026-11-24T00:00:00+01:00",
            "0",
            "1",
            "200",
            "201",
            "-1",
            "AQAAAAAAAAAB",
            "\u{db}\0%",
        ])
        .prop_map(str::to_owned),
        "[0-9]{1,20}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_query_parses_to_exactly_what_it_asks_or_is_refused(
        pairs in prop::collection::vec((name(), value()), 0..6),
    ) {
        let Ok(query) = IssuancesQuery::parse(pairs.clone()) else {
            return Ok(());
        };
        let given = |name: &str| {
            let values: Vec<&String> =
                pairs.iter().filter(|(n, _)| n == name).map(|(_, v)| v).collect();
            values
        };
        // Every name is known, none repeated, no value empty.
        for (name, value) in &pairs {
            prop_assert!(Parameter::ALL.iter().any(|p| p.name() == name), "{name:?} accepted");
            prop_assert_eq!(given(name).len(), 1);
            prop_assert!(!value.is_empty());
        }
        let filter = &query.filter;
        for (field, parsed) in [
            ("subject", filter.subject.as_ref()),
            ("issuer", filter.issuer.as_ref()),
            ("rule", filter.rule.as_ref()),
        ] {
            let parsed = parsed.map(SearchText::as_str);
            prop_assert_eq!(parsed, given(field).first().map(|v| v.as_str()));
            prop_assert!(!parsed.is_some_and(|text| text.contains('\0')));
        }
        prop_assert_eq!(filter.role_arn.is_some(), !given("role").is_empty());
        prop_assert_eq!(filter.outcome.is_some(), !given("outcome").is_empty());
        prop_assert_eq!(query.cursor.is_some(), !given("cursor").is_empty());
        prop_assert!(query.cursor.is_none_or(|c| c.0 > 0));
        prop_assert!((1..=MAX_LIMIT).contains(&query.limit));
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            prop_assert!(since < until);
        }
    }
}
