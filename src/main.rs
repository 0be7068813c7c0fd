//! The `ssehub` binary: load and validate config, start logging and
//! tracing, bind, serve until a signal, drain, flush the last spans, exit.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use ssehub::app::App;
use ssehub::app::token_command::{self, TokenArgs};
use ssehub::config::Config;
use ssehub::server::listener;
use ssehub::shutdown::Signals;
use ssehub::telemetry;
use ssehub::telemetry::TraceSettings;

/// Exit code for a configuration or usage error (sysexits' EX_USAGE).
const EXIT_BAD_CONFIG: i32 = 64;
/// Exit code when a second signal cuts the drain short: 128 + SIGINT, what
/// a shell reports for Ctrl-C.
const EXIT_SECOND_SIGNAL: i32 = 130;

/// Server-Sent Events fan-out hub.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file; `SSEHUB_*` environment variables override it.
    #[arg(long, env = "SSEHUB_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Print the merged configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
    /// Print the OpenAPI spec and exit.
    #[arg(long)]
    print_openapi: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Mint a JWT the hub accepts, signed with its configured secret
    /// (`auth.jwt.secret`) or a private key (`--key`), and print it.
    Token(TokenArgs),
}

fn main() -> ExitCode {
    let started = Instant::now();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // `--help` and `--version` are not errors; bad usage exits 64.
            return if error.use_stderr() {
                ExitCode::from(EXIT_BAD_CONFIG as u8)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => return bad_config(error),
    };
    if let Some(Command::Token(args)) = &cli.command {
        return match token_command::run(&config, args) {
            Ok((out, warning)) => {
                if let Some(warning) = warning {
                    eprintln!("ssehub token: warning: {warning}");
                }
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("ssehub token: {error}");
                ExitCode::from(EXIT_BAD_CONFIG as u8)
            }
        };
    }
    if cli.print_config {
        print!("{}", config.to_masked_toml());
        return ExitCode::SUCCESS;
    }
    if cli.print_openapi {
        println!(
            "{}",
            ssehub::http::openapi_document(config.limits.max_events_per_request)
        );
        return ExitCode::SUCCESS;
    }
    let traces = match TraceSettings::resolve(&config.telemetry, |name| std::env::var(name).ok()) {
        Ok(traces) => traces,
        Err(error) => return bad_config(error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("ssehub: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the gRPC exporter keeps its connection there.
    let telemetry = match runtime.block_on(async { telemetry::init(&config.log, traces.as_ref()) })
    {
        Ok(telemetry) => telemetry,
        Err(error) => return bad_config(error),
    };
    let code = runtime.block_on(run(config, started));
    // After the drain, before exit: the last spans (the drain's own
    // subscriptions among them) are exported while the runtime still runs.
    telemetry.shutdown();
    code
}

/// Says what is wrong with the configuration and exits 64.
fn bad_config(error: impl std::fmt::Display) -> ExitCode {
    eprintln!("ssehub: configuration error: {error}");
    ExitCode::from(EXIT_BAD_CONFIG as u8)
}

async fn run(config: Config, started: Instant) -> ExitCode {
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    listener::raise_open_file_limit(config.limits.max_subscribers);
    let addr = match config.listen.resolve() {
        // The first address the name resolves to (for `localhost`, what
        // the system prefers).
        Ok(addresses) => addresses[0],
        Err(error) => {
            return bad_config(format!(
                "invalid value for `listen`: {:?} does not resolve ({error}); use an IP \
                 address or a host name this machine resolves, e.g. \"127.0.0.1:8080\" or \
                 \"localhost:8080\"",
                config.listen.to_string()
            ));
        }
    };
    let listener = match listener::bind(addr) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %config.listen, "cannot listen; check `listen`");
            return ExitCode::FAILURE;
        }
    };
    let console = config.console.enabled;
    let app = match App::build(config, listener).await {
        Ok(app) => app,
        Err(error) => return bad_config(error),
    };
    // Where a person on this machine opens the hub: an unspecified address
    // (0.0.0.0, ::) is not one to browse to.
    let mut browse = app.local_addr();
    if browse.ip().is_unspecified() {
        browse.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    tracing::info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        console = console.then(|| format!("http://{browse}/")),
        api_docs = format!("http://{browse}/docs"),
        "listening on {}",
        app.local_addr()
    );
    let drain_signal = signals.drain_on_first(|| std::process::exit(EXIT_SECOND_SIGNAL));
    match app.serve(drain_signal).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            ExitCode::FAILURE
        }
    }
}
