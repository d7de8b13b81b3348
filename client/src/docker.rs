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
//! - `erase`: removes the host's cached credentials, so the next `get` asks the broker.
//! - `list`: the hosts with a fresh cached credential, each with user name `AWS`.

use std::collections::BTreeMap;

use chrono::Utc;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::cache::Cache;
use crate::config::{self, Settings};
use crate::credential::obtain;
use crate::error::Error;
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
    let settings = match Settings::from_env(var) {
        Ok(settings) => settings,
        Err(e) => return Reply::Failed(e),
    };
    let Some(source) = &settings.jwt else {
        return Reply::Failed(config::no_jwt());
    };
    match obtain(&settings, source, &host).await {
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

/// `store`: always refused, without looking at the input (it holds a password).
pub(crate) fn store() -> Reply {
    Reply::Failed(Error::Protocol(
        "store is not supported: credentials for ECR registries come from ecr-token-broker \
         on every pull and push, so a password from docker login is not kept; remove the \
         host from credHelpers to log in with a password of your own"
            .to_owned(),
    ))
}

/// `erase`: `input` is the server URL; an unknown or uncached host is no error.
pub(crate) fn erase(input: &str, var: impl Fn(&str) -> Option<String>) -> Reply {
    let server_url = input.trim();
    if server_url.is_empty() {
        return Reply::Failed(Error::Protocol(MISSING_SERVER_URL.to_owned()));
    }
    let (Some(host), Some(dir)) = (
        EcrHost::from_server_url(server_url),
        config::cache_dir(&var),
    ) else {
        return Reply::Answer(String::new());
    };
    match Cache::new(dir).erase(&host) {
        Ok(_) => Reply::Answer(String::new()),
        Err(e) => Reply::Failed(e),
    }
}

/// `list`: `{"HOST": "AWS", …}` for every host with a fresh cached credential.
pub(crate) fn list(var: impl Fn(&str) -> Option<String>) -> Reply {
    let hosts = match config::cache_dir(&var) {
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
    fn store_is_refused_and_version_is_in_the_helper_format() {
        let Reply::Failed(e) = store() else {
            panic!("store must be refused");
        };
        assert!(e.to_string().starts_with("store is not supported"));
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
