//! The text between a placeholder's braces, parsed into the claim it stands for: a plain claim name
//! or a JSON pointer. A name that looks like a typo is refused.

use crate::policy::ClaimPath;

/// Parses the text between the braces of a placeholder into the claim it stands for; the
/// error says what is wrong with it.
///
/// A claim name is held to a plain alphabet here, unlike a rule's claim key, because a
/// template is read by people: `{a b}` or `{a*}` is far more likely a typo than a claim.
pub(super) fn parse(inner: &str) -> Result<ClaimPath, String> {
    if inner.is_empty() {
        return Err("empty placeholder `{}`".to_owned());
    }
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || "_.:-".contains(c);
    if inner.starts_with('/') || inner.chars().all(is_name_char) {
        ClaimPath::parse(inner).map_err(|e| e.to_string())
    } else {
        Err(format!(
            "unknown placeholder {inner:?}: a claim name is letters, digits, `_`, `.`, `:` \
             and `-`; a JSON pointer starts with `/`; write `{{{{` and `}}}}` for literal \
             braces"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            assert_eq!(parse(ok).map(|p| p.to_string()), Ok(ok.to_owned()));
        }
        for (bad, problem) in [
            ("", "empty placeholder"),
            ("bad name", "unknown placeholder"),
            ("a/b", "unknown placeholder"),
            ("é", "unknown placeholder"),
            ("a*", "unknown placeholder"),
            (" sub", "unknown placeholder"),
            ("sub ", "unknown placeholder"),
            ("/a~", "`~` must be followed by `0` or `1`"),
            ("/a~2", "`~` must be followed by `0` or `1`"),
            ("/~x", "`~` must be followed by `0` or `1`"),
            ("/", "every `/` must be followed by a name"),
            ("/a//b", "every `/` must be followed by a name"),
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.contains(problem), "{bad:?}: {error}");
        }
    }
}
