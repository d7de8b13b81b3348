//! TOML errors told without the text of the file: a broken line may hold a secret
//! (`chain_key = "…` without its closing quote), and toml's own message quotes the line.

/// Keys whose values are secrets, by their last segment.
const SECRET_KEYS: [&str; 4] = [
    "url",
    "fingerprint_key",
    "chain_key",
    "previous_fingerprint_keys",
];

/// The key path (when one can be told safely) and a message with the line and column, with
/// nothing quoted from a secret's line.
pub(super) fn describe(error: &toml::de::Error, text: &str) -> (String, String) {
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return (String::new(), redact_quoted(error.message()));
    };
    let before = text.get(..start).unwrap_or_default();
    let line_number = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    let table = before[..line_start].lines().rev().find_map(table_header);
    let key = line.split_once('=').and_then(|(key, _)| bare_key(key));
    let path = [table, key]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(".");
    let secret = key.is_none()
        || path
            .split('.')
            .any(|segment| SECRET_KEYS.contains(&segment));
    let message = if secret {
        // What was expected instead is grammar or type names, not worth a line of `…`s.
        let message = error.message();
        let what = message.split(", expected ").next().unwrap_or(message);
        redact_quoted(what)
    } else {
        error.message().to_owned()
    };
    (
        path,
        format!("line {line_number}, column {column}: {message}"),
    )
}

/// `[name]` or `[[name]]` as `name`, for a line that is a table header.
fn table_header(line: &str) -> Option<&str> {
    let inner = line.trim().strip_prefix('[')?.split(']').next()?;
    bare_key(inner.trim_start_matches('['))
}

/// A dotted key of bare names, as written; anything else (a quoted key, a stray value)
/// might be a secret's text and is not repeated.
fn bare_key(text: &str) -> Option<&str> {
    let key = text.trim();
    let bare = |segment: &str| {
        !segment.is_empty()
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    key.split('.').map(str::trim).all(bare).then_some(key)
}

/// Replaces whatever the message quotes (`"…"` or `` `…` ``) with `…`.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut open: Option<char> = None;
    for c in message.chars() {
        match open {
            Some(quote) if c == quote => {
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                out.push('…');
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn describe_text(text: &str) -> (String, String) {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[expect(dead_code, reason = "only its errors are of interest")]
            audit: Audit,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Audit {
            #[expect(dead_code, reason = "only its errors are of interest")]
            chain_key: String,
            #[serde(default)]
            #[expect(dead_code, reason = "only its errors are of interest")]
            queue_capacity: u64,
        }
        let error = toml::from_str::<File>(text).err().expect("an error");
        describe(&error, text)
    }

    #[test]
    fn a_broken_secret_line_is_located_but_not_quoted() {
        let (path, message) = describe_text("[audit]\nchain_key = \"s3cr3t-value\\q\"\n");
        assert_eq!(path, "audit.chain_key");
        assert!(message.starts_with("line 2, column "), "{message}");
        assert!(!message.contains("s3cr3t"), "{message}");

        let (path, message) = describe_text("[audit]\nchain_key = 12345678\n");
        assert_eq!(path, "audit.chain_key");
        assert_eq!(message, "line 2, column 13: invalid type: integer `…`");
    }

    #[test]
    fn other_keys_keep_their_message() {
        let (path, message) = describe_text("[audit]\nchain_key = \"k\"\nbogus = 1\n");
        assert_eq!(path, "audit.bogus");
        assert!(
            message.starts_with("line 3, column 1: ") && message.contains("`bogus`"),
            "{message}"
        );
        let (path, message) =
            describe_text("[audit]\nchain_key = \"k\"\nqueue_capacity = \"many\"\n");
        assert_eq!(path, "audit.queue_capacity");
        assert!(message.contains("many"), "{message}");
    }

    #[test]
    fn a_line_without_a_bare_key_is_not_repeated() {
        let (path, message) = describe_text("[audit]\n\"s3cr3t = oops\n");
        assert_eq!(path, "audit");
        assert!(!message.contains("s3cr3t"), "{message}");
    }

    #[test]
    fn quoted_text_is_redacted() {
        assert_eq!(
            redact_quoted("invalid type: string \"abc\", expected `u64`"),
            "invalid type: string \"…\", expected `…`"
        );
    }
}
