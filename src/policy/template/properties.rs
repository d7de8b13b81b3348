//! Templates on arbitrary text and claims: no panic, and a repository pattern filled in from
//! claims is never wider than the template.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::*;
use crate::domain::RepositoryPattern;

/// Repository templates: literal pieces (with `*` now and then) around placeholders.
fn repository_template() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z0-9]{1,4}",
        Just("/".to_owned()),
        Just("-".to_owned()),
        Just("*".to_owned()),
        prop::sample::select(vec!["{a}", "{b}", "{/org/team}"]).prop_map(str::to_owned),
    ];
    prop::collection::vec(piece, 1..6).prop_map(|pieces| pieces.concat())
}

/// Claim values an attacker would try, and honest ones.
fn claim_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9]{1,6}(/[a-z0-9]{1,6})?".prop_map(Value::from),
        "[a-z0-9*?./_-]{0,8}".prop_map(Value::from),
        prop::sample::select(vec!["*", "..", "a/../b", "a//b", "A", "a*", "{a}"])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::Null),
        Just(json!(["a", "b"])),
    ]
}

fn claims() -> impl Strategy<Value = Map<String, Value>> {
    (claim_value(), claim_value(), claim_value()).prop_map(|(a, b, team)| {
        let mut claims = Map::new();
        claims.insert("a".to_owned(), a);
        claims.insert("b".to_owned(), b);
        claims.insert("org".to_owned(), json!({ "team": team }));
        claims
    })
}

/// The template with every placeholder as `*`: the widest it could ever render.
fn widest(template: &Template) -> String {
    template
        .parts
        .iter()
        .map(|part| match part {
            Part::Literal(text) => text.as_str(),
            Part::Claim(_) => "*",
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_text_parses_or_is_refused_and_renders_without_panicking(
        text in prop_oneof!["[a-z{}/~*]{0,12}", any::<String>()],
        claims in claims(),
    ) {
        if let Ok(template) = Template::parse(&text) {
            for rule in [ValueRule::RepositoryName, ValueRule::TagValue, ValueRule::Any] {
                let _ = template.render(&claims, rule);
            }
        }
    }

    #[test]
    fn a_rendered_repository_pattern_stays_within_its_template(
        text in repository_template(),
        claims in claims(),
    ) {
        let Ok(template) = Template::parse(&text) else {
            return Ok(());
        };
        let Ok(rendered) = template.render(&claims, ValueRule::RepositoryName) else {
            return Ok(());
        };
        let literal_wildcards: usize = template.literal_text().map(|t| t.matches('*').count()).sum();
        prop_assert_eq!(
            rendered.matches('*').count(),
            literal_wildcards,
            "{} rendered as {} gained a wildcard",
            text,
            rendered
        );
        if let (Ok(widest), Ok(rendered)) = (
            RepositoryPattern::try_from(widest(&template)),
            RepositoryPattern::try_from(rendered),
        ) {
            prop_assert!(widest.covers(&rendered), "{widest} does not cover {rendered}");
        }
    }
}
