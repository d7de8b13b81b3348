//! Checks of `[[deny]]`, `[admin]` and `[reload]`; the rules `[admin]` names are checked
//! beside `[audit]`'s, in `validate.rs`. A deny entry is checked by the kill switch's own
//! [`EntrySpec::problems`], which holds entries added through the API to the same bar; here
//! its problems get their place in the file.

use super::Findings;
use super::RawConfig as Config;
use crate::kill_switch::EntrySpec;

/// Checks `[[deny]]` against the configured `issuers` and `rules` (their names), and the
/// settings of `[admin]` and `[reload]`.
pub(super) fn operations(config: &Config, issuers: &[&str], rules: &[&str], f: &mut Findings) {
    for (i, entry) in config.deny.iter().enumerate() {
        deny_entry(entry, &format!("deny[{i}]"), issuers, rules, f);
    }
    f.within(
        config.admin.deny_poll_interval_secs,
        1..=300,
        "admin.deny_poll_interval_secs",
    );
    // A bound no longer than the poll would call the list stale between two good reads.
    f.check(
        (1..=3600).contains(&config.admin.deny_max_staleness_secs)
            && config.admin.deny_max_staleness_secs > config.admin.deny_poll_interval_secs,
        "admin.deny_max_staleness_secs",
        "must be 1 to 3600, and more than deny_poll_interval_secs",
    );
    f.check(
        config.reload.watch_interval_secs <= 3600,
        "reload.watch_interval_secs",
        "must be 0 (off) to 3600",
    );
}

/// Checks one deny entry at `at`, given the issuers' and rules' names.
fn deny_entry(entry: &EntrySpec, at: &str, issuers: &[&str], rules: &[&str], f: &mut Findings) {
    for (field, message) in entry.problems(issuers, rules) {
        let path = match field.as_str() {
            "" => at.to_owned(),
            field => format!("{at}.{field}"),
        };
        f.check(false, path, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deny_entrys_problems_are_placed_in_the_file() {
        let place = |text: &str| {
            let entry: EntrySpec = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            let mut f = Findings::default();
            deny_entry(&entry, "deny[1]", &["ci"], &["push"], &mut f);
            f.0.into_iter().map(|(path, _)| path).collect::<Vec<_>>()
        };
        assert_eq!(place(""), ["deny[1]"]);
        assert_eq!(
            place("issuer = \"gitlab\"\nclaims = { \"/a//b\" = \"x\" }"),
            ["deny[1].issuer", "deny[1].claims./a//b"]
        );
    }
}
