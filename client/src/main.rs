//! `docker-credential-ecr-token-broker`: ecr-token-broker's client for machines that pull
//! and push images.
//!
//! - As docker's credential helper (`get`, `store`, `erase`, `list`, `version`), named in
//!   `credHelpers` of `~/.docker/config.json` for ECR hosts ([`docker`]).
//! - As kubelet's image credential provider (`kubelet-credential-provider`, or run under
//!   the name `ecr-token-broker-credential-provider`) ([`kubelet`]).
//! - `configure` names the helper in docker's `config.json` for the registries the
//!   caller's rule allows ([`configure`]).
//!
//! Either way a credential comes from [`obtain::credential`]: the caller's JWT is read
//! ([`jwt`]), a fresh cached credential is used if there is one ([`cache`]), else the
//! broker is asked ([`broker`], retrying as [`retry`] says). Settings come from the
//! environment or the user's config file ([`config`]). Nothing secret is ever written to
//! stderr.

mod broker;
mod cache;
mod config;
mod configure;
mod credential;
mod docker;
mod error;
mod jwt;
mod kubelet;
mod obtain;
mod private_file;
mod registry;
mod retry;

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::docker::Reply;
use crate::error::Error;

/// The binary's name, as docker finds it from `credHelpers` (`docker-credential-` + value).
pub(crate) const BINARY: &str = "docker-credential-ecr-token-broker";
/// Run under this name (a link), the binary is a kubelet credential provider.
const KUBELET_NAME: &str = "ecr-token-broker-credential-provider";
/// What stdin may hold: a server URL or one kubelet request, far less than this.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// Command line of the client.
#[derive(Debug, Parser)]
#[command(
    name = BINARY,
    version,
    about = "Registry credentials from ecr-token-broker, for docker and kubelet",
    long_about = "Registry credentials from ecr-token-broker, for docker and kubelet.\n\n\
        As a docker credential helper, name it in ~/.docker/config.json:\n  \
        {\"credHelpers\": {\"123456789012.dkr.ecr.eu-west-1.amazonaws.com\": \"ecr-token-broker\"}}\n\
        As a kubelet image credential provider, run it with the argument \
        kubelet-credential-provider (or under the name ecr-token-broker-credential-provider).",
    after_help = config::HELP
)]
struct Cli {
    #[command(subcommand)]
    action: Action,
}

/// One protocol action.
#[derive(Debug, Subcommand)]
enum Action {
    /// docker: print the credential for the registry host read from stdin
    Get,
    /// docker: refused (these credentials come from the broker, not from docker login),
    /// or ignored with ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN
    Store,
    /// docker: forget the cached credentials of the registry host read from stdin (ignored
    /// with ECR_TOKEN_BROKER_IGNORE_DOCKER_LOGIN)
    Erase,
    /// docker: print the hosts that have a fresh cached credential
    List,
    /// docker: print the helper's name and version
    Version,
    /// kubelet: answer the CredentialProviderRequest read from stdin
    KubeletCredentialProvider,
    /// docker: name this helper in config.json's credHelpers for every registry the
    /// caller's rule allows (asked of the broker's /v1/whoami), keeping the rest of the file
    Configure,
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned());
    if invoked_as.as_deref() == Some(KUBELET_NAME) {
        args.truncate(1);
        args.push("kubelet-credential-provider".into());
    }
    let cli = Cli::parse_from(args);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(&format!("starting: {e}")),
    };
    runtime.block_on(run(cli.action))
}

async fn run(action: Action) -> ExitCode {
    let var = |name: &str| std::env::var(name).ok();
    let reply = match action {
        Action::Get => match read_stdin() {
            Ok(input) => docker::get(&input, var).await,
            Err(e) => Reply::Failed(e),
        },
        Action::Store => match read_stdin() {
            // Only its ServerURL is looked at: it holds the password docker login was given.
            Ok(input) => docker::store(&input, var),
            Err(e) => Reply::Failed(e),
        },
        Action::Erase => match read_stdin() {
            Ok(input) => docker::erase(&input, var),
            Err(e) => Reply::Failed(e),
        },
        Action::List => docker::list(var),
        Action::Version => docker::version(),
        Action::Configure => {
            return match configure::configure(var).await {
                Ok(hosts) => print(&hosts),
                Err(e) => fail(&e.to_string()),
            };
        }
        Action::KubeletCredentialProvider => {
            let answer = match read_stdin() {
                Ok(input) => kubelet::provide(&input, var).await,
                Err(e) => Err(e),
            };
            return match answer {
                Ok(response) => print(&response),
                // kubelet logs the provider's stderr; stdout must hold a response or nothing.
                Err(e) => fail(&e.to_string()),
            };
        }
    };
    match reply {
        Reply::Answer(answer) => print(&answer),
        Reply::NotFound => {
            print(&format!("{}\n", docker::NOT_FOUND));
            ExitCode::FAILURE
        }
        Reply::Failed(e) => {
            print(&format!("{e}\n"));
            fail(&e.to_string())
        }
    }
}

fn read_stdin() -> Result<String, Error> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_INPUT_BYTES + 1)
        .read_to_string(&mut input)
        .map_err(|e| Error::Protocol(format!("reading stdin: {e}")))?;
    if input.len() as u64 > MAX_INPUT_BYTES {
        return Err(Error::Protocol(format!(
            "stdin holds more than {MAX_INPUT_BYTES} bytes"
        )));
    }
    Ok(input)
}

/// Writes `text` to stdout; success unless stdout is gone.
fn print(text: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// One line on stderr, and failure.
fn fail(message: &str) -> ExitCode {
    eprintln!("{BINARY}: {message}");
    ExitCode::FAILURE
}

/// What a person should know about an action that succeeded (never a secret), on stderr.
pub(crate) fn note(message: &str) {
    eprintln!("{BINARY}: {message}");
}

/// A problem that does not stop the answer (the cache could not be used), on stderr.
pub(crate) fn warn(error: &Error) {
    eprintln!("{BINARY}: warning: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
