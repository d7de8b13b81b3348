//! The `ecr-token-broker` binary, kept thin: parse the command line, start logging, run the command
//! from the library (`cli::run`), and turn its error into an exit code.

use std::process::ExitCode;

use clap::Parser;
use ecr_token_broker::cli::{self, Cli};
use ecr_token_broker::telemetry;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
