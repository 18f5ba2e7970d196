//! The operations listener: Prometheus `GET /metrics` and `GET /health`, on 127.0.0.1
//! by default. Runs on a tokio runtime of its own, apart from the pipeline threads.
//! `/health` answers 200 with a JSON status while the archive writes, 503 after an
//! archive failure. Bounded: at most [`MAX_CONNECTIONS`] at once (more are closed at
//! accept), each gets [`REQUEST_DEADLINE`] to send its request head and take the answer,
//! and a failing accept (out of descriptors) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::pipeline::Health;

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a connection has to send its request head, and again to take the answer.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the global Prometheus recorder; returns the handle that renders it.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    crate::metrics::describe();
    Ok(handle)
}

/// Binds the listener now (so a busy port is an error at start) and serves it on `rt`.
pub fn serve(rt: &tokio::runtime::Runtime, addr: SocketAddr, handle: PrometheusHandle, health: Arc<Health>) -> std::io::Result<SocketAddr> {
    let listener = rt.block_on(TcpListener::bind(addr))?;
    let local = listener.local_addr()?;
    let started = Instant::now();
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    rt.spawn(async move {
        loop {
            let mut conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            if active.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                drop(conn);
                continue;
            }
            active.fetch_add(1, Ordering::AcqRel);
            let (handle, health, active) = (handle.clone(), health.clone(), active.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                // Read the request head (bounded in bytes and time; the body is ignored).
                let _ = tokio::time::timeout(REQUEST_DEADLINE, async {
                    while n < buf.len() {
                        match conn.read(&mut buf[n..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(k) => {
                                n += k;
                                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                    break;
                                }
                            }
                        }
                    }
                })
                .await;
                let head = String::from_utf8_lossy(&buf[..n]);
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, ctype, body) = match (method, path) {
                    ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", handle.render()),
                    ("GET", "/health") => {
                        let failed = health.archive_failed.load(Ordering::Relaxed);
                        let body = serde_json::json!({
                            "status": if failed { "failing" } else { "ok" },
                            "uptime_secs": started.elapsed().as_secs(),
                            "rows_sealed": health.rows_sealed.load(Ordering::Relaxed),
                            "commits": health.commits.load(Ordering::Relaxed),
                            "last_commit_unix": health.last_commit_unix.load(Ordering::Relaxed),
                        })
                        .to_string();
                        (if failed { "503 Service Unavailable" } else { "200 OK" }, "application/json", body)
                    }
                    ("GET", _) => ("404 Not Found", "text/plain", "not found: try /metrics or /health\n".to_string()),
                    _ => ("405 Method Not Allowed", "text/plain", "only GET\n".to_string()),
                };
                let resp = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                let _ = tokio::time::timeout(REQUEST_DEADLINE, async {
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                })
                .await;
                active.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(local)
}
