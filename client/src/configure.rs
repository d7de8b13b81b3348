//! `configure`: names this helper in docker's `config.json` (`credHelpers`) for every
//! registry the caller's rule allows, as the broker's `/v1/whoami` tells them, and leaves
//! everything else in the file as it was.
//!
//! The file may hold passwords of other registries (`auths`), so it is rewritten through
//! [`crate::private_file`]: mode 0600, never half-written.

use std::collections::BTreeSet;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::broker::{Broker, Grant};
use crate::config::{self, Settings, Sources};
use crate::error::Error;
use crate::registry::EcrHost;

/// The value docker turns into `docker-credential-ecr-token-broker`.
const HELPER: &str = "ecr-token-broker";

/// Asks the broker which registries the caller may use and writes them into docker's
/// config; the answer (stdout) lists them, one per line.
pub(crate) async fn configure(var: impl Fn(&str) -> Option<String>) -> Result<String, Error> {
    let sources = Sources::load(var)?;
    let settings = Settings::from_sources(&sources, None)?;
    let source = settings.jwt.as_ref().ok_or_else(config::no_jwt)?;
    let jwt = source.read(settings.timeout).await?;
    let grant = Broker::new(&settings)?.whoami(&jwt).await?;
    let hosts = hosts(&grant)?;
    let path = docker_config_path(&sources)?;
    let mut document = read(&path)?;
    for line in add_helpers(&mut document, &hosts)? {
        crate::note(&line);
    }
    write(&path, &document)?;
    let mut answer = String::new();
    for host in &hosts {
        answer.push_str(host.as_str());
        answer.push('\n');
    }
    Ok(answer)
}

/// Every registry of the grant in every region of it, as standard ECR hosts.
fn hosts(grant: &Grant) -> Result<BTreeSet<EcrHost>, Error> {
    let mut hosts = BTreeSet::new();
    for id in &grant.registry_ids {
        for region in &grant.regions {
            let host = EcrHost::standard(id, region).ok_or_else(|| {
                Error::Transport(format!(
                    "the broker's rule {} names registry {id:?} in region {region:?}, which \
                     make no ECR host",
                    grant.rule
                ))
            })?;
            hosts.insert(host);
        }
    }
    if hosts.is_empty() {
        return Err(Error::NotAllowed {
            detail: format!("rule {} names no registry or region", grant.rule),
            request_id: crate::error::RequestId(None),
        });
    }
    Ok(hosts)
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, as docker finds it.
fn docker_config_path(sources: &Sources<'_>) -> Result<PathBuf, Error> {
    let dir = sources
        .env("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            sources
                .env("HOME")
                .map(|home| Path::new(&home).join(".docker"))
        })
        .ok_or_else(|| {
            Error::Config("neither DOCKER_CONFIG nor HOME is set: where is docker's config?".into())
        })?;
    Ok(dir.join("config.json"))
}

/// The document in `path`: an empty one if there is no file yet.
fn read(path: &Path) -> Result<Map<String, Value>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(Error::Config(format!("reading {}: {e}", path.display()))),
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    // Not quoted in the error: it may hold passwords.
    match serde_json::from_str(&text) {
        Ok(Value::Object(document)) => Ok(document),
        _ => Err(Error::Config(format!(
            "{} is not a JSON object; left as it is",
            path.display()
        ))),
    }
}

/// Names the helper for `hosts` in `credHelpers`, keeping every other entry; returns what
/// a person should know (a host that named another helper, a stored password now unused).
fn add_helpers(
    document: &mut Map<String, Value>,
    hosts: &BTreeSet<EcrHost>,
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    for host in hosts {
        let stored = document
            .get("auths")
            .and_then(Value::as_object)
            .is_some_and(|auths| {
                auths
                    .keys()
                    .any(|k| EcrHost::from_server_url(k).as_ref() == Some(host))
            });
        if stored {
            notes.push(format!(
                "auths in docker's config still holds a password for {host}, which \
                 credHelpers now overrides; remove that entry to drop it"
            ));
        }
    }
    let helpers = document
        .entry("credHelpers")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| {
            Error::Config("credHelpers in docker's config is not a JSON object".to_owned())
        })?;
    for host in hosts {
        let previous = helpers.insert(host.to_string(), Value::from(HELPER));
        if let Some(previous) = previous.filter(|p| p != HELPER) {
            notes.push(format!(
                "{host}: credHelpers named {previous}, now {HELPER}"
            ));
        }
    }
    Ok(notes)
}

/// Replaces `path` with `document`: written to a private temporary file beside it, then
/// renamed, so docker never reads half a file. A link is followed, as docker does.
fn write(path: &Path, document: &Map<String, Value>) -> Result<(), Error> {
    let failed =
        |what: &str, e: std::io::Error| Error::Config(format!("{what} {}: {e}", path.display()));
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = target.parent().unwrap_or(Path::new("."));
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| failed("creating the directory of", e))?;
    let mut text = serde_json::to_string_pretty(document).expect("JSON serialises");
    text.push('\n');
    crate::private_file::replace(&target, text.as_bytes()).map_err(|e| failed("writing", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grant(ids: &[&str], regions: &[&str]) -> Grant {
        Grant {
            rule: "r".to_owned(),
            registry_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            regions: regions.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn every_registry_in_every_region() {
        let hosts: Vec<String> = hosts(&grant(
            &["111122223333", "444455556666"],
            &["eu-west-1", "us-east-1"],
        ))
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            hosts,
            [
                "111122223333.dkr.ecr.eu-west-1.amazonaws.com",
                "111122223333.dkr.ecr.us-east-1.amazonaws.com",
                "444455556666.dkr.ecr.eu-west-1.amazonaws.com",
                "444455556666.dkr.ecr.us-east-1.amazonaws.com",
            ]
        );
        assert!(hosts_error(&grant(&[], &["eu-west-1"])).contains("names no registry"));
        assert!(hosts_error(&grant(&["12"], &["eu-west-1"])).contains("make no ECR host"));
    }

    fn hosts_error(grant: &Grant) -> String {
        hosts(grant).unwrap_err().to_string()
    }

    #[test]
    fn the_helper_is_added_and_everything_else_kept() {
        let host = "111122223333.dkr.ecr.eu-west-1.amazonaws.com";
        let mut document = json!({
            "auths": {"ghcr.io": {"auth": "c2VjcmV0"}, format!("https://{host}"): {"auth": "b2xk"}},
            "credHelpers": {"gcr.io": "gcloud", host: "ecr-login"},
            "psFormat": "table {{.ID}}",
        })
        .as_object()
        .unwrap()
        .clone();
        let hosts = BTreeSet::from([EcrHost::from_server_url(host).unwrap()]);
        let notes = add_helpers(&mut document, &hosts).unwrap();
        assert_eq!(
            Value::Object(document),
            json!({
                "auths": {"ghcr.io": {"auth": "c2VjcmV0"}, format!("https://{host}"): {"auth": "b2xk"}},
                "credHelpers": {"gcr.io": "gcloud", host: "ecr-token-broker"},
                "psFormat": "table {{.ID}}",
            })
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("still holds a password") && !notes[0].contains("b2xk"));
        assert!(notes[1].contains("named \"ecr-login\""), "{notes:?}");
        let mut odd = json!({"credHelpers": []}).as_object().unwrap().clone();
        assert!(add_helpers(&mut odd, &hosts).is_err());
    }

    #[test]
    fn the_file_is_replaced_privately_and_a_broken_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        assert!(read(&path).unwrap().is_empty());
        let document = json!({"auths": {}}).as_object().unwrap().clone();
        write(&path, &document).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(read(&path).unwrap(), document);
        std::fs::write(&path, "{\"auths\": {\"x\": {\"auth\": \"secret\"").unwrap();
        let message = read(&path).unwrap_err().to_string();
        assert!(message.contains("not a JSON object") && !message.contains("secret"));
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }
}
