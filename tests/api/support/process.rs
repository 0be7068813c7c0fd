//! The real `ssehub` binary as a child process, configured by environment
//! only (as in the container), on a port it picks itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct HubProcess {
    pub addr: SocketAddr,
    child: Child,
    /// Every log line so far (stderr), for assertions and failure messages.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl HubProcess {
    /// Starts the binary with `env` on top of a clean environment and waits
    /// for it to log its address.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with(env, |_| {})
    }

    /// Like [`HubProcess::start`], with the process's open-file limit (soft
    /// and hard) set to `open_files`.
    pub fn start_with_open_file_limit(env: &[(&str, &str)], open_files: u64) -> Self {
        use std::os::unix::process::CommandExt;
        Self::start_with(env, |command| {
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: open_files,
                        rlim_max: open_files,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    fn start_with(env: &[(&str, &str)], configure: impl FnOnce(&mut Command)) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
        for (key, _) in std::env::vars() {
            if key.starts_with("SSEHUB_") || key.starts_with("OTEL_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command
            .env("SSEHUB_LISTEN", "127.0.0.1:0")
            .env("SSEHUB_LOG__FORMAT", "json")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        configure(&mut command);
        let mut child = command.spawn().expect("spawn ssehub");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let addr = listening_addr(&line);
                    // Kept before the address is sent: whoever waits for
                    // the address may read the log at once.
                    log.lock().unwrap().push(line);
                    if let Some(addr) = addr {
                        let _ = addr_tx.send(addr);
                    }
                }
            });
        }
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("ssehub did not start: {:?}", log.lock().unwrap()));
        Self { addr, child, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Resident memory of the hub process, in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// One series' value from `/metrics`, named as exposed (`name` or
    /// `name{labels}`); `None` while the hub doesn't expose it.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let text = reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let series = series.trim_end();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    }

    /// `ssehub_subscribers_connected`.
    pub async fn subscribers(&self) -> f64 {
        self.metric("ssehub_subscribers_connected")
            .await
            .expect("ssehub_subscribers_connected in /metrics")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} failed");
    }

    /// Polls until the hub refuses new connections (a drain's second step:
    /// its listener has closed).
    pub async fn wait_until_refused(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
            assert!(Instant::now() < deadline, "the listener is still open");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits up to `limit` for the process to exit; returns its status and
    /// how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<(ExitStatus, Duration)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some((status, started.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Waits (off the async runtime) up to `limit` for the exit; panics
    /// with the log if the process is still running. Returns the status,
    /// how long the wait took, and the whole log.
    pub async fn exit_within(mut self, limit: Duration) -> (ExitStatus, Duration, String) {
        tokio::task::spawn_blocking(move || {
            let exit = self.wait_exit(limit);
            let log = self.log_text();
            let (status, took) =
                exit.unwrap_or_else(|| panic!("no exit within {limit:?}; log:\n{log}"));
            (status, took, log)
        })
        .await
        .expect("the waiting thread")
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address from the JSON log line `"listening on 127.0.0.1:PORT"`.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    json["message"]
        .as_str()?
        .strip_prefix("listening on ")?
        .parse()
        .ok()
}
