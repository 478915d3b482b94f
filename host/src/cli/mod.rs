//! The subcommands of `pgsink`, one file each: its arguments (clap) and what it does.
//! `main.rs` only parses the command line, sets up logging and calls [`Command::execute`].

use std::process::ExitCode;

use clap::Subcommand;

mod check;
mod convert;
mod demo;
mod dlq;
mod run;
mod sql;

#[derive(Subcommand)]
pub enum Command {
    /// Run the sink until SIGINT or SIGTERM, then flush and commit.
    Run(run::Args),
    /// Convert messages read one per line and print the COPY rows (each prefixed with its
    /// operation and table when they are not all plain inserts); no Kafka or database
    /// needed. Failed lines are reported on stderr; exit status 1 if any.
    Convert(convert::Args),
    /// Install or remove the `pgsink` schema (offsets, dead letters) in the configured database.
    Sql(sql::Args),
    /// Check everything `run` needs without consuming: configuration, converter,
    /// database, table and columns, broker and topics. One line per check, with a
    /// fix for each failure; exit status 1 if any check fails.
    Check(check::Args),
    /// List dead letters, or re-drive them through the current converter after a fix.
    Dlq(dlq::Args),
    /// A self-contained demo: starts a Kafka broker inside this process, produces
    /// sample messages, sinks them into a PostgreSQL table and shows the rows.
    Demo(demo::Args),
}

impl Command {
    /// Runs the subcommand; `Err` is a failure to report (exit status 2).
    pub fn execute(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Run(args) => run::execute(args),
            Command::Convert(args) => convert::execute(args),
            Command::Sql(args) => sql::execute(args),
            Command::Check(args) => check::execute(args),
            Command::Dlq(args) => dlq::execute(args),
            Command::Demo(args) => demo::execute(args),
        }
    }
}

/// The async runtime of the subcommands that talk to PostgreSQL or Kafka.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Exit status 0 when `ok`, else 1 (a check or a conversion failed; the tool itself worked).
fn status(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
