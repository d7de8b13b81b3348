//! The config file: the settings of the environment variables, for callers that do not pass
//! the environment on (`sudo`, systemd units, desktop launchers start docker without it).
//! It lives in the user's config directory and may give a registry settings of its own:
//!
//! ```toml
//! url = "https://ecr-token-broker.example.com"
//! jwt_command = "sso-cli token --audience ecr-token-broker"
//!
//! [registries."123456789012.dkr.ecr.eu-west-1.amazonaws.com"]
//! access = "push"
//! repositories = ["team-a/*"]
//! ```

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{SETTINGS, Setting};
use crate::error::Error;
use crate::registry::EcrHost;

/// The variable naming the config file, which must then exist.
pub(super) const CONFIG_FILE_VAR: &str = "ECR_TOKEN_BROKER_CLIENT_CONFIG";
/// A file larger than this is not a config file of ours.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// One config file, its values as the environment would give them.
#[derive(Debug)]
pub(super) struct ConfigFile {
    path: PathBuf,
    top: BTreeMap<String, String>,
    /// By registry host, lowercase.
    registries: BTreeMap<String, BTreeMap<String, String>>,
}

impl ConfigFile {
    /// The file `ECR_TOKEN_BROKER_CLIENT_CONFIG` names, else the one in the user's config
    /// directory if there is one there.
    pub(super) fn load(env: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        if let Some(path) = env(CONFIG_FILE_VAR) {
            return Self::read(Path::new(&path)).map(Some);
        }
        let Some(base) = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
        else {
            return Ok(None);
        };
        let path = base.join("ecr-token-broker/config.toml");
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Self::read(&path).map(Some),
        }
    }

    fn read(path: &Path) -> Result<Self, Error> {
        let invalid = |why: String| Error::Config(format!("{}: {why}", path.display()));
        let metadata = std::fs::metadata(path).map_err(|e| invalid(e.to_string()))?;
        if !metadata.is_file() || metadata.len() > MAX_FILE_BYTES {
            return Err(invalid(format!(
                "not a config file (a regular file of at most {MAX_FILE_BYTES} bytes)"
            )));
        }
        // It may name a command to run: one that others can change would run theirs as you.
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(invalid(format!(
                "has mode {mode:04o}; others could change what it runs, so it must not be \
                 writable by group or others (chmod go-w)"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::parse(path, &text).map_err(invalid)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| describe(&e, text))?;
        let mut file = Self {
            path: path.to_owned(),
            top: BTreeMap::new(),
            registries: BTreeMap::new(),
        };
        for (key, value) in table {
            if key != "registries" {
                let value = setting_value(&key, &value, false)?;
                file.top.insert(key, value);
                continue;
            }
            let toml::Value::Table(registries) = value else {
                return Err("registries must be a table of [registries.\"HOST\"] sections".into());
            };
            for (host, section) in registries {
                let parsed = EcrHost::from_server_url(&host)
                    .filter(|h| h.as_str() == host.to_ascii_lowercase())
                    .ok_or_else(|| format!("registries.{host:?} is not an ECR registry host"))?;
                let toml::Value::Table(section) = section else {
                    return Err(format!("registries.{host:?} must be a table"));
                };
                let mut values = BTreeMap::new();
                for (key, value) in section {
                    let value = setting_value(&key, &value, true)
                        .map_err(|e| format!("registries.{host:?}.{e}"))?;
                    values.insert(key, value);
                }
                file.registries.insert(parsed.as_str().to_owned(), values);
            }
        }
        Ok(file)
    }

    /// `setting` from `host`'s section, else from the top level, with where it was found.
    pub(super) fn get(&self, setting: Setting, host: Option<&EcrHost>) -> Option<(String, String)> {
        let key = setting.key?;
        let from_section = host.filter(|_| setting.per_registry).and_then(|host| {
            let value = self.registries.get(host.as_str())?.get(key)?;
            Some((value, format!("registries.\"{host}\".{key}")))
        });
        let (value, name) =
            from_section.or_else(|| self.top.get(key).map(|value| (value, key.to_owned())))?;
        (!value.trim().is_empty())
            .then(|| (value.clone(), format!("{name} in {}", self.path.display())))
    }
}

/// The value of setting `key` as the environment would hold it; an error names the key.
fn setting_value(key: &str, value: &toml::Value, in_section: bool) -> Result<String, String> {
    let known: Vec<&str> = SETTINGS
        .iter()
        .filter(|s| s.per_registry || !in_section)
        .filter_map(|s| s.key)
        .collect();
    let Some(setting) = SETTINGS
        .iter()
        .find(|s| s.key == Some(key) && (s.per_registry || !in_section))
    else {
        let hint = if key == "jwt" {
            " (a JWT is not kept in a file: name it with jwt_file or jwt_command)"
        } else if in_section && SETTINGS.iter().any(|s| s.key == Some(key)) {
            // TOML puts every key after a section's header into that section.
            " (it belongs at the top level, before the first [registries.\"HOST\"] line)"
        } else {
            ""
        };
        return Err(format!(
            "{key}: not a setting here{hint}; known: {}",
            known.join(", ")
        ));
    };
    match value {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        // Listed patterns are joined as the environment gives them, and split again.
        toml::Value::Array(items) if setting.list => items
            .iter()
            .map(|item| match item {
                toml::Value::String(s) if !s.contains(',') => Ok(s.clone()),
                _ => Err(format!("{key}: each entry must be a name without a comma")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        _ => Err(format!(
            "{key}: must be {}",
            if setting.list {
                "a list of strings"
            } else {
                "a string, a number or true/false"
            }
        )),
    }
}

/// Where TOML could not read the file, without quoting it: a broken line may hold part of
/// a command that embeds a secret.
fn describe(error: &toml::de::Error, text: &str) -> String {
    let message = error.message();
    let message = message.split(['"', '`']).next().unwrap_or_default().trim();
    let Some(start) = error.span().map(|span| span.start.min(text.len())) else {
        return format!("not TOML: {message}");
    };
    let before = text.get(..start).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("not TOML at line {line}, column {column}: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ACCESS, REPOSITORIES, URL};

    const HOST: &str = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";

    fn parse(text: &str) -> Result<ConfigFile, String> {
        ConfigFile::parse(Path::new("/c/config.toml"), text)
    }

    #[test]
    fn a_registry_s_section_comes_before_the_top_level() {
        let file = parse(&format!(
            "url = \"https://b.example.com\"\naccess = \"pull\"\n\
             [registries.\"{HOST}\"]\naccess = \"push\"\nrepositories = [\"a/*\", \"b\"]\n"
        ))
        .unwrap();
        let host = EcrHost::from_server_url(HOST).unwrap();
        let other =
            EcrHost::from_server_url("210987654321.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(
            file.get(ACCESS, Some(&host)),
            Some((
                "push".to_owned(),
                format!("registries.\"{HOST}\".access in /c/config.toml")
            ))
        );
        assert_eq!(file.get(ACCESS, Some(&other)).unwrap().0, "pull");
        assert_eq!(file.get(ACCESS, None).unwrap().0, "pull");
        assert_eq!(file.get(REPOSITORIES, Some(&host)).unwrap().0, "a/*,b");
        assert_eq!(
            file.get(URL, Some(&host)).unwrap().1,
            "url in /c/config.toml"
        );
    }

    #[test]
    fn unknown_misplaced_and_secret_keys_are_refused() {
        for (text, why) in [
            (
                "jwt = \"eyJ.secret.sig\"",
                "jwt: not a setting here (a JWT is not kept",
            ),
            ("acess = \"pull\"", "acess: not a setting here"),
            (
                &format!("[registries.\"{HOST}\"]\nurl = \"https://x\""),
                "url: not a setting here (it belongs at the top level",
            ),
            (
                "[registries.\"ghcr.io\"]\naccess = \"pull\"",
                "not an ECR registry host",
            ),
            ("url = [\"a\"]", "url: must be a string"),
            ("repositories = [\"a,b\"]", "without a comma"),
            ("registries = 1", "must be a table"),
        ] {
            let message = parse(text).unwrap_err();
            assert!(message.contains(why), "{text}: {message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[test]
    fn a_line_toml_cannot_read_is_named_but_not_quoted() {
        let message = parse("url = \"https://b.example.com\"\njwt_command = \"print --key s3cret")
            .unwrap_err();
        assert!(
            message.starts_with("not TOML at line 2, column"),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
    }

    #[test]
    fn a_file_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "url = \"https://b.example.com\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let message = ConfigFile::read(&path).unwrap_err().to_string();
        assert!(message.contains("mode 0664"), "{message}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(ConfigFile::read(&path).is_ok());
    }
}
