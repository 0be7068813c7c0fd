//! A real `redis-server` (Debian's package, installed by
//! `scripts/install-test-deps.sh`) on a free loopback port with its own
//! temporary directory, and the ways the tests hurt it: `kill -9`, a
//! restart on the same port and directory, `SIGSTOP`/`SIGCONT`, commands.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk: a restart comes back empty.
    None,
    /// Append-only file, fsync on every write: a restart keeps everything.
    AofAlways,
}

pub struct RedisServer {
    pub port: u16,
    persistence: Persistence,
    /// More `redis-server` arguments (e.g. `--replicaof`), kept for restarts.
    extra_args: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn redis_server() -> PathBuf {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("redis-server is not installed: run scripts/install-test-deps.sh")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    pub fn start(persistence: Persistence) -> Self {
        Self::start_on(free_port(), persistence)
    }

    /// On a given port (one a hub was already told about).
    pub fn start_on(port: u16, persistence: Persistence) -> Self {
        Self::start_with(port, persistence, &[])
    }

    /// A replica of the Redis on `master_port`.
    pub fn start_replica_of(master_port: u16) -> Self {
        let master = master_port.to_string();
        Self::start_with(
            free_port(),
            Persistence::None,
            &["--replicaof", "127.0.0.1", &master],
        )
    }

    pub fn start_with(port: u16, persistence: Persistence, extra_args: &[&str]) -> Self {
        let mut server = Self {
            port,
            persistence,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn launch(&mut self) {
        let mut command = Command::new(redis_server());
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--dir", self.dir.path().to_str().unwrap()])
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match self.persistence {
            Persistence::None => command.args(["--appendonly", "no"]),
            Persistence::AofAlways => {
                command.args(["--appendonly", "yes", "--appendfsync", "always"])
            }
        };
        self.child = Some(command.spawn().expect("spawn redis-server"));
        let started = Instant::now();
        while self.try_cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to save anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Starts again on the same port and directory (AOF: same data).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.launch();
    }

    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Runs a command with `redis-cli`; `None` when it failed (e.g. the
    /// server is still starting or loading its data).
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Runs a command with `redis-cli`; returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped server can't die of SIGKILL's cleanup until resumed.
            let _ = Command::new("kill")
                .args(["-CONT", &child.id().to_string()])
                .status();
        }
        self.kill();
    }
}

fn redis_sentinel() -> PathBuf {
    ["/usr/bin/redis-sentinel", "/usr/local/bin/redis-sentinel"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .expect("redis-sentinel is not installed: run scripts/install-test-deps.sh")
}

/// A real `redis-sentinel` (Debian's package) on a free loopback port,
/// monitoring one master as `mymaster` with a quorum of 2 and failure
/// detection in a second (production default: 30 s).
pub struct SentinelServer {
    pub port: u16,
    master_port: u16,
    /// More sentinel.conf lines (`requirepass`, `sentinel auth-pass`).
    extra_config: String,
    /// The sentinel's own password, for `redis-cli`.
    password: Option<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

pub const MASTER_NAME: &str = "mymaster";

impl SentinelServer {
    pub fn start(master_port: u16) -> Self {
        Self::start_with(master_port, "", None)
    }

    /// With more sentinel.conf lines and the sentinel's own password.
    pub fn start_with(master_port: u16, extra_config: &str, password: Option<&str>) -> Self {
        let mut sentinel = Self {
            port: free_port(),
            master_port,
            extra_config: extra_config.to_owned(),
            password: password.map(str::to_owned),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        sentinel.launch();
        sentinel
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        // Sentinel rewrites its file (the master it follows, its peers): a
        // fresh one on first start, the rewritten one on a restart.
        let config = self.dir.path().join("sentinel.conf");
        if !config.exists() {
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\nloglevel warning\n\
                     dir {dir}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n{extra}",
                    port = self.port,
                    dir = self.dir.path().display(),
                    master = self.master_port,
                    extra = self.extra_config,
                ),
            )
            .unwrap();
        }
        self.child = Some(
            Command::new(redis_sentinel())
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel"),
        );
        let started = Instant::now();
        while self.try_cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-sentinel did not start on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.launch();
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let mut command = Command::new("redis-cli");
        command.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        let output = command.args(args).stderr(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli -p {} {args:?} failed", self.port))
    }

    /// The port of the master this sentinel names now.
    pub fn master_port(&self) -> u16 {
        let reply = self.cli(&["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
        reply
            .lines()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for SentinelServer {
    fn drop(&mut self) {
        self.kill();
    }
}
