//! Static checks of a rule's session tags against STS's rules (at most 50, key charset and length,
//! no `aws:` prefix, keys unique regardless of case, transitive keys among the tags), every problem
//! reported at once.

use std::collections::{BTreeMap, HashMap};

use crate::policy::Template;
use crate::policy::template::{MAX_TAG_VALUE_LEN, aws_len, is_tag_text};

/// STS's limit on session tags per AssumeRole call, and on transitive tag keys.
const MAX_TAGS: usize = 50;
/// STS's limit on a session tag key's length.
const MAX_TAG_KEY_LEN: usize = 128;

/// Every way these tags break STS's rules, each message naming the key it concerns.
pub(super) fn problems(
    tags: &BTreeMap<String, Template>,
    transitive_keys: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    if tags.len() > MAX_TAGS {
        problems.push(format!(
            "{} session tags; STS allows at most {MAX_TAGS}",
            tags.len()
        ));
    }
    // STS treats keys that differ only in case as the same key.
    let mut seen_folded: HashMap<String, &str> = HashMap::new();
    for (key, template) in tags {
        problems.extend(key_problem(key).map(|p| format!("session tag key {key:?}: {p}")));
        if let Some(earlier) = seen_folded.insert(key.to_lowercase(), key) {
            problems.push(format!(
                "session tag key {key:?}: differs from {earlier:?} only in case, \
                 and STS compares keys case-insensitively"
            ));
        }
        problems
            .extend(value_problems(template).map(|p| format!("session tag {key:?}: value {p}")));
    }
    if transitive_keys.len() > MAX_TAGS {
        problems.push(format!(
            "{} transitive tag keys; STS allows at most {MAX_TAGS}",
            transitive_keys.len()
        ));
    }
    for (i, key) in transitive_keys.iter().enumerate() {
        if !tags.contains_key(key) {
            problems.push(format!(
                "transitive tag key {key:?} is not one of the session tag keys"
            ));
        }
        if transitive_keys[..i].contains(key) {
            problems.push(format!("transitive tag key {key:?} is listed twice"));
        }
    }
    problems
}

/// What is wrong with a tag key, if anything.
fn key_problem(key: &str) -> Option<&'static str> {
    if !(1..=MAX_TAG_KEY_LEN).contains(&aws_len(key)) {
        Some("must be 1 to 128 characters")
    } else if !is_tag_text(key) {
        Some("may only hold letters, digits, spaces and `_.:/=+-@`")
    } else if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        Some("the `aws:` prefix is reserved for AWS")
    } else {
        None
    }
}

/// What is wrong with the config-written text of a value template.
fn value_problems(template: &Template) -> impl Iterator<Item = String> + '_ {
    let bad_chars = template.literal_text().any(|text| !is_tag_text(text));
    let literal_len: usize = template.literal_text().map(aws_len).sum();
    let shown = template.as_str();
    [
        bad_chars.then(|| {
            format!(
                "{shown:?} may only hold letters, digits, spaces and `_.:/=+-@` outside its \
                 placeholders"
            )
        }),
        (literal_len > MAX_TAG_VALUE_LEN)
            .then(|| format!("{shown:?} is longer than 256 characters before any substitution")),
    ]
    .into_iter()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], transitive: &[&str]) -> Vec<String> {
        let tags: BTreeMap<String, Template> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Template::parse(v).unwrap()))
            .collect();
        let transitive: Vec<String> = transitive.iter().map(|k| (*k).to_owned()).collect();
        problems(&tags, &transitive)
    }

    #[test]
    fn at_most_fifty_tags() {
        let names: Vec<String> = (0..51).map(|i| format!("k{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(check(&many[..50], &[]), Vec::<String>::new());
        assert_eq!(
            check(&many, &[]),
            ["51 session tags; STS allows at most 50"]
        );
    }

    #[test]
    fn keys_follow_sts_rules() {
        let longest = "k".repeat(128);
        for key in [
            longest.as_str(),
            "a",
            "Team Name",
            "é",
            "a_.:/=+-@b",
            "awsx",
            "aws",
            "aws_x",
        ] {
            assert_eq!(check(&[(key, "v")], &[]), Vec::<String>::new(), "{key}");
        }
        let too_long = "k".repeat(129);
        let length = "must be 1 to 128 characters";
        let reserved = "the `aws:` prefix is reserved for AWS";
        let charset = "may only hold letters, digits, spaces and `_.:/=+-@`";
        for (key, problem) in [
            ("", length),
            (too_long.as_str(), length),
            ("aws:x", reserved),
            ("AWS:x", reserved),
            ("Aws:", reserved),
            ("a\nb", charset),
            ("a,b", charset),
            ("a*", charset),
            ("<k>", charset),
        ] {
            assert_eq!(
                check(&[(key, "v")], &[]),
                [format!("session tag key {key:?}: {problem}")]
            );
        }
    }

    #[test]
    fn keys_must_differ_in_more_than_case() {
        let same = |key: &str, earlier: &str| {
            [format!(
                "session tag key {key:?}: differs from {earlier:?} only in case, and STS \
                 compares keys case-insensitively"
            )]
        };
        assert_eq!(
            check(&[("Team", "a"), ("team", "b")], &[]),
            same("team", "Team")
        );
        assert_eq!(
            check(&[("ÉQUIPE", "a"), ("équipe", "b")], &[]),
            same("équipe", "ÉQUIPE")
        );
    }

    #[test]
    fn transitive_keys_must_be_tag_keys_listed_once() {
        assert_eq!(
            check(&[("team", "x"), ("env", "y")], &["team"]),
            Vec::<String>::new()
        );
        assert_eq!(
            check(&[("team", "x")], &["team", "Team", "other", "team"]),
            [
                "transitive tag key \"Team\" is not one of the session tag keys",
                "transitive tag key \"other\" is not one of the session tag keys",
                "transitive tag key \"team\" is listed twice",
            ]
        );
        let many = vec!["team"; 51];
        let found = check(&[("team", "x")], &many);
        assert_eq!(found[0], "51 transitive tag keys; STS allows at most 50");
        assert_eq!(
            found[1..],
            vec!["transitive tag key \"team\" is listed twice"; 50]
        );
    }

    #[test]
    fn literal_text_of_values_must_fit_the_charset() {
        let found = check(
            &[("a", "<{sub}>"), ("b", "x,{sub}"), ("c", "{{{sub}}}")],
            &[],
        );
        let charset = |key: &str, value: &str| {
            format!(
                "session tag {key:?}: value {value:?} may only hold letters, digits, spaces and \
                 `_.:/=+-@` outside its placeholders"
            )
        };
        assert_eq!(
            found,
            [
                charset("a", "<{sub}>"),
                charset("b", "x,{sub}"),
                // Escaped braces are literal text, and STS does not allow them either.
                charset("c", "{{{sub}}}"),
            ]
        );
        assert_eq!(
            check(&[("ok", "ci-{sub}:Zoë 1")], &[]),
            Vec::<String>::new()
        );
        let long = "x".repeat(257);
        assert_eq!(
            check(&[("k", &long)], &[]),
            [format!(
                "session tag \"k\": value {long:?} is longer than 256 characters before any \
                 substitution"
            )]
        );
    }
}
