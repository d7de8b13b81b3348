//! Text for one line: a message laid out over lines (a regex error with its carets), or one
//! quoting a line break that a request or a file held, turned into words separated by single
//! spaces. Used wherever a message must fit one line: a log line, a config error's summary,
//! a problem's `detail`.

/// `text`'s words, each run of whitespace (line breaks included) made one space.
pub(crate) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_of_whitespace_is_one_space() {
        assert_eq!(
            one_line("regex parse error:\n    (\n    ^\nerror: unclosed group\r\n"),
            "regex parse error: ( ^ error: unclosed group"
        );
        assert_eq!(one_line("a\u{2028}b\u{2029}c\td"), "a b c d");
        assert_eq!(one_line("one line"), "one line");
    }
}
