//! Config strings with claim placeholders, such as `"{repository}/*"` or `"ci-{actor}"`.
//!
//! A placeholder is `{NAME}`: a top-level claim name, or an RFC 6901 JSON pointer into the
//! claims when NAME starts with `/`. `{{` and `}}` are literal braces. Every substituted value
//! must pass a [`ValueRule`] chosen by the caller, so a token can fill in a name but never
//! change the shape of what the config wrote.

mod placeholder;
mod render;
mod value_rule;

use std::fmt;

use serde::Deserialize;

use super::ClaimPath;

pub(crate) use render::RenderError;
pub(crate) use value_rule::ValueRule;
pub(super) use value_rule::{MAX_TAG_VALUE_LEN, aws_len, is_tag_text};

/// A config string with claim placeholders, parsed once at load.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) struct Template {
    text: String,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Config-written text, with `{{` and `}}` already unescaped.
    Literal(String),
    /// A placeholder: the claim named between the braces.
    Claim(ClaimPath),
}

/// A template that does not parse, with the 1-based column (in characters) of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template:?}, column {column}: {problem}")]
pub(crate) struct TemplateError {
    template: String,
    column: usize,
    problem: String,
}

impl Template {
    /// Parses `text`, refusing unknown placeholders and unpaired braces.
    pub(crate) fn parse(text: &str) -> Result<Self, TemplateError> {
        let error = |index: usize, problem: String| TemplateError {
            template: text.to_owned(),
            column: index + 1,
            problem,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().enumerate().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.next_if(|&(_, c)| c == '{').is_some() => literal.push('{'),
                '}' if chars.next_if(|&(_, c)| c == '}').is_some() => literal.push('}'),
                '}' => {
                    return Err(error(
                        at,
                        "stray `}` (write `}}` for a literal brace)".to_owned(),
                    ));
                }
                '{' => {
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some((_, '}')) => break,
                            Some((nested, '{')) => {
                                return Err(error(nested, "`{` inside a placeholder".to_owned()));
                            }
                            Some((_, c)) => inner.push(c),
                            None => {
                                return Err(error(
                                    at,
                                    "unclosed `{` (write `{{` for a literal brace)".to_owned(),
                                ));
                            }
                        }
                    }
                    let placeholder = placeholder::parse(&inner).map_err(|p| error(at, p))?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Claim(placeholder));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self {
            text: text.to_owned(),
            parts,
        })
    }

    /// The original text, as written in the config.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The claims its placeholders name, in order.
    pub(crate) fn placeholders(&self) -> impl Iterator<Item = &ClaimPath> {
        self.parts.iter().filter_map(|part| match part {
            Part::Claim(p) => Some(p),
            Part::Literal(_) => None,
        })
    }

    /// The literal segments in order, braces unescaped, so callers can check the parts the
    /// config wrote.
    pub(crate) fn literal_text(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Literal(text) => Some(text.as_str()),
            Part::Claim(_) => None,
        })
    }
}

impl TryFrom<String> for Template {
    type Error = TemplateError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value, json};

    use super::*;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn parse_error(text: &str) -> TemplateError {
        Template::parse(text).expect_err(text)
    }

    #[test]
    fn parses_placeholders_and_literals_in_order() {
        let t = Template::parse("ci-{actor}/{/realm_access/team}-x").unwrap();
        assert_eq!(t.as_str(), "ci-{actor}/{/realm_access/team}-x");
        assert_eq!(t.to_string(), t.as_str());
        assert_eq!(
            t.placeholders().map(ClaimPath::as_str).collect::<Vec<_>>(),
            ["actor", "/realm_access/team"]
        );
        assert_eq!(t.literal_text().collect::<Vec<_>>(), ["ci-", "/", "-x"]);
    }

    #[test]
    fn doubled_braces_are_literal() {
        let t = Template::parse("{{x}}-{{{sub}}}").unwrap();
        assert_eq!(
            t.placeholders().map(ClaimPath::as_str).collect::<Vec<_>>(),
            ["sub"]
        );
        assert_eq!(t.literal_text().collect::<Vec<_>>(), ["{x}-{", "}"]);
        assert_eq!(
            t.render(&claims(json!({"sub": "a"})), ValueRule::Any)
                .unwrap(),
            "{x}-{a}"
        );
    }

    #[test]
    fn plain_and_empty_text_are_templates_without_placeholders() {
        for text in ["", "acme/api", "*"] {
            let t = Template::parse(text).unwrap();
            assert_eq!(t.placeholders().count(), 0);
            assert_eq!(
                t.render(&Map::new(), ValueRule::RepositoryName).unwrap(),
                text
            );
        }
    }

    #[test]
    fn malformed_templates_name_the_column_and_the_problem() {
        for (text, column, problem) in [
            ("{repository", 1, "unclosed `{`"),
            ("ab{", 3, "unclosed `{`"),
            ("a}b", 2, "stray `}`"),
            ("{a}}", 4, "stray `}`"),
            ("{{x}", 4, "stray `}`"),
            ("x{}", 2, "empty placeholder"),
            ("{bad name}", 1, "unknown placeholder \"bad name\""),
            ("é{é}", 2, "unknown placeholder \"é\""),
            ("{a{b}}", 3, "`{` inside a placeholder"),
            ("{/a~2}", 1, "`~` must be followed by `0` or `1`"),
            ("x{/a//b}", 2, "every `/` must be followed by a name"),
        ] {
            let e = parse_error(text);
            assert_eq!(e.column, column, "{text}: {e}");
            assert!(e.problem.contains(problem), "{text}: {e}");
            assert!(e.to_string().contains(&format!("column {column}")), "{e}");
        }
    }

    #[test]
    fn deserialises_from_a_string_through_parse() {
        let t: Template = serde_json::from_value(json!("{repository}/*")).unwrap();
        assert_eq!(t, Template::parse("{repository}/*").unwrap());
        let e = serde_json::from_value::<Template>(json!("{repo")).unwrap_err();
        assert!(e.to_string().contains("unclosed `{`"), "{e}");
        let e = serde_json::from_value::<Template>(json!(5)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid type: integer `5`, expected a string"
        );
    }
}
