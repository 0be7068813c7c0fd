//! The coordinator's side of the worker processes: start them (the binary
//! runs itself with the hidden `worker` subcommand), send them messages, and
//! receive theirs through one channel.

use crate::protocol::{FromWorker, ToWorker, WorkerPlan};
use anyhow::{Context, Result, bail};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

pub enum PoolEvent {
    Message(usize, FromWorker),
    /// The worker's stdout closed (it exited or crashed), or it sent garbage.
    Gone(usize, String),
}

struct WorkerProcess {
    /// Kept so the child is killed if the coordinator bails out.
    _child: Child,
    stdin: ChildStdin,
}

pub struct WorkerPool {
    workers: Vec<WorkerProcess>,
    events: mpsc::UnboundedReceiver<PoolEvent>,
}

impl WorkerPool {
    /// Starts one worker per plan and hands each its plan.
    pub async fn start(plans: Vec<WorkerPlan>) -> Result<Self> {
        let executable = std::env::current_exe().context("finding the harness executable")?;
        let (sender, events) = mpsc::unbounded_channel();
        let mut workers = Vec::with_capacity(plans.len());
        for (index, plan) in plans.into_iter().enumerate() {
            let mut child = Command::new(&executable)
                .arg("worker")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("starting a worker process")?;
            let stdout = child.stdout.take().expect("piped");
            let stdin = child.stdin.take().expect("piped");
            tokio::spawn(forward_messages(index, stdout, sender.clone()));
            let mut worker = WorkerProcess {
                _child: child,
                stdin,
            };
            send(&mut worker.stdin, &ToWorker::Plan(plan)).await?;
            workers.push(worker);
        }
        Ok(Self { workers, events })
    }

    pub fn len(&self) -> usize {
        self.workers.len()
    }

    pub async fn send(&mut self, worker: usize, message: &ToWorker) -> Result<()> {
        send(&mut self.workers[worker].stdin, message).await
    }

    pub async fn next_event(&mut self) -> Result<PoolEvent> {
        match self.events.recv().await {
            Some(event) => Ok(event),
            None => bail!("every worker is gone"),
        }
    }

    /// Asks every worker to exit.
    pub async fn shutdown(mut self) {
        for worker in &mut self.workers {
            let _ = send(&mut worker.stdin, &ToWorker::Shutdown).await;
        }
    }
}

async fn send(stdin: &mut ChildStdin, message: &ToWorker) -> Result<()> {
    let mut line = serde_json::to_vec(message)?;
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .context("writing to a worker")?;
    stdin.flush().await?;
    Ok(())
}

async fn forward_messages(
    index: usize,
    stdout: tokio::process::ChildStdout,
    sender: mpsc::UnboundedSender<PoolEvent>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let reason = loop {
        match lines.next_line().await {
            Ok(Some(line)) => match serde_json::from_str(&line) {
                Ok(message) => {
                    if sender.send(PoolEvent::Message(index, message)).is_err() {
                        return;
                    }
                }
                Err(error) => break format!("unreadable message {line:?}: {error}"),
            },
            Ok(None) => break "exited".to_owned(),
            Err(error) => break format!("read error: {error}"),
        }
    };
    let _ = sender.send(PoolEvent::Gone(index, reason));
}
