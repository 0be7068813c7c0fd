//! Command-line arguments.

use crate::compare::CompareArgs;
use crate::disrupt::DisruptArgs;
use crate::scenario::LoadOverrides;
use crate::settings::VerdictRules;
use crate::target::TargetArgs;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Load-test harness for SSE fan-out servers: opens thousands of real
/// HTTP/1.1 SSE streams, publishes on an open-loop schedule, checks every
/// delivery and reports throughput, latency and the server's CPU and memory.
#[derive(Debug, Parser)]
#[command(name = "ssehub-loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario against a server.
    Run(Box<RunArgs>),
    /// List the built-in scenarios.
    Scenarios,
    /// Print a markdown table comparing two targets' runs from JSON-lines files.
    Compare(CompareArgs),
    /// Subscribe/disconnect cycles against one ssehub process, then check
    /// that its memory, descriptors and subscriber slots came back.
    Churn(crate::churn::ChurnArgs),
    /// Hours of a scenario plus churn against one server, sampling memory,
    /// descriptors, CPU and p99 every interval into JSON lines and a chart.
    Soak(Box<crate::soak::SoakArgs>),
    /// Internal: a subscriber process, driven over stdin/stdout by `run`.
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Built-in scenario name (see `scenarios`) or path to a scenario TOML file.
    #[arg(default_value = "smoke")]
    pub scenario: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub load: LoadOverrides,
    #[command(flatten)]
    pub disrupt: DisruptArgs,
    #[command(flatten)]
    pub verdict: VerdictRules,
    /// Server process to measure (CPU from /proc/<pid>/stat, RSS from
    /// /proc/<pid>/status), children included. Repeatable.
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    /// Append the run's figures as one JSON line to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Write a latency plot (SVG) to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Free-form label stored with the results (e.g. a commit or machine).
    #[arg(long)]
    pub label: Option<String>,
    /// No progress bar and no notes; the final table still prints.
    #[arg(long, short)]
    pub quiet: bool,
}
