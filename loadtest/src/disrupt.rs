//! A disruption in the middle of a run: a shell command (a rolling restart of
//! the servers, say) started after publishing has run for a while. Publishing
//! goes on at the same rate while it runs and for a recovery time after it
//! exits, so the figures can be split into before, during and after.
//!
//! The command may mark drain windows on its stdout, one line each:
//!
//! `drain <label> <start-ms> <length-ms>`
//!
//! meaning "the streams of `<label>` will be ended (and their clients
//! reconnect) from `<start-ms>` after this line for `<length-ms>`". The
//! reconnect figures are taken over those windows. Other stdout lines are
//! passed on to stderr; stderr is inherited.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::subscriber::unix_nanos;

#[derive(Debug, Clone, Args)]
pub struct DisruptArgs {
    /// Shell command run (`sh -c`) in the middle of publishing, e.g. a rolling
    /// restart; its stdout lines `drain LABEL START_MS LENGTH_MS` mark drain
    /// windows. Publishing then lasts until it exits plus --recover-for (the
    /// scenario's count or duration no longer applies). A non-zero exit fails
    /// the run.
    #[arg(long, value_name = "COMMAND")]
    pub disrupt: Option<String>,
    /// Publish this long before starting the command (the "before" figures).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub disrupt_after: Duration,
    /// Publish this long after the command exits (the "after" figures).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub recover_for: Duration,
    /// Kill the command if it runs longer than this (the run then fails).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    pub disrupt_timeout: Duration,
}

/// A disruption to run, from `DisruptArgs` with a command.
#[derive(Debug, Clone)]
pub struct Disruption {
    pub command: String,
    pub after: Duration,
    pub recover_for: Duration,
    pub timeout: Duration,
}

impl Disruption {
    pub fn from_args(args: &DisruptArgs) -> Option<Self> {
        args.disrupt.clone().map(|command| Self {
            command,
            after: args.disrupt_after,
            recover_for: args.recover_for,
            timeout: args.disrupt_timeout,
        })
    }
}

/// A window in which one server's clients were expected to reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainWindow {
    pub label: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DisruptionOutcome {
    pub command: String,
    pub started_unix_nanos: u64,
    pub ended_unix_nanos: u64,
    /// `None` when it was killed (timeout) or ended by a signal.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub drain_windows: Vec<DrainWindow>,
}

/// Reads a `drain LABEL START_MS LENGTH_MS` line seen at `now_unix_nanos`.
/// `Ok(None)`: not a mark; `Err`: a mark that can't be read.
pub fn parse_mark(line: &str, now_unix_nanos: u64) -> Result<Option<DrainWindow>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("drain") {
        return Ok(None);
    }
    let (Some(label), Some(start), Some(length), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        bail!("a drain mark is `drain LABEL START_MS LENGTH_MS`, got {line:?}");
    };
    let millis = |text: &str| -> Result<u64> {
        text.parse::<u64>()
            .with_context(|| format!("{text:?} in {line:?} is not a number of ms"))
    };
    let start = now_unix_nanos + millis(start)? * 1_000_000;
    Ok(Some(DrainWindow {
        label: label.to_owned(),
        start_unix_nanos: start,
        end_unix_nanos: start + millis(length)? * 1_000_000,
    }))
}

/// Waits `after`, runs the command to its end (or its timeout), publishes on
/// for `recover_for`, then ends the publish schedule through `stop`.
pub async fn run(disruption: Disruption, stop: watch::Sender<bool>) -> Result<DisruptionOutcome> {
    let result = run_command(&disruption).await;
    if result.is_ok() {
        tokio::time::sleep(disruption.recover_for).await;
    }
    // Whatever happened, publishing must end.
    let _ = stop.send(true);
    result
}

async fn run_command(disruption: &Disruption) -> Result<DisruptionOutcome> {
    tokio::time::sleep(disruption.after).await;
    let mut outcome = DisruptionOutcome {
        command: disruption.command.clone(),
        started_unix_nanos: unix_nanos(),
        ..DisruptionOutcome::default()
    };
    let deadline = Instant::now() + disruption.timeout;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&disruption.command)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // Its own process group, so a timeout ends what it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the disruption {:?}", disruption.command))?;
    let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    let finished = tokio::time::timeout_at(deadline, async {
        while let Some(line) = lines.next_line().await? {
            match parse_mark(&line, unix_nanos()) {
                Ok(Some(window)) => outcome.drain_windows.push(window),
                Ok(None) => eprintln!("disrupt: {line}"),
                Err(error) => eprintln!("disrupt: {error:#}"),
            }
        }
        child.wait().await.map_err(anyhow::Error::from)
    })
    .await;
    match finished {
        Ok(status) => outcome.exit_code = status?.code(),
        Err(_) => {
            outcome.timed_out = true;
            if let Some(pid) = child.id().and_then(|pid| i32::try_from(pid).ok()) {
                // SAFETY: kill(2) on the group this child leads; no memory is involved.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.kill().await;
        }
    }
    outcome.ended_unix_nanos = unix_nanos();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_drain_marks_relative_to_when_they_were_seen() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(
            parse_mark("drain replica-2 1500 2000", now).unwrap(),
            Some(DrainWindow {
                label: "replica-2".into(),
                start_unix_nanos: now + 1_500_000_000,
                end_unix_nanos: now + 3_500_000_000,
            })
        );
        assert_eq!(parse_mark("restarting replica-2", now).unwrap(), None);
        assert!(parse_mark("drain replica-2 soon 2000", now).is_err());
        assert!(parse_mark("drain replica-2 1500", now).is_err());
    }

    #[tokio::test]
    async fn runs_the_command_collects_marks_and_ends_publishing() {
        let (stop, stopped) = watch::channel(false);
        let disruption = Disruption {
            command: "echo drain a 0 100; echo hello; exit 3".into(),
            after: Duration::ZERO,
            recover_for: Duration::from_millis(10),
            timeout: Duration::from_secs(10),
        };
        let outcome = run(disruption, stop).await.unwrap();
        assert_eq!(outcome.exit_code, Some(3));
        assert!(!outcome.timed_out);
        assert_eq!(outcome.drain_windows.len(), 1);
        assert_eq!(outcome.drain_windows[0].label, "a");
        assert!(outcome.ended_unix_nanos >= outcome.started_unix_nanos);
        assert!(*stopped.borrow());
    }

    #[tokio::test]
    async fn a_command_past_its_timeout_is_killed() {
        let (stop, stopped) = watch::channel(false);
        let disruption = Disruption {
            command: "sleep 30".into(),
            after: Duration::ZERO,
            recover_for: Duration::ZERO,
            timeout: Duration::from_millis(200),
        };
        let outcome = run(disruption, stop).await.unwrap();
        assert!(outcome.timed_out);
        assert_eq!(outcome.exit_code, None);
        assert!(*stopped.borrow());
    }
}
