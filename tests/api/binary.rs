//! The `ssehub` binary: configuration layering, exit codes.

use std::process::Command;

fn ssehub() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ssehub"));
    // Only what a test sets explicitly.
    for (key, _) in std::env::vars() {
        if key.starts_with("SSEHUB_") {
            command.env_remove(key);
        }
    }
    command
}

#[test]
fn a_bad_value_exits_64_naming_the_key() {
    let output = ssehub()
        .env("SSEHUB_HEARTBEAT__INTERVAL", "often")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("heartbeat.interval"), "{stderr}");

    let output = ssehub()
        .env("SSEHUB_LIMITS__MAX_SUBSCRIBERS", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("limits.max_subscribers"));

    let output = ssehub().env("SSEHUB_NO_SUCH_KEY", "1").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no_such_key"));
}

#[test]
fn a_missing_config_file_exits_64() {
    let output = ssehub()
        .args(["--config", "does/not/exist.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does/not/exist.toml"));
}

#[test]
fn file_then_environment_layers_and_secrets_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ssehub.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:9000\"\n[history]\nsize = 50\nttl = \"10m\"\n[auth]\npublish_keys = [\"hunter2\"]\n",
    )
    .unwrap();
    let output = ssehub()
        .arg("--print-config")
        .env("SSEHUB_CONFIG", &file)
        .env("SSEHUB_HISTORY__SIZE", "70")
        .env("SSEHUB_HEARTBEAT__INTERVAL", "5s")
        .output()
        .unwrap();
    assert!(output.status.success());
    let shown: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
    assert_eq!(
        shown["listen"].as_str(),
        Some("0.0.0.0:9000"),
        "from the file"
    );
    assert_eq!(
        shown["history"]["size"].as_integer(),
        Some(70),
        "env over file"
    );
    assert_eq!(shown["history"]["ttl"].as_str(), Some("10m"));
    assert_eq!(shown["heartbeat"]["interval"].as_str(), Some("5s"));
    assert_eq!(shown["stream"]["queue"].as_integer(), Some(64), "default");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains("hunter2"), "secret printed: {text}");
}

#[test]
fn a_listening_socket_passed_in_listen_fds_is_used() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    // The platform (systemd, a serverless runtime) binds the socket and
    // passes it as fd 3; ssehub must serve on it without binding anything.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let inherited = listener.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "LISTEN_PID=$$ exec \"$0\"",
            env!("CARGO_BIN_EXE_ssehub"),
        ])
        .env("LISTEN_FDS", "1")
        // Would fail to bind if used: proves the inherited socket is used.
        .env("SSEHUB_LISTEN", "192.0.2.1:1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("SSEHUB_") && key != "SSEHUB_LISTEN" {
            command.env_remove(key);
        }
    }
    // SAFETY: only async-signal-safe calls (dup2) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let result = if inherited == 3 {
                // Already in place: just let it survive exec.
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(inherited, 3)
            };
            if result == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    drop(listener);

    let mut answer = String::new();
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
            stream
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let _ = stream.read_to_string(&mut answer);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "answer {answer:?}; log {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("LISTEN_FDS"));
}

#[tokio::test]
async fn listen_takes_a_host_name_and_one_that_does_not_resolve_exits_64() {
    let hub = crate::support::process::HubProcess::start(&[("SSEHUB_LISTEN", "localhost:0")]);
    assert!(hub.addr.ip().is_loopback(), "{}", hub.addr);
    let status = reqwest::get(hub.url("/healthz")).await.unwrap().status();
    assert_eq!(status, 200);

    // `.invalid` never resolves (RFC 6761).
    let output = ssehub()
        .env("SSEHUB_LISTEN", "ssehub.invalid:8090")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`listen`")
            && stderr.contains("ssehub.invalid:8090")
            && stderr.contains("does not resolve"),
        "{stderr}"
    );

    let output = ssehub().env("SSEHUB_LISTEN", "localhost").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`listen`") && stderr.contains("\"localhost:8080\""),
        "{stderr}"
    );
}

/// The first run: the start-up line gives the console's and the API docs'
/// URLs, and the first Ctrl-C says that a second one exits at once.
#[tokio::test]
async fn the_start_up_line_links_the_console_and_ctrl_c_explains_itself() {
    let hub = crate::support::process::HubProcess::start(&[("SSEHUB_DRAIN__DELAY", "0s")]);
    let start_line: serde_json::Value = hub
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["message"]
                .as_str()
                .is_some_and(|message| message.starts_with("listening on "))
        })
        .expect("the start-up line");
    let console = format!("http://{}/", hub.addr);
    assert_eq!(start_line["console"], console.as_str(), "{start_line}");
    assert_eq!(
        start_line["api_docs"],
        format!("http://{}/docs", hub.addr).as_str()
    );
    assert_eq!(reqwest::get(&console).await.unwrap().status(), 200);

    hub.signal("INT");
    let (status, _, log) = hub.exit_within(std::time::Duration::from_secs(10)).await;
    assert!(status.success(), "{log}");
    assert!(log.contains("press Ctrl-C again to exit at once"), "{log}");
}
