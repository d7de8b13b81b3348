use serde_json::{Map, Value};

/// What one `{…}` of a template stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Placeholder {
    /// A top-level claim; `a.b` is the claim named `a.b`, not a path.
    Name(String),
    /// An RFC 6901 pointer into the claims, starting with `/`.
    Pointer(String),
}

impl Placeholder {
    /// Parses the text between the braces; the error says what is wrong with it.
    pub(super) fn parse(inner: &str) -> Result<Self, String> {
        if inner.is_empty() {
            return Err("empty placeholder `{}`".to_owned());
        }
        if inner.starts_with('/') {
            // A `~` escapes only `~0` (`~`) and `~1` (`/`).
            let bad_escape = inner
                .split('~')
                .skip(1)
                .any(|rest| !rest.starts_with(['0', '1']));
            return if bad_escape {
                Err(format!(
                    "JSON pointer {inner:?}: `~` must be followed by `0` or `1`"
                ))
            } else {
                Ok(Self::Pointer(inner.to_owned()))
            };
        }
        let is_name_char = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
        if inner.chars().all(is_name_char) {
            Ok(Self::Name(inner.to_owned()))
        } else {
            Err(format!(
                "unknown placeholder {inner:?}: a claim name is letters, digits, `_`, `.`, `:` \
                 and `-`; a JSON pointer starts with `/`; write `{{{{` and `}}}}` for literal \
                 braces"
            ))
        }
    }

    /// The placeholder as written between the braces.
    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Name(s) | Self::Pointer(s) => s,
        }
    }

    /// The claim value this placeholder points at, if the token has one.
    pub(super) fn resolve<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let pointer = match self {
            Self::Name(name) => return claims.get(name),
            Self::Pointer(pointer) => pointer,
        };
        let mut tokens = pointer
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"));
        let mut value = claims.get(&tokens.next()?)?;
        for token in tokens {
            value = match value {
                Value::Object(map) => map.get(&token)?,
                Value::Array(items) => items.get(array_index(&token)?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

/// An RFC 6901 array index: digits without a leading zero (and no sign, which `parse` allows).
fn array_index(token: &str) -> Option<usize> {
    let canonical = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    canonical.then(|| token.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resolve(placeholder: &str, claims: Value) -> Option<Value> {
        let claims = claims.as_object().unwrap().clone();
        Placeholder::parse(placeholder)
            .unwrap()
            .resolve(&claims)
            .cloned()
    }

    #[test]
    fn claim_names_are_top_level_keys_even_with_dots() {
        let claims = json!({"a.b": "flat", "a": {"b": "nested"}, "job_workflow_ref": "x"});
        assert_eq!(resolve("a.b", claims.clone()), Some(json!("flat")));
        assert_eq!(
            resolve("job_workflow_ref", claims.clone()),
            Some(json!("x"))
        );
        assert_eq!(resolve("missing", claims), None);
    }

    #[test]
    fn pointers_walk_objects_and_arrays() {
        let claims = json!({
            "realm_access": {"team": "platform", "roles": ["dev", "ops"]},
            "a/b": {"c~d": 1},
            "": "empty key",
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
        assert_eq!(resolve("/", claims.clone()), Some(json!("empty key")));
        assert_eq!(
            resolve("/realm_access", claims.clone()),
            Some(claims["realm_access"].clone())
        );
    }

    #[test]
    fn pointers_that_lead_nowhere_resolve_to_nothing() {
        let claims = json!({"roles": ["dev", "ops"], "sub": "alice", "n": null});
        for pointer in [
            "/roles/2",
            "/roles/01",
            "/roles/+1",
            "/roles/-",
            "/roles/-1",
            "/roles/",
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
    }

    #[test]
    fn escapes_unescape_tilde_one_before_tilde_zero() {
        // RFC 6901: `~01` is `~1` (a key with a tilde and a one), never `/`.
        let claims = json!({"~1": "tilde-one", "/": "slash"});
        assert_eq!(resolve("/~01", claims.clone()), Some(json!("tilde-one")));
        assert_eq!(resolve("/~1", claims), Some(json!("slash")));
    }

    #[test]
    fn names_and_pointers_are_checked() {
        for ok in [
            "sub",
            "job_workflow_ref",
            "a.b:c-d",
            "0",
            "/a/b",
            "/a b",
            "/é",
            "/~0~1",
        ] {
            assert!(Placeholder::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "bad name", "a/b", "é", "a*", " sub", "sub ", "/a~", "/a~2", "/~x",
        ] {
            assert!(Placeholder::parse(bad).is_err(), "{bad:?}");
        }
    }
}
