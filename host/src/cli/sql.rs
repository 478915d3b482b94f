//! `pgsink sql`: installing or removing the `pgsink` schema by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;

use crate::postgres::{self, INSTALL_SQL, UNINSTALL_SQL};

#[derive(clap::Args)]
pub struct Args {
    /// What to do.
    #[arg(value_enum)]
    action: Action,
    /// The configuration naming the database.
    #[arg(short, long)]
    config: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum Action {
    /// Create or upgrade the schema (idempotent).
    Install,
    /// Drop the schema with its offsets and dead letters.
    Uninstall,
}

pub fn execute(args: Args) -> anyhow::Result<ExitCode> {
    let config = crate::config::load(&args.config)?;
    super::tokio_runtime()?.block_on(async {
        let client = postgres::connect(&config.db).await?;
        let sql = match args.action {
            Action::Install => INSTALL_SQL,
            Action::Uninstall => UNINSTALL_SQL,
        };
        client.batch_execute(sql).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
