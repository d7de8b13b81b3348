use globset::{Glob, GlobMatcher};
use serde_json::Value;

/// A claim pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("pattern {pattern:?}: {reason}")]
pub struct InvalidPattern {
    pattern: String,
    reason: String,
}

/// One pattern: an exact value, or a glob when it contains `*`, `?` or `[`.
#[derive(Debug, Clone)]
enum Pattern {
    Exact(String),
    Glob(GlobMatcher),
}

impl Pattern {
    fn new(pattern: &str) -> Result<Self, InvalidPattern> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(Self::Exact(pattern.to_owned()));
        }
        // `*` crosses `/` on purpose: claims such as `repo:acme/api:ref:refs/heads/main` are
        // opaque strings, not paths.
        Glob::new(pattern)
            .map(|g| Self::Glob(g.compile_matcher()))
            .map_err(|e| InvalidPattern {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Self::Exact(expected) => expected == value,
            Self::Glob(glob) => glob.is_match(value),
        }
    }
}

/// Matches one claim of a token against any of its patterns.
#[derive(Debug, Clone)]
pub struct ClaimMatcher {
    claim: String,
    patterns: Vec<Pattern>,
}

impl ClaimMatcher {
    /// Compiles the patterns for `claim`; any of them may match.
    pub fn new(claim: &str, patterns: &[String]) -> Result<Self, InvalidPattern> {
        Ok(Self {
            claim: claim.to_owned(),
            patterns: patterns
                .iter()
                .map(|p| Pattern::new(p))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The claim this matcher reads.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// Whether the claims satisfy this matcher. A missing claim never matches; strings,
    /// numbers and booleans are compared as text; an array matches when any element does.
    pub fn matches(&self, claims: &serde_json::Map<String, Value>) -> bool {
        claims
            .get(&self.claim)
            .is_some_and(|v| self.matches_value(v))
    }

    fn matches_value(&self, value: &Value) -> bool {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Array(items) => {
                return items.iter().any(|v| !v.is_array() && self.matches_value(v));
            }
            Value::Null | Value::Object(_) => return false,
        };
        self.patterns.iter().any(|p| p.matches(&text))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn matcher(claim: &str, patterns: &[&str]) -> ClaimMatcher {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        ClaimMatcher::new(claim, &patterns).unwrap()
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn exact_values_match_only_themselves() {
        let m = matcher("repository_owner", &["acme"]);
        assert!(m.matches(&claims(json!({"repository_owner": "acme"}))));
        assert!(!m.matches(&claims(json!({"repository_owner": "acme-evil"}))));
        assert!(!m.matches(&claims(json!({"repository_owner": "ACME"}))));
        assert!(!m.matches(&claims(json!({}))));
    }

    #[test]
    fn globs_cross_slashes_and_stay_anchored() {
        let m = matcher("sub", &["repo:acme/*"]);
        assert!(m.matches(&claims(json!({"sub": "repo:acme/api:ref:refs/heads/main"}))));
        assert!(!m.matches(&claims(json!({"sub": "repo:acme-evil/api"}))));
        assert!(!m.matches(&claims(json!({"sub": "xrepo:acme/api"}))));
    }

    #[test]
    fn a_list_means_any_of() {
        let m = matcher("ref", &["refs/heads/main", "refs/tags/v*"]);
        assert!(m.matches(&claims(json!({"ref": "refs/tags/v1.2"}))));
        assert!(!m.matches(&claims(json!({"ref": "refs/heads/dev"}))));
    }

    #[test]
    fn scalars_compare_as_text_and_arrays_as_any_element() {
        assert!(matcher("run_attempt", &["1"]).matches(&claims(json!({"run_attempt": 1}))));
        assert!(matcher("admin", &["true"]).matches(&claims(json!({"admin": true}))));
        let groups = matcher("groups", &["platform-*"]);
        assert!(groups.matches(&claims(json!({"groups": ["dev", "platform-ops"]}))));
        assert!(!groups.matches(&claims(json!({"groups": ["dev"]}))));
        assert!(!groups.matches(&claims(json!({"groups": {"platform-ops": true}}))));
        assert!(!matcher("x", &["*"]).matches(&claims(json!({"x": null}))));
    }

    #[test]
    fn broken_globs_are_refused() {
        assert!(ClaimMatcher::new("sub", &["repo:[acme".to_owned()]).is_err());
    }
}
