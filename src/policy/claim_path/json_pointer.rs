//! RFC 6901 JSON pointers into a token's claims, parsed once and strictly (no empty names, no
//! escapes but `~0` and `~1`, canonical array indexes), so a typo in the config is refused at load
//! rather than matching nothing.

use std::fmt;

use serde_json::{Map, Value};

/// An RFC 6901 JSON pointer into a token's claims, such as `/realm_access/roles`, parsed once:
/// it starts with `/`, every `/` is followed by a name, and a `~` only escapes `~0` (`~`) or
/// `~1` (`/`).
///
/// Empty names are refused although RFC 6901 allows them: no token names a claim `""`, and a
/// pointer such as `/a//b` or `/team/` is a typo in a config file, not a wish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonPointer {
    /// The pointer as written.
    text: String,
    /// Its reference tokens, unescaped; never empty.
    tokens: Vec<String>,
}

/// A pointer that does not parse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JSON pointer {pointer:?}: {reason}")]
pub(crate) struct InvalidPointer {
    pointer: String,
    reason: &'static str,
}

impl JsonPointer {
    /// Parses `text`, refusing empty names and escapes other than `~0` and `~1`.
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidPointer> {
        let invalid = |reason| InvalidPointer {
            pointer: text.to_owned(),
            reason,
        };
        let rest = text
            .strip_prefix('/')
            .ok_or_else(|| invalid("must start with `/`"))?;
        let tokens = rest
            .split('/')
            .map(|raw| {
                if raw.is_empty() {
                    Err(invalid("every `/` must be followed by a name"))
                } else {
                    unescape(raw).ok_or_else(|| invalid("`~` must be followed by `0` or `1`"))
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pointer as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The names it walks through, unescaped, from the top.
    pub(crate) fn tokens(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(String::as_str)
    }

    /// The value the pointer leads to inside `object` (a token's claims), if there is one:
    /// names step into objects, and canonical indexes (`0`, `7`, never `07`, `+7` or `-`)
    /// into arrays.
    pub(crate) fn resolve<'a>(&self, object: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.tokens.split_first()?;
        rest.iter()
            .try_fold(object.get(first)?, |value, token| match value {
                Value::Object(map) => map.get(token),
                Value::Array(items) => items.get(array_index(token)?),
                _ => None,
            })
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A reference token with `~1` and `~0` replaced in one pass, so that `~01` is `~1`, never
/// `/`; `None` when a `~` escapes anything else.
fn unescape(raw: &str) -> Option<String> {
    let mut token = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        token.push(if c == '~' {
            match chars.next()? {
                '0' => '~',
                '1' => '/',
                _ => return None,
            }
        } else {
            c
        });
    }
    Some(token)
}

/// An RFC 6901 array index: digits without a leading zero (and no sign, which `parse` allows).
fn array_index(token: &str) -> Option<usize> {
    let canonical =
        token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'));
    canonical.then(|| token.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resolve(pointer: &str, claims: Value) -> Option<Value> {
        let claims = claims.as_object().unwrap().clone();
        JsonPointer::parse(pointer)
            .unwrap()
            .resolve(&claims)
            .cloned()
    }

    fn refusal(pointer: &str) -> &'static str {
        JsonPointer::parse(pointer).expect_err(pointer).reason
    }

    #[test]
    fn pointers_walk_objects_and_arrays() {
        let claims = json!({
            "realm_access": {"team": "platform", "roles": ["dev", "ops"]},
            "a/b": {"c~d": 1},
            "matrix": [[0, 1], [2, 3]],
        });
        assert_eq!(
            resolve("/realm_access/team", claims.clone()),
            Some(json!("platform"))
        );
        assert_eq!(
            resolve("/realm_access/roles/1", claims.clone()),
            Some(json!("ops"))
        );
        assert_eq!(resolve("/a~1b/c~0d", claims.clone()), Some(json!(1)));
        assert_eq!(resolve("/matrix/1/0", claims.clone()), Some(json!(2)));
        assert_eq!(
            resolve("/realm_access", claims.clone()),
            Some(claims["realm_access"].clone())
        );
    }

    #[test]
    fn pointers_that_lead_nowhere_resolve_to_nothing() {
        let claims = json!({"roles": ["dev", "ops"], "sub": "alice", "n": null, "o": {"0": "x"}});
        for pointer in [
            "/roles/2",
            "/roles/01",
            "/roles/+1",
            "/roles/-",
            "/roles/-1",
            "/roles/x",
            "/roles/99999999999999999999999",
            "/sub/0",
            "/sub/x",
            "/n/x",
            "/missing",
            "/missing/deeper",
            "/roles~1x",
        ] {
            assert_eq!(resolve(pointer, claims.clone()), None, "{pointer}");
        }
        // An index is only an index inside an array; in an object it is a name.
        assert_eq!(resolve("/o/0", claims), Some(json!("x")));
    }

    #[test]
    fn escapes_unescape_tilde_one_before_tilde_zero() {
        // RFC 6901: `~01` is `~1` (a key with a tilde and a one), never `/`.
        let claims = json!({"~1": "tilde-one", "/": "slash", "~": "tilde"});
        assert_eq!(resolve("/~01", claims.clone()), Some(json!("tilde-one")));
        assert_eq!(resolve("/~1", claims.clone()), Some(json!("slash")));
        assert_eq!(resolve("/~0", claims), Some(json!("tilde")));
        let pointer = JsonPointer::parse("/a~1b/c~0d/~01").unwrap();
        assert_eq!(pointer.tokens().collect::<Vec<_>>(), ["a/b", "c~d", "~1"]);
        assert_eq!(pointer.as_str(), "/a~1b/c~0d/~01");
        assert_eq!(pointer.to_string(), pointer.as_str());
    }

    #[test]
    fn any_text_between_slashes_is_a_name() {
        for ok in ["/a", "/a/b", "/a b", "/é", "/~0~1", "/0", "/a.b:c"] {
            assert!(JsonPointer::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_pointers_say_what_is_wrong() {
        for pointer in ["", "a", "a/b", " /a"] {
            assert_eq!(refusal(pointer), "must start with `/`", "{pointer:?}");
        }
        for pointer in ["/", "/a//b", "/a/", "//a"] {
            assert_eq!(
                refusal(pointer),
                "every `/` must be followed by a name",
                "{pointer:?}"
            );
        }
        for pointer in ["/a~", "/a~2", "/~x", "/a/b~/c", "/~~0"] {
            assert_eq!(
                refusal(pointer),
                "`~` must be followed by `0` or `1`",
                "{pointer:?}"
            );
        }
        assert_eq!(
            JsonPointer::parse("/a~2").unwrap_err().to_string(),
            "JSON pointer \"/a~2\": `~` must be followed by `0` or `1`"
        );
    }
}
