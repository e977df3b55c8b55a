//! The `sluice` binary: parse the command line, build the pieces, run.

mod catalog;
mod cli;
mod commands;
mod config;
mod connections;
mod jobs;
mod parse;
mod proxy_threads;
mod server;
mod tls;
mod user_commands;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{BenchCommand, Cli, Command, LogFormat};

/// mimalloc: glibc's allocator showed lock contention between the runtime's threads under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's option enum (the Rust bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with mimalloc before it is returned to the OS, in ms.
/// mimalloc v3's default is 1 s (v2's was 10 ms): with 20 uploads of 1 MiB in flight, a second
/// of freed body buffers kept RSS ~20 MiB above what was in use (docs/BENCHMARKS.md). At 10 ms
/// the proxy threads returned and faulted in again ~0.14 pages per request, each return an
/// `madvise` that interrupts the other core to flush its TLB; at 250 ms, ~0.05, for 0.85 µs
/// less CPU per request and ~10 MiB more peak RSS under 1 MiB uploads (tuning step 34).
const PURGE_DELAY_MS: std::ffi::c_long = 250;

/// Sets the allocator's purge delay, unless `MIMALLOC_PURGE_DELAY` asks for another.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: stores an integer option; mimalloc reads options with relaxed atomics.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

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
    // Everything sluice writes (ledger, journal, key, backups) is its user's alone: mode 0600
    // files and 0700 directories, whatever the umask it was started with.
    // SAFETY: umask only changes the mode of files created from now on.
    unsafe { libc::umask(0o077) };
    tune_allocator();
    let cli = Cli::parse();
    let format = match &cli.command {
        Command::Serve(a) => a.log_format,
        _ => LogFormat::Text,
    };
    init_tracing(format);
    match cli.command {
        Command::Serve(args) => server::serve(*args).await,
        Command::Migrate(ledger) => commands::migrate(ledger).await,
        Command::Backup(args) => commands::backup(args).await,
        Command::Token(cmd) => commands::token(cmd).await,
        Command::User(cmd) => user_commands::user(cmd).await,
        Command::Channel(cmd) => commands::channel(cmd).await,
        Command::Secrets(cmd) => commands::secrets(cmd).await,
        Command::Catalog(cmd) => catalog::command(cmd).await,
        Command::Bench(BenchCommand::Sink(args)) => sluice_bench::sink::run_sink(args).await,
        Command::Bench(BenchCommand::Load(args)) => {
            sluice_bench::load::run_load(*args).await.map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_tuned() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            eprintln!("MIMALLOC_PURGE_DELAY is set: mimalloc's default is not observable");
            return;
        }
        // SAFETY: reads and writes an integer option.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(
            before, 1000,
            "option 15 holds mimalloc v3's 1 s purge delay"
        );
        tune_allocator();
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, PURGE_DELAY_MS);
    }
}
