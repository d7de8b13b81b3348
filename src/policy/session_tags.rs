//! A rule's STS session tags: value templates checked against STS's limits when the config loads
//! and filled in from the caller's claims at issuance, each whole value held to STS's tag charset
//! and length.

mod validate;

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::template::MAX_TAG_VALUE_LEN;
use super::{RenderError, Template, ValueRule};

/// One session tag, ready for AssumeRole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionTag {
    /// The tag key, from the config.
    pub key: String,
    /// The tag value, rendered from the caller's claims.
    pub value: String,
}

/// A rule's session tags: value templates filled in from the caller's claims at issuance.
#[derive(Debug, Clone, Default)]
pub(crate) struct SessionTagTemplates {
    /// In config order, which for a TOML table is key order.
    tags: Vec<(String, Template)>,
    transitive_keys: Vec<String>,
}

impl SessionTagTemplates {
    /// Static checks (for check-config): at most 50 tags; keys 1..=128 chars of `[\p{L}\p{Z}\p{N}_.:/=+\-@]`, not starting with `aws:` (case-insensitive), unique case-insensitively; every transitive key is one of the tag keys; literal text of each value template fits the tag value charset.
    ///
    /// Returns every problem found, each message naming the key it concerns.
    pub(crate) fn new(
        tags: &BTreeMap<String, Template>,
        transitive_keys: &[String],
    ) -> Result<Self, Vec<String>> {
        let problems = validate::problems(tags, transitive_keys);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            tags: tags
                .iter()
                .map(|(key, template)| (key.clone(), template.clone()))
                .collect(),
            transitive_keys: transitive_keys.to_vec(),
        })
    }

    /// Whether there are no tags to send.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The keys whose tags pass on to sessions chained from the issued one.
    pub(crate) fn transitive_keys(&self) -> &[String] {
        &self.transitive_keys
    }

    /// Renders every value with [`ValueRule::TagValue`]; the whole value (not just the substituted part) must be 0..=256 chars of the charset.
    pub(crate) fn render(
        &self,
        claims: &Map<String, Value>,
    ) -> Result<Vec<SessionTag>, RenderError> {
        // `new` checked every literal, and `TagValue` checks every substitution, so the
        // charset holds for the whole value; only the total length is left to bound.
        self.tags
            .iter()
            .map(|(key, template)| {
                Ok(SessionTag {
                    key: key.clone(),
                    value: template.render_within(
                        claims,
                        ValueRule::TagValue,
                        MAX_TAG_VALUE_LEN,
                    )?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, Template> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Template::parse(v).unwrap()))
            .collect()
    }

    fn keys(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn renders_every_tag_in_key_order() {
        let t = SessionTagTemplates::new(
            &tags(&[
                ("repo", "{repository}"),
                ("actor", "ci-{actor}"),
                ("team", "{/realm_access/team}"),
                ("fixed", "static"),
            ]),
            &keys(&["repo"]),
        )
        .unwrap();
        assert!(!t.is_empty());
        assert_eq!(t.transitive_keys(), ["repo"]);
        let rendered = t
            .render(&claims(json!({
                "repository": "acme/api",
                "actor": "Zoë",
                "realm_access": {"team": "platform ops"},
            })))
            .unwrap();
        let pairs: Vec<(&str, &str)> = rendered
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("actor", "ci-Zoë"),
                ("fixed", "static"),
                ("repo", "acme/api"),
                ("team", "platform ops"),
            ]
        );
    }

    #[test]
    fn no_tags_is_empty_and_renders_nothing() {
        let t = SessionTagTemplates::new(&BTreeMap::new(), &[]).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.render(&Map::new()).unwrap(), []);
        assert!(SessionTagTemplates::default().is_empty());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let found =
            SessionTagTemplates::new(&tags(&[("aws:a", "<"), ("", "ok")]), &keys(&["nope"]))
                .unwrap_err();
        assert_eq!(
            found,
            [
                "session tag key \"\": must be 1 to 128 characters",
                "session tag key \"aws:a\": the `aws:` prefix is reserved for AWS",
                "session tag \"aws:a\": value \"<\" may only hold letters, digits, spaces and \
                 `_.:/=+-@` outside its placeholders",
                "transitive tag key \"nope\" is not one of the session tag keys",
            ]
        );
    }

    #[test]
    fn hostile_claim_values_are_refused() {
        let t = SessionTagTemplates::new(&tags(&[("who", "{sub}")]), &[]).unwrap();
        let too_long = "x".repeat(257);
        for hostile in [
            too_long.as_str(),
            "a\nb",
            "a\0b",
            "\u{1b}[2J",
            "<script>alert(1)</script>",
            "a,b",
            "a\u{202e}b",
        ] {
            let e = t.render(&claims(json!({"sub": hostile}))).unwrap_err();
            assert!(
                matches!(e, RenderError::Refused { ref placeholder, .. } if placeholder == "sub"),
                "{hostile:?}: {e:?}"
            );
            assert!(!e.to_string().contains(hostile), "{e}");
        }
        for fine in ["", "é", "東京 2", &"x".repeat(256)] {
            let rendered = t.render(&claims(json!({"sub": fine}))).unwrap();
            assert_eq!(rendered[0].value, fine);
        }
    }

    #[test]
    fn the_whole_value_must_fit_256_characters() {
        let t = SessionTagTemplates::new(&tags(&[("who", "ci-{sub}")]), &[]).unwrap();
        let fits = "x".repeat(253);
        assert_eq!(
            t.render(&claims(json!({"sub": fits}))).unwrap()[0]
                .value
                .len(),
            256
        );
        let e = t
            .render(&claims(json!({"sub": "x".repeat(254)})))
            .unwrap_err();
        assert_eq!(
            e,
            RenderError::Refused {
                placeholder: "sub".to_owned(),
                reason: "makes the whole value too long",
            }
        );
    }

    #[test]
    fn missing_and_structured_claims_are_errors() {
        let t = SessionTagTemplates::new(&tags(&[("team", "{/realm/team}")]), &[]).unwrap();
        assert!(matches!(
            t.render(&Map::new()),
            Err(RenderError::MissingClaim { .. })
        ));
        assert!(matches!(
            t.render(&claims(json!({"realm": {"team": ["a"]}}))),
            Err(RenderError::NotAScalar { .. })
        ));
    }
}
