//! Startup-to-ready: the time from spawning the `ssehub` binary to its first
//! successful `GET /readyz`. Printed, not asserted (machines are noisy).
//! Run with `cargo bench --bench startup`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 30;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One `GET /readyz` over a fresh connection; true on a 200.
fn ready(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

fn main() {
    let binary = env!("CARGO_BIN_EXE_ssehub");
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let addr = free_addr();
        let started = Instant::now();
        let mut child = Command::new(binary)
            .env("SSEHUB_LISTEN", addr.to_string())
            .env("SSEHUB_LOG__LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssehub");
        while !ready(addr) {
            assert!(started.elapsed() < Duration::from_secs(10), "never ready");
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(started.elapsed());
        let _ = child.kill();
        let _ = child.wait();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "startup to first 200 from /readyz over {RUNS} runs: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(times[RUNS / 2]),
        ms(times[0]),
        ms(times[RUNS - 1])
    );
}
