//! The `sluice` binary: parse the command line, build the pieces, run.

mod cli;
mod commands;
mod config;
mod jobs;
mod parse;
mod server;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{BenchCommand, Cli, Command, LogFormat};

/// mimalloc: glibc's allocator showed lock contention between the runtime's threads under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(a) => a.log_format,
        _ => LogFormat::Text,
    };
    init_tracing(format);
    match cli.command {
        Command::Serve(args) => server::serve(args).await,
        Command::Migrate(ledger) => commands::migrate(ledger).await,
        Command::Token(cmd) => commands::token(cmd).await,
        Command::Channel(cmd) => commands::channel(cmd).await,
        Command::Secrets(cmd) => commands::secrets(cmd).await,
        Command::Bench(BenchCommand::Sink(args)) => sluice_bench::sink::run_sink(args).await,
        Command::Bench(BenchCommand::Load(args)) => {
            sluice_bench::load::run_load(*args).await.map(|_| ())
        }
    }
}
