//! `ssehub-loadtest`: a load-test harness for SSE fan-out servers.
//!
//! The coordinator (`run`) starts subscriber worker processes (`worker`,
//! the same binary) and publishes itself; results come back as JSON lines.
//!
//! - `cli`, `commands`: arguments, and what each subcommand does
//! - `scenario`, `target`: the load (TOML files) and the server (templates)
//! - `settings`: what one run is given (scenario, server, verdict rules)
//! - `run`, `saturate`: one run phase by phase; stepping the rate
//! - `worker_pool`, `protocol`, `worker`: the coordinator/worker processes
//! - `subscriber`, `http`, `sse`: one lean SSE client connection
//! - `publisher`: the open-loop publish schedule
//! - `disrupt`: a command run in the middle of publishing (a rolling restart)
//! - `payload`, `seq_set`, `verify`: what is sent, and checking what arrives
//! - `loss`: which subscriber missed which publish, and its connections
//! - `latency`, `server_stats`, `figures`, `report`: measuring and reporting
//! - `plot`, `progress`, `compare`: SVG charts, the progress bar, side-by-side tables
//! - `limits`: the open-file limit that sets subscribers per process
//! - `mercure`: the Mercure target's topic IRIs, publisher token and answer id
//! - `churn`: many short subscriptions, then memory, fds and slots compared
//! - `soak`: a scenario round after round plus churn, sampled into a chart

mod churn;
mod cli;
mod commands;
mod compare;
mod disrupt;
mod figures;
mod http;
mod latency;
mod limits;
mod loss;
mod mercure;
mod payload;
mod plot;
mod progress;
mod protocol;
mod publisher;
mod report;
mod run;
mod saturate;
mod scenario;
mod seq_set;
mod server_stats;
mod settings;
mod soak;
mod sse;
mod subscriber;
mod target;
mod verify;
mod worker;
mod worker_pool;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

/// Exit code of a run that completed but did not pass (lost, duplicated or
/// out-of-order events, failed connections, refused publishes).
const EXIT_RUN_FAILED: u8 = 1;
/// Exit code when the harness itself could not do its job.
const EXIT_HARNESS_ERROR: u8 = 2;

/// A one-thread runtime: the harness must not take the server's cores.
fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Worker => worker::main().map(|()| true),
        Command::Scenarios => commands::list_scenarios().map(|()| true),
        Command::Compare(args) => compare::compare(&args).map(|table| {
            print!("{table}");
            true
        }),
        Command::Churn(args) => {
            current_thread().and_then(|runtime| runtime.block_on(commands::churn(&args)))
        }
        Command::Soak(args) => {
            limits::raise_open_file_limit();
            current_thread().and_then(|runtime| runtime.block_on(soak::soak(&args)))
        }
        Command::Run(args) => {
            limits::raise_open_file_limit();
            // The coordinator only schedules publishes and reads worker
            // pipes: one thread keeps its timing steady and leaves the
            // cores to the server and the subscribers.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(commands::run(*args)))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_RUN_FAILED),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_HARNESS_ERROR)
        }
    }
}
