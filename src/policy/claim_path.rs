//! Where a claim is in a token, as rules and templates name it: a top-level claim name, or an
//! RFC 6901 JSON pointer into nested claims when the text starts with `/`.

mod json_pointer;

use std::fmt;

use serde_json::{Map, Value};

pub(crate) use json_pointer::{InvalidPointer, JsonPointer};

/// A claim by name, or by JSON pointer, parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimPath {
    /// A top-level claim; `a.b` is the claim named `a.b`, not a path.
    Name(String),
    /// A pointer into the claims.
    Pointer(JsonPointer),
}

impl ClaimPath {
    /// A pointer when `text` starts with `/`, otherwise a claim name taken as it is.
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidPointer> {
        if text.starts_with('/') {
            JsonPointer::parse(text).map(Self::Pointer)
        } else {
            Ok(Self::Name(text.to_owned()))
        }
    }

    /// The claim as written.
    pub(crate) fn as_str(&self) -> &str {
        match self {
            Self::Name(name) => name,
            Self::Pointer(pointer) => pointer.as_str(),
        }
    }

    /// The names it walks through from the top of the claims, unescaped.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        let (name, pointer) = match self {
            Self::Name(name) => (Some(name.as_str()), None),
            Self::Pointer(pointer) => (None, Some(pointer.tokens())),
        };
        name.into_iter().chain(pointer.into_iter().flatten())
    }

    /// The claim's value, if the token has one.
    pub(crate) fn resolve<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        match self {
            Self::Name(name) => claims.get(name),
            Self::Pointer(pointer) => pointer.resolve(claims),
        }
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_top_level_keys_even_with_dots() {
        let claims = json!({"a.b": "flat", "a": {"b": "nested"}});
        let claims = claims.as_object().unwrap();
        let flat = ClaimPath::parse("a.b").unwrap();
        assert_eq!(flat.resolve(claims), Some(&json!("flat")));
        assert_eq!(flat.keys().collect::<Vec<_>>(), ["a.b"]);
        let nested = ClaimPath::parse("/a/b").unwrap();
        assert_eq!(nested.resolve(claims), Some(&json!("nested")));
        assert_eq!(nested.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(ClaimPath::parse("missing").unwrap().resolve(claims), None);
    }

    #[test]
    fn only_text_starting_with_a_slash_is_a_pointer() {
        assert!(matches!(ClaimPath::parse("a/b"), Ok(ClaimPath::Name(_))));
        assert!(matches!(
            ClaimPath::parse("/a/b"),
            Ok(ClaimPath::Pointer(_))
        ));
        assert!(ClaimPath::parse("/a//b").is_err());
        assert_eq!(ClaimPath::parse("/a~1b").unwrap().as_str(), "/a~1b");
        assert_eq!(ClaimPath::parse("sub").unwrap().to_string(), "sub");
    }
}
