//! Filling a template in from a token's claims, each value held to its `ValueRule` and the result
//! to a length limit. `RenderError` names the placeholder, never the claim value, which may be
//! hostile or huge.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::value_rule::aws_len;
use super::{Part, Template, ValueRule};
use crate::policy::ClaimPath;

/// Why a template could not be filled in from a token's claims.
///
/// Messages name the placeholder, never the claim value: it may be hostile or huge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RenderError {
    /// The token has no claim at the placeholder.
    #[error("the token has no claim for placeholder {{{placeholder}}}")]
    MissingClaim {
        /// The placeholder, as written.
        placeholder: String,
    },
    /// The claim is null, an array or an object.
    #[error("the claim for placeholder {{{placeholder}}} is not a string, number or boolean")]
    NotAScalar {
        /// The placeholder, as written.
        placeholder: String,
    },
    /// The claim's value breaks the template's [`ValueRule`].
    #[error("the claim for placeholder {{{placeholder}}} was refused: {reason}")]
    Refused {
        /// The placeholder, as written.
        placeholder: String,
        /// What is wrong with the value, without quoting it.
        reason: &'static str,
    },
}

impl Template {
    /// Fills in every placeholder from `claims`; each value must pass `allowed`.
    ///
    /// Strings are used as they are, numbers and booleans as their JSON text.
    pub(crate) fn render(
        &self,
        claims: &Map<String, Value>,
        allowed: ValueRule,
    ) -> Result<String, RenderError> {
        self.render_within(claims, allowed, usize::MAX)
    }

    /// Like [`Self::render`], but refuses a result longer than `max_len` (as [`aws_len`]
    /// counts), blaming the placeholder whose value crossed the limit.
    pub(in crate::policy) fn render_within(
        &self,
        claims: &Map<String, Value>,
        allowed: ValueRule,
        max_len: usize,
    ) -> Result<String, RenderError> {
        let mut out = String::new();
        let mut len = 0;
        let mut last_placeholder = None;
        for part in &self.parts {
            let text = match part {
                Part::Literal(text) => Cow::Borrowed(text.as_str()),
                Part::Claim(placeholder) => {
                    last_placeholder = Some(placeholder.as_str());
                    substitution(placeholder, claims, allowed)?
                }
            };
            len += aws_len(&text);
            if len > max_len {
                return Err(RenderError::Refused {
                    placeholder: last_placeholder.unwrap_or_default().to_owned(),
                    reason: "makes the whole value too long",
                });
            }
            out.push_str(&text);
        }
        Ok(out)
    }
}

/// The checked text a placeholder stands for.
fn substitution<'a>(
    placeholder: &ClaimPath,
    claims: &'a Map<String, Value>,
    allowed: ValueRule,
) -> Result<Cow<'a, str>, RenderError> {
    let name = || placeholder.as_str().to_owned();
    let text = match placeholder.resolve(claims) {
        None => {
            return Err(RenderError::MissingClaim {
                placeholder: name(),
            });
        }
        Some(Value::String(s)) => Cow::Borrowed(s.as_str()),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        Some(Value::Bool(b)) => Cow::Owned(b.to_string()),
        Some(Value::Null | Value::Array(_) | Value::Object(_)) => {
            return Err(RenderError::NotAScalar {
                placeholder: name(),
            });
        }
    };
    allowed
        .check(&text)
        .map_err(|reason| RenderError::Refused {
            placeholder: name(),
            reason,
        })?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn render(template: &str, claims_json: Value, rule: ValueRule) -> Result<String, RenderError> {
        Template::parse(template)
            .unwrap()
            .render(&claims(claims_json), rule)
    }

    #[test]
    fn renders_strings_numbers_and_booleans() {
        let claims = json!({
            "repository": "acme/api",
            "run_number": 42,
            "ratio": 1.5,
            "admin": false,
            "realm_access": {"team": "platform"},
        });
        assert_eq!(
            render(
                "{repository}/{/realm_access/team}-{run_number}",
                claims.clone(),
                ValueRule::RepositoryName
            )
            .unwrap(),
            "acme/api/platform-42"
        );
        assert_eq!(
            render("{ratio}:{admin}", claims, ValueRule::TagValue).unwrap(),
            "1.5:false"
        );
    }

    #[test]
    fn missing_and_non_scalar_claims_are_errors() {
        let claims = json!({"n": null, "groups": ["a"], "obj": {"k": "v"}, "s": "x"});
        assert_eq!(
            render("{absent}", claims.clone(), ValueRule::Any),
            Err(RenderError::MissingClaim {
                placeholder: "absent".to_owned()
            })
        );
        assert_eq!(
            render("{/s/deeper}", claims.clone(), ValueRule::Any),
            Err(RenderError::MissingClaim {
                placeholder: "/s/deeper".to_owned()
            })
        );
        for name in ["n", "groups", "obj", "/obj"] {
            assert_eq!(
                render(&format!("{{{name}}}"), claims.clone(), ValueRule::Any),
                Err(RenderError::NotAScalar {
                    placeholder: name.to_owned()
                })
            );
        }
    }

    #[test]
    fn a_claim_cannot_widen_a_repository_pattern() {
        for hostile in ["*", "team/*", "..", "a/../b", "A", "a?b", "", "a//b", "a/"] {
            let result = render(
                "{repository}/*",
                json!({"repository": hostile}),
                ValueRule::RepositoryName,
            );
            assert!(
                matches!(result, Err(RenderError::Refused { ref placeholder, .. }) if placeholder == "repository"),
                "{hostile:?}: {result:?}"
            );
        }
    }

    #[test]
    fn error_messages_never_quote_the_claim_value() {
        let hostile = "<script>\u{1b}[31m*/../SECRET".repeat(20);
        let claims = json!({"x": hostile});
        for rule in [ValueRule::RepositoryName, ValueRule::TagValue] {
            let e = render("pre-{x}", claims.clone(), rule).unwrap_err();
            let message = e.to_string();
            assert!(message.contains("{x}"), "{message}");
            assert!(!message.contains("SECRET"), "{message}");
            assert!(!message.contains("script"), "{message}");
        }
    }

    #[test]
    fn any_substitutes_values_unchanged() {
        assert_eq!(
            render("{sub}", json!({"sub": "a\n*/.."}), ValueRule::Any).unwrap(),
            "a\n*/.."
        );
    }

    #[test]
    fn a_length_limit_blames_the_placeholder_that_crossed_it() {
        let t = Template::parse("ab{x}{y}cd").unwrap();
        let c = claims(json!({"x": "123", "y": "45"}));
        assert_eq!(t.render_within(&c, ValueRule::Any, 9).unwrap(), "ab12345cd");
        let blame = |max| match t.render_within(&c, ValueRule::Any, max) {
            Err(RenderError::Refused { placeholder, .. }) => placeholder,
            other => panic!("{other:?}"),
        };
        assert_eq!(blame(8), "y");
        assert_eq!(blame(6), "y");
        assert_eq!(blame(4), "x");
    }
}
