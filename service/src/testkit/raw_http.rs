//! Hostile HTTP clients over raw TCP, and a service binary run as a child process so that
//! its resident memory can be read from `/proc`. The dispatcher's and the callback
//! service's hostile-input tests both use them.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A service binary running as a child process; killed on drop.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the service logged after it started listening (JSON).
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `bin args...` with `envs` plus `GPUQ_LISTEN=127.0.0.1:0`, JSON logs, and waits
    /// for its "listening" log line to learn the port. Its output is drained for good.
    pub async fn start(bin: &str, args: &[&str], envs: &[(&str, String)]) -> Self {
        let mut child = Command::new(bin)
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("GPUQ_LISTEN", "127.0.0.1:0")
            .env("GPUQ_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("service binary starts");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.expect("read log") {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let fields = &entry["fields"];
                let listening = fields["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("listening"));
                if let (true, Some(port)) = (listening, fields["port"].as_u64()) {
                    return port as u16;
                }
            }
            panic!("the service exited before listening");
        })
        .await
        .expect("the service listens within 60 s");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = std::sync::Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
                // Bounded: a flood test logs many lines and reads none of them.
                if kept.len() < 100_000 {
                    kept.push(line);
                }
            }
        });
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            logs,
        }
    }

    /// Resident memory of the process, KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
}

/// How the server ended an exchange.
#[derive(Debug)]
pub struct Ending {
    /// The status line's code, when a response came.
    pub status: Option<u16>,
    /// The response, head and body, as far as it came.
    pub response: String,
    /// From the first byte sent to the first byte of the response.
    pub answered: Option<Duration>,
    /// From the first byte sent to the connection's end (EOF or reset).
    pub after: Duration,
    /// Bytes the client got to send before that.
    pub sent: u64,
}

/// Sends `head` (which must end with the blank line), then `chunk` again and again, up to
/// `total` bytes, as fast as the server takes them, while reading the answer; returns when
/// the server ends the connection or after `limit`.
pub async fn flood(
    addr: SocketAddr,
    head: &str,
    chunk: Vec<u8>,
    total: u64,
    limit: Duration,
) -> Ending {
    exchange(addr, head.as_bytes().to_vec(), limit, move |sent| {
        let remaining = total.saturating_sub(sent);
        (remaining > 0).then(|| {
            (
                chunk[..chunk.len().min(remaining as usize)].to_vec(),
                Duration::ZERO,
            )
        })
    })
    .await
}

/// Sends `bytes` one byte per second while reading the answer; returns when the server
/// ends the connection or after `limit`.
pub async fn trickle(addr: SocketAddr, prefix: &[u8], bytes: Vec<u8>, limit: Duration) -> Ending {
    exchange(addr, prefix.to_vec(), limit, move |sent| {
        let i = sent as usize;
        (i < bytes.len()).then(|| (vec![bytes[i]], Duration::from_secs(1)))
    })
    .await
}

/// Writes `first`, then whatever `next(bytes sent after first)` returns, pausing as it says,
/// until it returns `None`, the server ends the connection, or `limit` passes.
async fn exchange(
    addr: SocketAddr,
    first: Vec<u8>,
    limit: Duration,
    mut next: impl FnMut(u64) -> Option<(Vec<u8>, Duration)> + Send + 'static,
) -> Ending {
    let started = Instant::now();
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    let writing = tokio::spawn(async move {
        if writer.write_all(&first).await.is_err() {
            return;
        }
        let mut body_sent = 0;
        while let Some((bytes, pause)) = next(body_sent) {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
            body_sent += bytes.len() as u64;
            counter.store(body_sent, std::sync::atomic::Ordering::Relaxed);
        }
        // Everything sent: keep the connection open (a client waiting for its answer).
        std::future::pending::<()>().await;
    });
    let mut response = Vec::new();
    let mut answered = None;
    let _ = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answered = answered.or(Some(started.elapsed()));
                    response.extend_from_slice(&buf[..n.min(65_536 - response.len().min(65_536))])
                }
            }
        }
    })
    .await;
    let after = started.elapsed();
    writing.abort();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok());
    Ending {
        status,
        response,
        answered,
        after,
        sent: sent.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// A request head with `Content-Length` and the given extra header lines.
pub fn head(method_path: &str, content_length: Option<u64>, headers: &[String]) -> String {
    let mut h =
        format!("{method_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n");
    if let Some(n) = content_length {
        h.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for line in headers {
        h.push_str(line);
        h.push_str("\r\n");
    }
    h.push_str("\r\n");
    h
}
