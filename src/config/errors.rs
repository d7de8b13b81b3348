//! `ConfigErrors`, every problem of a config file with its path in the file, and `Findings`,
//! which collects them over the one parsing pass. Never quotes a secret or the file's text.

use std::collections::HashSet;
use std::fmt;
use std::ops::RangeInclusive;

use crate::domain::one_line;

/// Every problem found in a config file, each with the path of the field it concerns.
#[derive(Debug)]
pub struct ConfigErrors(Vec<(String, String)>);

impl ConfigErrors {
    /// The file's syntax or types are wrong; `text` is the file, which is not quoted.
    pub(super) fn from_toml(error: &toml::de::Error, text: &str) -> Self {
        Self(vec![super::toml_error::describe(error, text)])
    }

    /// Every problem on one line, as a log line or a problem's detail wants it.
    pub fn one_line(&self) -> String {
        self.iter()
            .map(|(path, message)| {
                let message = one_line(message);
                if path.is_empty() {
                    message
                } else {
                    format!("{path}: {message}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The problems as `(field path, message)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(p, m)| (p.as_str(), m.as_str()))
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.0.len();
        write!(f, "{count} problem{}:", if count == 1 { "" } else { "s" })?;
        for (path, message) in &self.0 {
            let message = message.trim_end().replace('\n', "\n    ");
            if path.is_empty() {
                write!(f, "\n  - {message}")?;
            } else {
                write!(f, "\n  - {path}: {message}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Problems found so far, each with its path in the file.
#[derive(Default)]
pub(super) struct Findings(pub(super) Vec<(String, String)>);

impl Findings {
    pub(super) fn into_result(self) -> Result<(), ConfigErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.0))
        }
    }

    pub(super) fn check(&mut self, ok: bool, path: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.0.push((path.into(), message.into()));
        }
    }

    /// The `name` of an entry at `at` (an issuer or a rule, as `kind` says): not empty, and
    /// not one of the `seen` entries' before it.
    pub(super) fn unique_name<'a>(
        &mut self,
        name: &'a str,
        at: &str,
        kind: &str,
        seen: &mut HashSet<&'a str>,
    ) {
        self.check(!name.is_empty(), format!("{at}.name"), "must not be empty");
        self.check(
            seen.insert(name),
            format!("{at}.name"),
            format!("duplicate {kind} name {name:?}"),
        );
    }

    /// `value` must be at least `min`.
    pub(super) fn at_least<T: PartialOrd + fmt::Display>(
        &mut self,
        value: T,
        min: T,
        path: impl Into<String>,
    ) {
        if value < min {
            self.0
                .push((path.into(), format!("must be at least {min}")));
        }
    }

    /// `value` must lie in `range`, both ends included.
    pub(super) fn within<T: PartialOrd + fmt::Display>(
        &mut self,
        value: T,
        range: RangeInclusive<T>,
        path: impl Into<String>,
    ) {
        if !range.contains(&value) {
            let message = format!("must be {} to {}", range.start(), range.end());
            self.0.push((path.into(), message));
        }
    }
}
