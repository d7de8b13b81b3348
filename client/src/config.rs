//! Settings: the broker's URL, where the caller's JWT comes from, what to narrow each request
//! to, where the cache lives and whether `docker login` is ignored. Each comes from an
//! environment variable or, where that is unset, from the config file ([`file`]); a
//! registry's own section of the file comes before the file's top level. Read once per
//! invocation, through a lookup function so that tests need not touch the process
//! environment.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use secrecy::SecretString;

use crate::error::Error;
use crate::jwt::JwtSource;
use crate::registry::EcrHost;

mod file;

use file::ConfigFile;

/// One setting: its environment variable, and its key in the config file if it may be
/// there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    /// The environment variable.
    pub(crate) var: &'static str,
    /// The key in the config file; `None` for a setting that must not be written to a file.
    key: Option<&'static str>,
    /// Whether a registry's section of the file may set it too.
    per_registry: bool,
    /// Whether the file gives it as a list (the environment as comma-separated text).
    list: bool,
}

const fn setting(var: &'static str, key: &'static str) -> Setting {
    Setting {
        var,
        key: Some(key),
        per_registry: false,
        list: false,
    }
}

/// The broker's base URL.
pub(crate) const URL: Setting = setting("ECR_TOKEN_BROKER_URL", "url");
/// The JWT itself: environment only, since a file would keep it at rest.
pub(crate) const JWT: Setting = Setting {
    var: "ECR_TOKEN_BROKER_JWT",
    key: None,
    per_registry: false,
    list: false,
};
/// A file holding the JWT.
pub(crate) const JWT_FILE: Setting = setting("ECR_TOKEN_BROKER_JWT_FILE", "jwt_file");
/// A shell command printing the JWT.
pub(crate) const JWT_COMMAND: Setting = setting("ECR_TOKEN_BROKER_JWT_COMMAND", "jwt_command");
const ACCESS: Setting = Setting {
    per_registry: true,
    ..setting("ECR_TOKEN_BROKER_ACCESS", "access")
};
const REPOSITORIES: Setting = Setting {
    per_registry: true,
    list: true,
    ..setting("ECR_TOKEN_BROKER_REPOSITORIES", "repositories")
};
const DURATION: Setting = Setting {
    per_registry: true,
    ..setting("ECR_TOKEN_BROKER_DURATION_SECONDS", "duration_seconds")
};
const CACHE_DIR: Setting = setting("ECR_TOKEN_BROKER_CACHE_DIR", "cache_dir");
const CA_FILE: Setting = setting("ECR_TOKEN_BROKER_CA_FILE", "ca_file");
const TIMEOUT: Setting = setting("ECR_TOKEN_BROKER_TIMEOUT_SECONDS", "timeout_seconds");
/// Whether `store` and `erase` pretend to succeed.
pub(crate) const IGNORE_DOCKER_LOGIN: Setting = setting(
    "ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN",
    "ignore_docker_login",
);

/// Every setting, so that the config file can name an unknown key.
const SETTINGS: [Setting; 11] = [
    URL,
    JWT,
    JWT_FILE,
    JWT_COMMAND,
    ACCESS,
    REPOSITORIES,
    DURATION,
    CACHE_DIR,
    CA_FILE,
    TIMEOUT,
    IGNORE_DOCKER_LOGIN,
];

/// How long one invocation may spend on the broker, retries included, unless configured.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The settings, as `--help` lists them.
pub(crate) const HELP: &str = "\
Configuration (environment variables; each but ECR_TOKEN_BROKER_JWT may also be set in the
config file, under the name in brackets, and the environment wins):
  ECR_TOKEN_BROKER_URL               [url] the broker's base URL (required), such as
                                     https://ecr-token-broker.example.com; plain http
                                     only to a loopback address
  ECR_TOKEN_BROKER_JWT               the caller's JWT itself
  ECR_TOKEN_BROKER_JWT_FILE          [jwt_file] a file holding the JWT, read again on
                                     every call (a projected service-account token rotates)
  ECR_TOKEN_BROKER_JWT_COMMAND       [jwt_command] a command run with `sh -c` whose stdout
                                     is the JWT (set one of the three; in kubelet mode none
                                     is needed when kubelet passes the pod's token)
  ECR_TOKEN_BROKER_ACCESS            [access] pull or push (default: pull, the broker's)
  ECR_TOKEN_BROKER_REPOSITORIES      [repositories] comma-separated repository patterns
                                     to narrow to (in the file: a list)
  ECR_TOKEN_BROKER_DURATION_SECONDS  [duration_seconds] ask for a shorter session
  ECR_TOKEN_BROKER_CACHE_DIR         [cache_dir] where credentials are cached (default:
                                     $XDG_CACHE_HOME/ecr-token-broker, else
                                     ~/.cache/ecr-token-broker; no cache without either)
  ECR_TOKEN_BROKER_CA_FILE           [ca_file] PEM certificates to trust besides the
                                     system's
  ECR_TOKEN_BROKER_TIMEOUT_SECONDS   [timeout_seconds] time allowed per call, retries
                                     included (default 30)
  ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN
                                     [ignore_docker_login] true: `docker login` (store)
                                     and `docker logout` (erase) for ECR hosts succeed
                                     without doing anything, noted on stderr, so scripts
                                     that log in keep working (default: store is refused)
  ECR_TOKEN_BROKER_CLIENT_CONFIG     the config file (default:
                                     $XDG_CONFIG_HOME/ecr-token-broker/config.toml, else
                                     ~/.config/ecr-token-broker/config.toml, if it exists)

In the config file, a section [registries.\"HOST\"] sets access, repositories and
duration_seconds for that registry alone. The file must not be writable by others (it may
name a command to run).

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

/// A setting's value and where it came from, to name in an error.
struct Found {
    value: String,
    origin: String,
}

/// A lookup of environment variables.
type Env<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// Where settings come from: the environment, then the config file.
pub(crate) struct Sources<'a> {
    env: Env<'a>,
    file: Option<ConfigFile>,
}

impl<'a> Sources<'a> {
    /// The environment as `var` gives it, and the config file it leads to, if any.
    pub(crate) fn load(var: impl Fn(&str) -> Option<String> + 'a) -> Result<Self, Error> {
        // An empty variable counts as unset, as shells and kubelet's `env` make them easily.
        let env = move |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let file = ConfigFile::load(&env)?;
        Ok(Self {
            env: Box::new(env),
            file,
        })
    }

    /// A variable of the environment that is not a setting (`HOME`, `DOCKER_CONFIG`).
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// `setting` from the environment, else from `host`'s section of the file, else from
    /// the file's top level.
    fn get(&self, setting: Setting, host: Option<&EcrHost>) -> Option<Found> {
        if let Some(value) = self.env(setting.var) {
            return Some(Found {
                value,
                origin: setting.var.to_owned(),
            });
        }
        let (value, origin) = self.file.as_ref()?.get(setting, host)?;
        Some(Found { value, origin })
    }

    /// Whether `store` and `erase` are to pretend to succeed for ECR hosts.
    pub(crate) fn ignore_docker_login(&self) -> Result<bool, Error> {
        let Some(found) = self.get(IGNORE_DOCKER_LOGIN, None) else {
            return Ok(false);
        };
        match found.value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(Error::Config(format!(
                "{} must be true or false, not {:?}",
                found.origin, found.value
            ))),
        }
    }

    /// The cache directory: `cache_dir` if set, else `ecr-token-broker` under
    /// `$XDG_CACHE_HOME` or `~/.cache`; `None` (no cache) when none of them is set, as for
    /// a kubelet started without `HOME`, which caches the answers itself.
    pub(crate) fn cache_dir(&self) -> Option<PathBuf> {
        self.get(CACHE_DIR, None)
            .map(|found| PathBuf::from(found.value))
            .or_else(|| {
                let base = self.env("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| {
                    self.env("HOME")
                        .map(|home| PathBuf::from(home).join(".cache"))
                })?;
                Some(base.join("ecr-token-broker"))
            })
    }
}

/// Everything one invocation needs to ask the broker.
#[derive(Debug)]
pub(crate) struct Settings {
    /// The broker's base URL, ending in `/` so that API paths resolve beneath it.
    pub(crate) base: Url,
    /// The issue endpoint, resolved against the base URL.
    pub(crate) endpoint: Url,
    /// Where the JWT comes from; `None` when nothing names one (kubelet may pass the pod's
    /// service-account token in its request instead).
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
    /// Reads the settings through `var` (and the config file it leads to) for requests
    /// about `host`, failing on the first invalid one.
    pub(crate) fn load(
        var: impl Fn(&str) -> Option<String>,
        host: Option<&EcrHost>,
    ) -> Result<Self, Error> {
        Self::from_sources(&Sources::load(var)?, host)
    }

    /// The settings for requests about `host`, from `sources`.
    pub(crate) fn from_sources(
        sources: &Sources<'_>,
        host: Option<&EcrHost>,
    ) -> Result<Self, Error> {
        let url = sources.get(URL, None).ok_or_else(|| {
            Error::Config(format!("{} is not set (nor url in a config file)", URL.var))
        })?;
        let base = base_url(&url)?;
        let endpoint = base
            .join("v1/ecr/authorization-token")
            .map_err(|e| Error::Config(format!("{} cannot take the API path ({e})", url.origin)))?;
        Ok(Self {
            base,
            endpoint,
            jwt: jwt_source(sources)?,
            narrowing: narrowing(sources, host)?,
            cache_dir: sources.cache_dir(),
            ca_file: sources.get(CA_FILE, None).map(|f| PathBuf::from(f.value)),
            timeout: match sources.get(TIMEOUT, None) {
                None => DEFAULT_TIMEOUT,
                Some(found) => match found.value.trim().parse::<u64>() {
                    Ok(secs @ 1..=600) => Duration::from_secs(secs),
                    _ => {
                        return Err(Error::Config(format!(
                            "{} must be whole seconds from 1 to 600, not {:?}",
                            found.origin, found.value
                        )));
                    }
                },
            },
        })
    }
}

/// The broker's base URL, which may carry a path prefix. Sending a bearer token in the
/// clear to another machine is refused.
fn base_url(url: &Found) -> Result<Url, Error> {
    let invalid = |why: &str| Error::Config(format!("{} {why}", url.origin));
    let mut base =
        Url::parse(url.value.trim()).map_err(|e| invalid(&format!("is not a URL ({e})")))?;
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
    Ok(base)
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

/// The JWT's source: the environment's if it names one, else the file's; at most one of
/// each, so that a source set in the environment replaces the file's rather than clashing.
fn jwt_source(sources: &Sources<'_>) -> Result<Option<JwtSource>, Error> {
    let from_env = [
        sources
            .env(JWT.var)
            .map(|t| JwtSource::Value(SecretString::from(t))),
        sources.env(JWT_FILE.var).map(|p| JwtSource::File(p.into())),
        sources.env(JWT_COMMAND.var).map(JwtSource::Command),
    ];
    let from_file = || {
        let file = sources.file.as_ref()?;
        Some([
            file.get(JWT_FILE, None)
                .map(|(p, _)| JwtSource::File(p.into())),
            file.get(JWT_COMMAND, None)
                .map(|(c, _)| JwtSource::Command(c)),
        ])
    };
    let (chosen, names): (Vec<JwtSource>, String) = if from_env.iter().any(Option::is_some) {
        (
            from_env.into_iter().flatten().collect(),
            format!("{}, {} and {}", JWT.var, JWT_FILE.var, JWT_COMMAND.var),
        )
    } else {
        (
            from_file().into_iter().flatten().flatten().collect(),
            "jwt_file and jwt_command in a config file".to_owned(),
        )
    };
    let mut chosen = chosen.into_iter();
    let first = chosen.next();
    if chosen.next().is_some() {
        return Err(Error::Config(format!("set only one of {names}")));
    }
    Ok(first)
}

/// The error for a call that needs a JWT and has none.
pub(crate) fn no_jwt() -> Error {
    Error::Config(format!(
        "no JWT: set one of {}, {} or {} (or jwt_file or jwt_command in a config file)",
        JWT.var, JWT_FILE.var, JWT_COMMAND.var
    ))
}

fn narrowing(sources: &Sources<'_>, host: Option<&EcrHost>) -> Result<Narrowing, Error> {
    let access = match sources.get(ACCESS, host) {
        None => None,
        Some(found) => match found.value.trim().to_ascii_lowercase() {
            a if a == "pull" || a == "push" => Some(a),
            a => {
                return Err(Error::Config(format!(
                    "{} must be pull or push, not {a:?}",
                    found.origin
                )));
            }
        },
    };
    let repositories = match sources.get(REPOSITORIES, host) {
        None => None,
        Some(found) => {
            let patterns: Vec<String> = found
                .value
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            if patterns.is_empty() {
                return Err(Error::Config(format!(
                    "{} names no repository",
                    found.origin
                )));
            }
            Some(patterns)
        }
    };
    let duration_seconds = match sources.get(DURATION, host) {
        None => None,
        Some(found) => Some(found.value.trim().parse::<u32>().map_err(|_| {
            Error::Config(format!(
                "{} must be whole seconds, not {:?}",
                found.origin, found.value
            ))
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
