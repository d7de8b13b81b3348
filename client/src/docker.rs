//! Docker's credential-helper protocol, as docker-credential-helpers defines it: the action
//! is the one argument, its input comes on stdin, its answer goes to stdout, and a failure
//! is its message on stdout with exit status 1 (docker reads it from there).
//!
//! What the actions mean for credentials the broker issues:
//! - `get`: the credential for the host on stdin, from the cache or the broker. A host that
//!   is not an ECR registry's is answered "credentials not found in native keychain", so
//!   docker carries on without credentials for it.
//! - `store`: refused. The broker is the only source of these credentials, and keeping a
//!   password from `docker login` would let it shadow them; the input is read and dropped.
//!   With `ignore_docker_login` (opt-in) it succeeds for an ECR host without keeping
//!   anything, so that scripts which run `docker login` keep working beside `credHelpers`.
//! - `erase`: removes the host's cached credentials, so the next `get` asks the broker;
//!   with `ignore_docker_login`, succeeds for an ECR host without doing anything.
//! - `list`: the hosts with a fresh cached credential, each with user name `AWS`.

use std::collections::BTreeMap;

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::cache::Cache;
use crate::config::{self, IGNORE_DOCKER_LOGIN, Settings, Sources};
use crate::error::Error;
use crate::obtain;
use crate::registry::EcrHost;

/// docker's own text for "no credentials for this server", which it treats as such.
pub(crate) const NOT_FOUND: &str = "credentials not found in native keychain";
/// docker's own text for an action given no server URL.
const MISSING_SERVER_URL: &str = "no credentials server URL";

/// How an action ended.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Print this to stdout and exit 0.
    Answer(String),
    /// No credentials for this host: docker's not-found message, exit 1.
    NotFound,
    /// Failed: the message goes to stdout (for docker) and stderr (for the person), exit 1.
    Failed(Error),
}

/// `get`: `input` is the server URL.
pub(crate) async fn get(input: &str, var: impl Fn(&str) -> Option<String>) -> Reply {
    let server_url = input.trim();
    if server_url.is_empty() {
        return Reply::Failed(Error::Protocol(MISSING_SERVER_URL.to_owned()));
    }
    let Some(host) = EcrHost::from_server_url(server_url) else {
        return Reply::NotFound;
    };
    let settings = match Settings::load(var, Some(&host)) {
        Ok(settings) => settings,
        Err(e) => return Reply::Failed(e),
    };
    let Some(source) = &settings.jwt else {
        return Reply::Failed(config::no_jwt());
    };
    match obtain::credential(&settings, source, &host).await {
        // docker keys the answer by the URL it asked with, so it goes back unchanged.
        Ok(credential) => Reply::Answer(format!(
            "{}\n",
            json!({
                "ServerURL": server_url,
                "Username": credential.username,
                "Secret": credential.password.expose_secret(),
            })
        )),
        Err(e) => Reply::Failed(e),
    }
}

/// `store`: `input` is docker login's JSON (`ServerURL`, `Username`, `Secret`). Refused,
/// unless `ignore_docker_login` is set and the server is an ECR host: then nothing is kept
/// and a note on stderr says so. The input is never echoed: it holds a password.
pub(crate) fn store(input: &str, var: impl Fn(&str) -> Option<String>) -> Reply {
    #[derive(serde::Deserialize)]
    struct Login {
        #[serde(rename = "ServerURL")]
        server_url: String,
    }
    let host = serde_json::from_str::<Login>(input)
        .ok()
        .and_then(|login| EcrHost::from_server_url(&login.server_url));
    let ignore = match Sources::load(var).and_then(|s| s.ignore_docker_login()) {
        Ok(ignore) => ignore,
        Err(e) => return Reply::Failed(e),
    };
    match host {
        Some(host) if ignore => {
            crate::note(&format!(
                "docker login to {host} ignored ({}): its password is not kept; credentials \
                 for {host} come from ecr-token-broker",
                IGNORE_DOCKER_LOGIN.var
            ));
            Reply::Answer(String::new())
        }
        Some(_) => Reply::Failed(Error::Protocol(format!(
            "store is not supported: credentials for ECR registries come from \
             ecr-token-broker on every pull and push, so a password from docker login is not \
             kept; set {} to let docker login succeed without it, or remove the host from \
             credHelpers to log in with a password of your own",
            IGNORE_DOCKER_LOGIN.var
        ))),
        None => Reply::Failed(Error::Protocol(
            "store is not supported: this helper keeps no passwords, and this is not an ECR \
             registry it answers for; name another credential store for it"
                .to_owned(),
        )),
    }
}

/// `erase`: `input` is the server URL; an unknown or uncached host is no error. With
/// `ignore_docker_login`, an ECR host's cached credentials are kept (docker logout in a
/// script that also logs in should not cost a call to the broker), and a note says so.
pub(crate) fn erase(input: &str, var: impl Fn(&str) -> Option<String>) -> Reply {
    let server_url = input.trim();
    if server_url.is_empty() {
        return Reply::Failed(Error::Protocol(MISSING_SERVER_URL.to_owned()));
    }
    let Some(host) = EcrHost::from_server_url(server_url) else {
        return Reply::Answer(String::new());
    };
    let sources = match Sources::load(var) {
        Ok(sources) => sources,
        Err(e) => return Reply::Failed(e),
    };
    match sources.ignore_docker_login() {
        Ok(true) => {
            crate::note(&format!(
                "docker logout from {host} ignored ({})",
                IGNORE_DOCKER_LOGIN.var
            ));
            return Reply::Answer(String::new());
        }
        Ok(false) => {}
        Err(e) => return Reply::Failed(e),
    }
    let Some(dir) = sources.cache_dir() else {
        return Reply::Answer(String::new());
    };
    match Cache::new(dir).erase(&host) {
        Ok(_) => Reply::Answer(String::new()),
        Err(e) => Reply::Failed(e),
    }
}

/// `list`: `{"HOST": "AWS", …}` for every host with a fresh cached credential.
pub(crate) fn list(var: impl Fn(&str) -> Option<String>) -> Reply {
    let sources = match Sources::load(var) {
        Ok(sources) => sources,
        Err(e) => return Reply::Failed(e),
    };
    let hosts = match sources.cache_dir() {
        None => Vec::new(),
        Some(dir) => match Cache::new(dir).hosts(Utc::now()) {
            Ok(hosts) => hosts,
            Err(e) => return Reply::Failed(e),
        },
    };
    let listing: BTreeMap<String, &str> = hosts.into_iter().map(|h| (h, "AWS")).collect();
    Reply::Answer(format!("{}\n", json!(listing)))
}

/// `version`, in docker-credential-helpers' format: `NAME (PACKAGE) VERSION`.
pub(crate) fn version() -> Reply {
    Reply::Answer(format!(
        "{} ({}) {}\n",
        crate::BINARY,
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[tokio::test]
    async fn get_without_a_server_url_is_docker_s_missing_url_error() {
        let Reply::Failed(e) = get(" \n", no_env).await else {
            panic!("expected a failure");
        };
        assert_eq!(e.to_string(), "no credentials server URL");
    }

    #[tokio::test]
    async fn get_for_another_registry_is_not_found_without_any_configuration() {
        for url in ["https://index.docker.io/v1/", "ghcr.io", "public.ecr.aws"] {
            assert!(matches!(get(url, no_env).await, Reply::NotFound), "{url}");
        }
    }

    #[tokio::test]
    async fn get_for_an_ecr_host_needs_the_broker_url() {
        let Reply::Failed(e) = get("111122223333.dkr.ecr.eu-west-1.amazonaws.com", no_env).await
        else {
            panic!("expected a failure");
        };
        assert!(e.to_string().contains("ECR_TOKEN_BROKER_URL"), "{e}");
    }

    #[test]
    fn store_is_refused_unless_docker_login_is_ignored() {
        let login = r#"{"ServerURL": "https://111122223333.dkr.ecr.eu-west-1.amazonaws.com",
                        "Username": "AWS", "Secret": "hunter2"}"#;
        let Reply::Failed(e) = store(login, no_env) else {
            panic!("store must be refused");
        };
        assert!(e.to_string().starts_with("store is not supported"));
        assert!(!e.to_string().contains("hunter2"));
        let ignoring = |name: &str| (name == IGNORE_DOCKER_LOGIN.var).then(|| "true".to_owned());
        assert!(matches!(store(login, ignoring), Reply::Answer(a) if a.is_empty()));
        // Another registry's login is still refused: pretending would lose it.
        let other =
            r#"{"ServerURL": "https://index.docker.io/v1/", "Username": "u", "Secret": "p"}"#;
        assert!(matches!(store(other, ignoring), Reply::Failed(_)));
        assert!(
            matches!(store("not json hunter2", ignoring), Reply::Failed(e) if !e.to_string().contains("hunter2"))
        );
    }

    #[test]
    fn version_is_in_the_helper_format() {
        let Reply::Answer(v) = version() else {
            panic!("version answers");
        };
        assert_eq!(
            v,
            format!(
                "docker-credential-ecr-token-broker (ecr-token-broker-client) {}\n",
                env!("CARGO_PKG_VERSION")
            )
        );
    }

    #[test]
    fn list_and_erase_without_a_cache_are_empty() {
        let Reply::Answer(listing) = list(no_env) else {
            panic!("list answers");
        };
        assert_eq!(listing, "{}\n");
        assert!(matches!(
            erase("111122223333.dkr.ecr.eu-west-1.amazonaws.com", no_env),
            Reply::Answer(a) if a.is_empty()
        ));
    }
}
