//! Settings from the environment: the broker's URL, where the caller's JWT comes from, what
//! to narrow each request to, and where the cache lives. Read once per invocation, through
//! a lookup function so that tests need not touch the process environment.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use crate::error::Error;
use crate::jwt::JwtSource;

/// The variable that holds the broker's base URL.
pub(crate) const URL_VAR: &str = "ECR_TOKEN_BROKER_URL";
/// The variable that holds the JWT itself.
pub(crate) const JWT_VAR: &str = "ECR_TOKEN_BROKER_JWT";
/// The variable that names a file holding the JWT.
pub(crate) const JWT_FILE_VAR: &str = "ECR_TOKEN_BROKER_JWT_FILE";
/// The variable that holds a shell command printing the JWT.
pub(crate) const JWT_COMMAND_VAR: &str = "ECR_TOKEN_BROKER_JWT_COMMAND";
const ACCESS_VAR: &str = "ECR_TOKEN_BROKER_ACCESS";
const REPOSITORIES_VAR: &str = "ECR_TOKEN_BROKER_REPOSITORIES";
const DURATION_VAR: &str = "ECR_TOKEN_BROKER_DURATION_SECONDS";
const CACHE_DIR_VAR: &str = "ECR_TOKEN_BROKER_CACHE_DIR";
const CA_FILE_VAR: &str = "ECR_TOKEN_BROKER_CA_FILE";
const TIMEOUT_VAR: &str = "ECR_TOKEN_BROKER_TIMEOUT_SECONDS";

/// How long one invocation may spend on the broker, retries included, unless configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The environment variables, as `--help` lists them.
pub(crate) const HELP: &str = "\
Configuration (environment variables):
  ECR_TOKEN_BROKER_URL               the broker's base URL (required), such as
                                     https://ecr-token-broker.example.com; plain http
                                     only to a loopback address
  ECR_TOKEN_BROKER_JWT               the caller's JWT itself
  ECR_TOKEN_BROKER_JWT_FILE          a file holding the JWT, read again on every call
                                     (a projected service-account token rotates)
  ECR_TOKEN_BROKER_JWT_COMMAND       a command run with `sh -c` whose stdout is the JWT
                                     (set one of the three; in kubelet mode none is needed
                                     when kubelet passes the pod's service-account token)
  ECR_TOKEN_BROKER_ACCESS            pull or push (default: pull, the broker's default)
  ECR_TOKEN_BROKER_REPOSITORIES      comma-separated repository patterns to narrow to
  ECR_TOKEN_BROKER_DURATION_SECONDS  ask for a session shorter than the rule's
  ECR_TOKEN_BROKER_CACHE_DIR         where credentials are cached (default:
                                     $XDG_CACHE_HOME/ecr-token-broker, else
                                     ~/.cache/ecr-token-broker; no cache without either)
  ECR_TOKEN_BROKER_CA_FILE           PEM certificates to trust besides the system's
  ECR_TOKEN_BROKER_TIMEOUT_SECONDS   time allowed per call, retries included (default 30)

The cache holds live registry passwords: one file per caller, host and narrowing, mode
0600, in a directory of mode 0700 (a directory others can open is refused), each kept
until half the credential's life has passed. Nothing secret is written to stderr.";

/// What a request may narrow; every field is optional and sent as the issue body's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Narrowing {
    /// `pull` or `push`.
    pub(crate) access: Option<String>,
    /// Repository patterns.
    pub(crate) repositories: Option<Vec<String>>,
    /// A session shorter than the rule's.
    pub(crate) duration_seconds: Option<u32>,
}

/// Everything one invocation needs.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The issue endpoint, resolved against the broker's base URL.
    pub(crate) endpoint: Url,
    /// Where the JWT comes from; `None` when no variable names one (kubelet may pass the
    /// pod's service-account token in its request instead).
    pub(crate) jwt: Option<JwtSource>,
    /// What every request narrows to.
    pub(crate) narrowing: Narrowing,
    /// The cache directory, or `None` to cache nothing.
    pub(crate) cache_dir: Option<PathBuf>,
    /// Extra trusted certificates (PEM).
    pub(crate) ca_file: Option<PathBuf>,
    /// Time allowed per call, retries included.
    pub(crate) timeout: Duration,
}

impl Settings {
    /// Reads the settings through `var`, failing on the first invalid one.
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        // An empty variable counts as unset, as shells and kubelet's `env` make them easily.
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let url = var(URL_VAR).ok_or_else(|| Error::Config(format!("{URL_VAR} is not set")))?;
        Ok(Self {
            endpoint: issue_endpoint(&url)?,
            jwt: jwt_source(&var)?,
            narrowing: narrowing(&var)?,
            cache_dir: cache_dir(&var),
            ca_file: var(CA_FILE_VAR).map(PathBuf::from),
            timeout: match var(TIMEOUT_VAR) {
                None => DEFAULT_TIMEOUT,
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(secs @ 1..=600) => Duration::from_secs(secs),
                    _ => {
                        return Err(Error::Config(format!(
                            "{TIMEOUT_VAR} must be whole seconds from 1 to 600, not {v:?}"
                        )));
                    }
                },
            },
        })
    }
}

/// The cache directory: `ECR_TOKEN_BROKER_CACHE_DIR`, else `ecr-token-broker` under
/// `$XDG_CACHE_HOME` or `~/.cache`; `None` (no cache) when none of them is set, as for a
/// kubelet started without `HOME`, which caches the answers itself.
pub(crate) fn cache_dir(var: &impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    var(CACHE_DIR_VAR).map(PathBuf::from).or_else(|| {
        let base = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("ecr-token-broker"))
    })
}

/// `POST /v1/ecr/authorization-token` under the broker's base URL, which may carry a path
/// prefix. Sending a bearer token in the clear to another machine is refused.
fn issue_endpoint(url: &str) -> Result<Url, Error> {
    let invalid = |why: &str| Error::Config(format!("{URL_VAR} {why}"));
    let mut base = Url::parse(url.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
    if !base.username().is_empty() || base.password().is_some() {
        return Err(invalid("must not carry a user name or password"));
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(invalid("must not carry a query or fragment"));
    }
    match base.scheme() {
        "https" => {}
        "http" if is_loopback(&base) => {}
        "http" => {
            return Err(invalid(
                "must use https (plain http only to a loopback address): the JWT and the \
                 credential would cross the network in the clear",
            ));
        }
        other => return Err(invalid(&format!("has scheme {other:?}; use https"))),
    }
    if !base.path().ends_with('/') {
        let path = format!("{}/", base.path());
        base.set_path(&path);
    }
    base.join("v1/ecr/authorization-token")
        .map_err(|e| invalid(&format!("cannot take the API path ({e})")))
}

fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

fn jwt_source(var: &impl Fn(&str) -> Option<String>) -> Result<Option<JwtSource>, Error> {
    let mut sources = [
        var(JWT_VAR).map(|t| JwtSource::Value(SecretString::from(t))),
        var(JWT_FILE_VAR).map(|p| JwtSource::File(PathBuf::from(p))),
        var(JWT_COMMAND_VAR).map(JwtSource::Command),
    ]
    .into_iter()
    .flatten();
    let first = sources.next();
    if sources.next().is_some() {
        return Err(Error::Config(format!(
            "set only one of {JWT_VAR}, {JWT_FILE_VAR} and {JWT_COMMAND_VAR}"
        )));
    }
    Ok(first)
}

/// The error for a call that needs a JWT and has none.
pub(crate) fn no_jwt() -> Error {
    Error::Config(format!(
        "no JWT: set one of {JWT_VAR}, {JWT_FILE_VAR} or {JWT_COMMAND_VAR}"
    ))
}

fn narrowing(var: &impl Fn(&str) -> Option<String>) -> Result<Narrowing, Error> {
    let access = match var(ACCESS_VAR).map(|a| a.trim().to_ascii_lowercase()) {
        None => None,
        Some(a) if a == "pull" || a == "push" => Some(a),
        Some(a) => {
            return Err(Error::Config(format!(
                "{ACCESS_VAR} must be pull or push, not {a:?}"
            )));
        }
    };
    let repositories = match var(REPOSITORIES_VAR) {
        None => None,
        Some(list) => {
            let patterns: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            if patterns.is_empty() {
                return Err(Error::Config(format!(
                    "{REPOSITORIES_VAR} names no repository"
                )));
            }
            Some(patterns)
        }
    };
    let duration_seconds = match var(DURATION_VAR) {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            Error::Config(format!("{DURATION_VAR} must be whole seconds, not {v:?}"))
        })?),
    };
    Ok(Narrowing {
        access,
        repositories,
        duration_seconds,
    })
}

#[cfg(test)]
mod tests;
