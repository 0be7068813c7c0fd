//! The server's CPU time and resident memory, from /proc. Given a pid, its
//! descendants count too: nginx does its work in worker processes.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    /// User plus system CPU time, summed over the processes.
    pub cpu_seconds: f64,
    pub rss_kib: u64,
    pub processes: usize,
}

/// Samples the given pids and all their descendants.
pub fn sample(pids: &[u32]) -> Result<ServerSample> {
    let ticks_per_second = clock_ticks_per_second();
    let mut total = ServerSample::default();
    for pid in with_descendants(pids)? {
        let read = |file: &str| std::fs::read_to_string(format!("/proc/{pid}/{file}"));
        let (stat, status) = match (read("stat"), read("status")) {
            (Ok(stat), Ok(status)) => (stat, status),
            // A child may exit between listing and reading; the given pids may not.
            _ if !pids.contains(&pid) => continue,
            (Err(error), _) | (_, Err(error)) => {
                return Err(error).with_context(|| format!("server pid {pid} (has it exited?)"));
            }
        };
        total.cpu_seconds +=
            parse_cpu_ticks(&stat).context("parsing /proc/<pid>/stat")? as f64 / ticks_per_second;
        total.rss_kib += parse_rss_kib(&status).unwrap_or(0);
        total.processes += 1;
    }
    Ok(total)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// `pids` plus every process whose ancestry leads to one of them.
fn with_descendants(pids: &[u32]) -> Result<Vec<u32>> {
    let mut parents = HashMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes may exit while we look; skip them.
        if let Some(parent) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_parent)
        {
            parents.insert(pid, parent);
        }
    }
    let mut found: Vec<u32> = pids.to_vec();
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| **p == parent)
                .map(|(child, _)| *child),
        );
        index += 1;
    }
    found.sort_unstable();
    found.dedup();
    Ok(found)
}

/// Fields after the command name, which may itself hold spaces and parentheses.
fn fields_after_command(stat: &str) -> Option<Vec<&str>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().collect())
}

/// utime + stime (fields 14 and 15 of proc(5), in clock ticks).
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let fields = fields_after_command(stat)?;
    // fields[0] is field 3 (state).
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn parse_parent(stat: &str) -> Option<u32> {
    fields_after_command(stat)?.get(1)?.parse().ok()
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (nginx: worker (x)) S 4241 4241 4241 0 -1 4194624 1000 0 0 0 \
                        250 75 0 0 20 0 1 0 12345 104857600 2500 18446744073709551615";

    #[test]
    fn reads_cpu_ticks_and_parent_past_a_tricky_command_name() {
        assert_eq!(parse_cpu_ticks(STAT), Some(325));
        assert_eq!(parse_parent(STAT), Some(4241));
    }

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tnginx\nVmPeak:\t  9000 kB\nVmRSS:\t   1234 kB\nThreads:\t1\n";
        assert_eq!(parse_rss_kib(status), Some(1234));
        assert_eq!(parse_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let sample = sample(&[std::process::id()]).unwrap();
        assert!(sample.processes >= 1);
        assert!(sample.rss_kib > 0);
    }
}
