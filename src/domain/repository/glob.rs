//! The `*`-only glob behind `RepositoryPattern`: no other character is special, and a match
//! costs O(pattern × text) at worst, never exponential backtracking.

/// Matches `text` against `pattern`, where only a `*` in `pattern` is special and matches
/// any sequence; a `*` in `text` is an ordinary character.
///
/// The classic greedy matcher: on a mismatch, let the most recent `*` swallow one more
/// character and retry from there. That is enough because a later `*` can absorb anything an
/// earlier one would have; it runs in O(pattern × text) at worst.
pub(super) fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where the pattern resumes after the last `*`, and the text position it last tried.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                backtrack = Some((p, t));
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((after_star, tried)) => {
                    p = after_star;
                    t = tried + 1;
                    backtrack = Some((after_star, t));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        glob_matches(pattern.as_bytes(), text.as_bytes())
    }

    #[test]
    fn literals_match_only_themselves() {
        assert!(matches("abc", "abc"));
        assert!(!matches("abc", "ab"));
        assert!(!matches("abc", "abcd"));
        assert!(matches("", ""));
        assert!(!matches("", "a"));
    }

    #[test]
    fn a_star_matches_any_sequence_even_empty() {
        assert!(matches("*", ""));
        assert!(matches("a*", "a"));
        assert!(matches("a*c", "abbbc"));
        assert!(matches("*b*", "abc"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYcZ"));
        assert!(matches("*a*a*a", "aaaa"));
        assert!(!matches("*a*a*a", "aab"));
    }

    #[test]
    fn a_star_in_the_text_is_only_matched_by_a_star() {
        assert!(matches("*", "*"));
        assert!(matches("a*", "a*"));
        assert!(!matches("ab", "a*"));
        assert!(!matches("a?", "a*"));
    }

    #[test]
    fn backtracking_stays_cheap() {
        let text = "a".repeat(256);
        let pattern = format!("{}b", "*a".repeat(100));
        assert!(!matches(&pattern, &text));
    }
}
