//! Claim matchers on arbitrary patterns and claims: no panic, and no match that the
//! pattern does not mean.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;

fn claims_with(value: Value) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("c".to_owned(), value);
    claims
}

/// Any scalar claim value, and arrays and objects of them.
fn claim_value() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z*?/\\[\\]-]{0,8}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    scalar.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::vec(("[a-z]{1,3}", inner), 0..3)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Glob-ish pattern text, valid or not.
fn pattern_text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z*?/\\[\\]!-]{0,8}", any::<String>()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_pattern_compiles_or_is_refused_and_then_never_panics(
        text in pattern_text(),
        regex in pattern_text(),
        value in claim_value(),
    ) {
        let patterns = [
            ClaimPattern::Text(text),
            ClaimPattern::Regex(RegexPattern { regex }),
        ];
        for pattern in &patterns {
            let Ok(matcher) = ClaimMatcher::new("c", std::slice::from_ref(pattern)) else {
                continue;
            };
            let claims = claims_with(value.clone());
            prop_assert_eq!(matcher.matches(&claims), matcher.explain(&claims).is_ok());
            prop_assert!(!matcher.matches(&Map::new()), "a missing claim matched");
        }
    }

    #[test]
    fn an_exact_value_matches_only_itself(
        expected in "[^*?\\[\\x00]{0,12}",
        value in any::<String>(),
    ) {
        let matcher = ClaimMatcher::new("c", &[ClaimPattern::Text(expected.clone())]).unwrap();
        prop_assert!(matcher.matches(&claims_with(json!(expected))));
        prop_assert_eq!(matcher.matches(&claims_with(json!(value))), value == expected);
    }

    #[test]
    fn a_regex_is_anchored_whatever_it_holds(
        literal in any::<String>(),
        prefix in any::<String>(),
        suffix in any::<String>(),
    ) {
        // The literal, escaped, matched as a regex: only the literal itself may match, even
        // with text around it or when the literal holds `|` and friends. (A NUL is refused
        // in any pattern, and regex::escape leaves it as it is.)
        prop_assume!(!literal.contains('\0'));
        let regex = RegexPattern { regex: regex::escape(&literal) };
        let matcher = ClaimMatcher::new("c", &[ClaimPattern::Regex(regex)]).unwrap();
        let value = format!("{prefix}{literal}{suffix}");
        prop_assert_eq!(
            matcher.matches(&claims_with(json!(value))),
            prefix.is_empty() && suffix.is_empty()
        );
    }

    #[test]
    fn an_array_matches_only_through_a_scalar_element(
        text in pattern_text(),
        items in prop::collection::vec(claim_value(), 0..5),
    ) {
        let Ok(matcher) = ClaimMatcher::new("c", &[ClaimPattern::Text(text)]) else {
            return Ok(());
        };
        let any_element = items
            .iter()
            .any(|item| !item.is_array() && matcher.matches(&claims_with(item.clone())));
        prop_assert_eq!(matcher.matches(&claims_with(Value::Array(items))), any_element);
    }

    #[test]
    fn any_claim_path_parses_or_is_refused_and_then_resolves_without_panicking(
        path in "(/[a-z~01]{0,3}){0,4}|[a-z/~]{0,8}",
        value in claim_value(),
    ) {
        if let Ok(matcher) = ClaimMatcher::new(&path, &[ClaimPattern::Text("*".to_owned())]) {
            let _ = matcher.matches(&claims_with(value));
        }
    }
}
