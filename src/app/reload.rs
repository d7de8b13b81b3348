//! Live reload: SIGHUP, or a change of the config file's content when `[reload]
//! watch_interval_secs` is set, re-reads the config. A config that fails `check-config`'s
//! validation is refused in one log line and the one serving stays; a valid one becomes the
//! new [`Snapshot`], which requests take from then on (those under way finish on theirs).
//!
//! The file's content is compared, not its inode or mtime: a Kubernetes ConfigMap update
//! swaps a symlink, and a file rewritten within one second keeps its mtime.

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{AppState, Snapshot};
use crate::config::Config;

/// The sections whose changes a reload applies, as `(section, key)`; `None` is the whole
/// section. Every other setting takes a restart.
const RELOADABLE: &[(&str, Option<&str>)] = &[
    ("issuers", None),
    ("rules", None),
    ("rate_limit", None),
    ("deny", None),
    ("admin", Some("rules")),
    ("admin", Some("deny_max_staleness_secs")),
    ("audit", Some("admin_rules")),
];

/// What a reload names as taking a restart, in its log line and in README.
const NEEDS_RESTART: &str = "[server], [database], [audit] other than admin_rules, [audit_chain], [aws], [cache], \
     [metrics], [audit_sink], [admin] deny_poll_interval_secs and [reload] take a restart";

/// SIGHUP, listened for from the start of `serve`: once installed, the signal no longer
/// ends the process, whatever happens later.
pub(crate) struct Hangups(Signal);

impl Hangups {
    /// Starts listening for SIGHUP.
    pub(crate) fn listen() -> std::io::Result<Self> {
        signal(SignalKind::hangup()).map(Self)
    }
}

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Signal,
    FileChanged,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Self::Signal => "SIGHUP",
            Self::FileChanged => "file changed",
        }
    }
}

/// Reloads the config of a running service.
pub(crate) struct Reloader {
    state: AppState,
    http: reqwest::Client,
    path: PathBuf,
    /// The text of the config serving now.
    applied: String,
    /// The digest of the file's content last looked at, applied or refused: a refused
    /// file is reported once, not at every look.
    seen: [u8; 32],
    hangups: Hangups,
}

impl Reloader {
    /// A reloader of the config at `path`, whose text `applied` serves now.
    pub(crate) fn new(
        state: AppState,
        http: reqwest::Client,
        path: PathBuf,
        applied: String,
        hangups: Hangups,
    ) -> Self {
        Self {
            state,
            http,
            path,
            seen: digest(&applied),
            applied,
            hangups,
        }
    }

    /// Reloads on every SIGHUP, and when the file changes if the config watches it, until
    /// aborted. The watch interval is the one the service started with.
    pub(crate) async fn run(mut self) {
        let watch = Config::parse(&self.applied, |name| std::env::var(name).ok())
            .ok()
            .and_then(|c| c.reload.watch_interval());
        let mut ticks = tokio::time::interval(watch.unwrap_or(Duration::from_secs(3600)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            let trigger = tokio::select! {
                _ = self.hangups.0.recv() => Trigger::Signal,
                _ = ticks.tick(), if watch.is_some() => Trigger::FileChanged,
            };
            let text = match tokio::fs::read_to_string(&self.path).await {
                Ok(text) => text,
                Err(error) => {
                    if matches!(trigger, Trigger::Signal) {
                        tracing::error!(trigger = trigger.as_str(), path = %self.path.display(), %error, "config reload refused: the file cannot be read; the previous config keeps serving");
                    }
                    continue;
                }
            };
            let seen = digest(&text);
            if matches!(trigger, Trigger::FileChanged) && seen == self.seen {
                continue;
            }
            self.seen = seen;
            self.reload(&text, trigger);
        }
    }

    fn reload(&mut self, text: &str, trigger: Trigger) {
        let path = self.path.display().to_string();
        let config = match Config::parse(text, |name| std::env::var(name).ok()) {
            Ok(config) => config,
            Err(errors) => {
                tracing::error!(trigger = trigger.as_str(), %path, problems = %errors.one_line(), "config reload refused: the new config is invalid; the previous config keeps serving");
                return;
            }
        };
        let current = self.state.current();
        let snapshot = match Snapshot::build(
            &config,
            Some(&current),
            &self.http,
            &self.state.metrics,
        ) {
            Ok(snapshot) => snapshot,
            Err(error) => {
                tracing::error!(trigger = trigger.as_str(), %path, error = format!("{error:#}"), "config reload refused; the previous config keeps serving");
                return;
            }
        };
        let issuers_kept = snapshot.verifier.shared_with(&current.verifier);
        let rules = config.rules.len();
        let deny_entries = config.deny.len();
        let dropped = self.state.install(snapshot);
        let not_applied = restart_only_changes(&self.applied, text);
        self.applied = text.to_owned();
        config.log_warnings();
        if not_applied.is_empty() {
            tracing::info!(trigger = trigger.as_str(), %path, issuers = config.issuers.len(), issuers_kept, rules, deny_entries, dropped_credentials = dropped, "config reloaded ({NEEDS_RESTART})");
        } else {
            tracing::warn!(trigger = trigger.as_str(), %path, issuers = config.issuers.len(), issuers_kept, rules, deny_entries, dropped_credentials = dropped, not_applied = %not_applied.join(", "), "config reloaded, but changes that take a restart were not applied ({NEEDS_RESTART})");
        }
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// The settings that differ between two valid config texts and that a reload does not
/// apply, by section (or `section.key`), sorted.
fn restart_only_changes(old: &str, new: &str) -> Vec<String> {
    let restart_only = |text: &str| {
        let mut table: toml::Table = toml::from_str(text).unwrap_or_default();
        for (section, key) in RELOADABLE {
            match key {
                None => {
                    table.remove(*section);
                }
                Some(key) => {
                    if let Some(toml::Value::Table(inner)) = table.get_mut(*section) {
                        inner.remove(*key);
                    }
                }
            }
        }
        table
    };
    let (old, new) = (restart_only(old), restart_only(new));
    let mut changed: Vec<String> = Vec::new();
    let sections: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for section in sections {
        // A section left out is its defaults, as an empty one is.
        let empty = toml::Value::Table(toml::Table::new());
        let (a, b) = match (old.get(section), new.get(section)) {
            (None, Some(b @ toml::Value::Table(_))) => (Some(&empty), Some(b)),
            (Some(a @ toml::Value::Table(_)), None) => (Some(a), Some(&empty)),
            other => other,
        };
        match (a, b) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
                changed.extend(
                    keys.into_iter()
                        .filter(|k| a.get(*k) != b.get(*k))
                        .map(|k| format!("{section}.{k}")),
                );
            }
            (a, b) if a != b => changed.push(section.clone()),
            _ => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::restart_only_changes;

    #[test]
    fn only_settings_a_reload_does_not_apply_are_named() {
        let old = r#"
[server]
listen = "0.0.0.0:8080"
[database]
url = "postgres://a"
[audit]
admin_rules = ["a"]
fingerprint_key_id = "k1"
[[rules]]
name = "a"
"#;
        let reloadable = old
            .replace(r#"admin_rules = ["a"]"#, r#"admin_rules = ["a", "b"]"#)
            .replace(r#"name = "a""#, r#"name = "b""#)
            + "[[deny]]\nsubject = \"x\"\n[admin]\nrules = [\"a\"]\ndeny_max_staleness_secs = 9\n";
        assert_eq!(restart_only_changes(old, &reloadable), Vec::<String>::new());
        let restart = old
            .replace("0.0.0.0:8080", "0.0.0.0:9090")
            .replace("k1", "k2")
            + "[cache]\nmax_entries = 5\n[admin]\ndeny_poll_interval_secs = 9\n";
        assert_eq!(
            restart_only_changes(old, &restart),
            [
                "admin.deny_poll_interval_secs",
                "audit.fingerprint_key_id",
                "cache.max_entries",
                "server.listen"
            ]
        );
    }
}
