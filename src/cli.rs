//! The command line: `serve`, `migrate`, `check-config FILE`, `audit verify`, `audit export`,
//! `audit prune`.

mod assume_role;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sqlx::ConnectOptions;

use chrono::{DateTime, Utc};

use crate::app::{Application, Hangups, connect_pool};
use crate::audit::{self, ChainEntry, MonthStart, chain::ChainKey};
use crate::config::{CONFIG_PATH_ENV, Config};
use crate::credentials::Aws;

/// Exchanges trusted JWTs for short-lived, audited Amazon ECR credentials.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// The config file (TOML).
    #[arg(long, short, env = CONFIG_PATH_ENV, global = true)]
    pub config: Option<PathBuf>,
    /// Log output: human-readable text or one JSON object per line.
    #[arg(long, env = "ECR_TOKEN_BROKER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// For log pipelines.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API until SIGTERM or Ctrl-C; SIGHUP reloads the config.
    Serve,
    /// Apply pending database migrations and create the coming months' audit partitions.
    ///
    /// Idempotent. Run it at least monthly (a CronJob), so that new audit rows always have
    /// their month's partition rather than landing in the default one.
    Migrate,
    /// Validate a config file and explain every problem with its location.
    ///
    /// Problems are errors (exit status 1); warnings, one line each on stderr, leave it 0.
    /// With --assume-role and --claims it then prints, as JSON, what the rule grants a token
    /// with those claims and the AssumeRole call the broker makes for it, session policy
    /// included (`.assumeRole` is the input of `aws sts assume-role --cli-input-json`); it
    /// fails where the broker would refuse the token.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
        /// The rule whose AssumeRole call to print.
        #[arg(long, value_name = "RULE", requires = "claims")]
        assume_role: Option<String>,
        /// A token's claims, as a JSON object, for --assume-role.
        #[arg(long, value_name = "JSON", requires = "assume_role")]
        claims: Option<String>,
        /// An issue request's body, as JSON, for --assume-role (default: the most the rule
        /// allows: all its regions and registries, its access, its longest session).
        #[arg(long, value_name = "JSON", requires = "assume_role")]
        request: Option<String>,
    },
    /// Check, export or prune the hash-chained audit log (needs `[audit] chain_key`).
    Audit {
        /// What to do with it.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain and report the first row that breaks it.
    ///
    /// Starts from the newest checkpoint left by `audit prune` (or from the first row) and
    /// checks, row by row in id order, that ids are consecutive, that each row points at the
    /// previous row's hash, and that its hash matches its content. Rows deleted from the very
    /// end leave no break by themselves, and a chain rewritten from some row on with the key
    /// verifies by itself: pass entries seen earlier with --expect or --expect-file, and the
    /// chain must still reach each of them with exactly its hash. An entry is a receipt (an
    /// issuing response's `Audit-Entry: ID:HASH`), a head the service logged ("audit chain
    /// head"), a line the audit sink shipped, or the last intact row printed here. Entries
    /// older than the newest checkpoint were pruned and are not checked, but the
    /// checkpoint's own. Exit status: 0 if the chain is intact and reaches every entry, 1 at
    /// the first break or the first entry it does not reach, naming the row and what is
    /// wrong with it (1 also for a database or input error, with its cause). The service's
    /// read-only role is enough.
    Verify {
        /// Start at this row, trusting its prev_hash, to spot-check the chain from there.
        #[arg(long, value_name = "ID", value_parser = clap::value_parser!(i64).range(1..))]
        from_id: Option<i64>,
        /// An entry seen earlier, as ID:HASH: the chain must reach row ID with this hash.
        /// Repeatable.
        #[arg(long = "expect", visible_alias = "expect-head", value_name = "ID:HASH")]
        expect: Vec<ChainEntry>,
        /// A file of entries seen earlier, one ID:HASH a line (# starts a comment line).
        /// Repeatable.
        #[arg(
            long = "expect-file",
            visible_alias = "expect-heads",
            value_name = "FILE"
        )]
        expect_file: Vec<PathBuf>,
    },
    /// Print stored audit rows as JSON lines, the same lines the audit sink ships.
    ///
    /// Every row recorded at or after --since and before --until (each open when left
    /// out), one line each, in chain order, from one snapshot of the database, streamed so
    /// that memory stays flat: back-fills a log pipeline after the sink dropped lines or
    /// before it was configured. The service's read-only role is enough.
    Export {
        /// Rows recorded at or after this time (RFC 3339, such as 2026-01-01T00:00:00Z).
        #[arg(long, value_name = "TIME")]
        since: Option<DateTime<Utc>>,
        /// Rows recorded before this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        until: Option<DateTime<Utc>>,
    },
    /// Drop whole months of the audit log, keeping the rest verifiable.
    ///
    /// Drops the monthly partitions that end on or before the --before date (never the
    /// default partition), in one transaction: it verifies the rows about to go without
    /// holding up the service, then takes the audit writers' lock, verifies any rows appended
    /// meanwhile, records the last one's id and hash in audit_checkpoints, where `audit
    /// verify` and new rows continue the chain, and drops them. Run it as the role
    /// that owns the audit tables (the one `migrate` runs as): the service's role
    /// (ecr_token_broker_app) may only add and read rows.
    Prune {
        /// Drop the months before this date, which must be the first day of a month.
        #[arg(long, value_name = "YYYY-MM-DD")]
        before: MonthStart,
        /// Prune even if the rows to be dropped do not verify.
        #[arg(long)]
        force: bool,
    },
}

impl Cli {
    fn config_path(&self) -> anyhow::Result<&Path> {
        self.config
            .as_deref()
            .with_context(|| format!("no config file: pass --config FILE or set {CONFIG_PATH_ENV}"))
    }
}

/// Runs the chosen subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve => {
            // First, so that a SIGHUP sent while the service starts cannot end it.
            let hangups = Hangups::listen().context("installing the SIGHUP handler")?;
            let path = cli.config_path()?;
            let (config, text) = Config::read(path)?;
            config.log_warnings();
            crate::egress::log_proxy();
            let app = Application::build(config, Aws::load_sdk_config().await?)
                .await?
                .reload_from(path.to_owned(), text, hangups);
            tracing::info!(address = %app.local_addr()?, "serving");
            if let Some(metrics) = app.metrics_addr() {
                tracing::info!(address = %metrics?, "serving /metrics alone");
            }
            app.serve(shutdown_signal()).await.context("serving HTTP")
        }
        Command::Migrate => {
            let config = Config::load(cli.config_path()?)?;
            let pool = connect_pool(&config)?;
            audit::migrate(&pool).await?;
            tracing::info!("migrations applied, audit partitions ready");
            Ok(())
        }
        Command::Audit { command } => {
            let config = Config::load(cli.config_path()?)?;
            let pool = connect_pool(&config)?;
            // Walking the chain is one long statement by design, not a slow one to warn of.
            pool.set_connect_options(
                (*pool.connect_options())
                    .clone()
                    .disable_statement_logging(),
            );
            let key = ChainKey::new(&config.audit.chain_key);
            run_audit(command, &pool, &key).await
        }
        Command::CheckConfig {
            file,
            assume_role,
            claims,
            request,
        } => {
            let config = Config::load(file)?;
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            if let (Some(rule), Some(claims)) = (assume_role, claims) {
                let printout = assume_role::explain(&config, rule, claims, request.as_deref())?;
                println!("{printout}");
                return Ok(());
            }
            println!(
                "{}: ok ({} issuers, {} rules)",
                file.display(),
                config.issuers.len(),
                config.rules.len()
            );
            Ok(())
        }
    }
}

async fn run_audit(
    command: &AuditCommand,
    pool: &sqlx::PgPool,
    key: &ChainKey,
) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify {
            from_id,
            expect,
            expect_file,
        } => {
            let mut expected = expect.clone();
            for file in expect_file {
                expected.extend(ChainEntry::read_file(file)?);
            }
            let verification = audit::verify(pool, key, *from_id, &expected).await?;
            println!("{verification}");
            match &verification.walk.broken {
                None => {
                    println!("audit chain intact");
                    Ok(())
                }
                Some(broken) => anyhow::bail!("the audit chain is broken: {broken}"),
            }
        }
        AuditCommand::Export { since, until } => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let exported = audit::export(pool, *since, *until, &mut out).await?;
            tracing::info!(rows = exported, "audit rows exported");
            Ok(())
        }
        AuditCommand::Prune { before, force } => {
            let pruned = audit::prune(pool, key, *before, *force).await?;
            println!("{pruned}");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c()
            .await
            .expect("installing the Ctrl-C handler");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
