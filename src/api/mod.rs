//! The operations listener: Prometheus `GET /metrics` and `GET /health`, on 127.0.0.1
//! by default, and `POST /api/query` (SQL over the archive, read-only, with a bearer
//! token, bounded rows and time) when `[metrics] query_api = true`. Runs on a tokio runtime of its own, apart from the pipeline threads.
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

/// The archive's tables that have data, for the SQL engine.
#[cfg(feature = "query")]
pub fn archive_tables(root: &std::path::Path) -> Vec<crate::query::TableSpec> {
    use crate::archive::{layout::partitions, Table};
    Table::ALL
        .into_iter()
        .filter(|t| partitions(root, t.dir()).is_ok_and(|p| !p.is_empty()))
        .map(|t| crate::query::TableSpec { name: t.dir(), dir: root.join(t.dir()), time_column: if t == Table::Incidents { "last_seen" } else { "timestamp" } })
        .collect()
}

/// `POST /api/query`: what it needs.
#[derive(Debug, Clone)]
pub struct QueryApi {
    pub config: crate::config::QueryApiConfig,
    pub archive: std::path::PathBuf,
}

/// Largest request body of `POST /api/query`.
pub const MAX_QUERY_BODY: usize = 64 * 1024;

#[cfg(feature = "query")]
fn same(a: &[u8], b: &[u8]) -> bool {
    // Constant time in the token's length: no early exit on the first difference.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Answers `POST /api/query` (status, content type, body).
#[cfg(feature = "query")]
async fn answer_query(api: &QueryApi, head: &str, body: &[u8]) -> (&'static str, &'static str, Vec<u8>) {
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    let json_err = |status, msg: String| (status, "application/json", serde_json::json!({"error": msg}).to_string().into_bytes());
    let token = header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(str::to_string)).unwrap_or_default();
    if !same(token.as_bytes(), api.config.token.as_bytes()) {
        return json_err("401 Unauthorized", "a valid `Authorization: Bearer <token>` is required".into());
    }
    let req: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return json_err("400 Bad Request", format!("the body is not JSON: {e}")),
    };
    let Some(sql) = req["sql"].as_str() else { return json_err("400 Bad Request", "the body needs `sql`".into()) };
    let now = crate::event::time::wall_clock_us();
    let bound = |k: &str| req[k].as_str().map(|s| crate::query::parse_time(s, now)).transpose();
    let (since_us, until_us) = match (bound("since"), bound("until")) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => return json_err("400 Bad Request", e.0),
    };
    let max_rows = req["max_rows"].as_u64().map_or(api.config.max_rows, |m| (m as usize).min(api.config.max_rows));
    let q = crate::query::Request { root: api.archive.clone(), tables: archive_tables(&api.archive), sql: sql.to_string(), since_us, until_us };
    let arrow = header("accept").is_some_and(|a| a.contains("application/vnd.apache.arrow.stream"));
    match tokio::time::timeout(api.config.timeout, crate::query::run_limited(&q, max_rows)).await {
        Err(_) => json_err("504 Gateway Timeout", format!("the query ran longer than {} s", api.config.timeout.as_secs())),
        Ok(Err(e)) => json_err("400 Bad Request", e.0),
        Ok(Ok((batches, truncated))) => {
            let out = if arrow { crate::query::arrow_answer(&batches) } else { crate::query::json_answer(&batches, truncated).map(String::into_bytes) };
            match out {
                Ok(b) => ("200 OK", if arrow { "application/vnd.apache.arrow.stream" } else { "application/json" }, b),
                Err(e) => json_err("500 Internal Server Error", e.0),
            }
        }
    }
}

#[cfg(not(feature = "query"))]
async fn answer_query(_: &QueryApi, _: &str, _: &[u8]) -> (&'static str, &'static str, Vec<u8>) {
    ("404 Not Found", "text/plain", b"this build has no SQL engine\n".to_vec())
}

/// Installs the global Prometheus recorder; returns the handle that renders it.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    crate::metrics::describe();
    Ok(handle)
}

/// Binds the listener now (so a busy port is an error at start) and serves it on `rt`.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    handle: PrometheusHandle,
    health: Arc<Health>,
    query: Option<QueryApi>,
) -> std::io::Result<SocketAddr> {
    let query = query.map(Arc::new);
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
            let (handle, health, active, query) = (handle.clone(), health.clone(), active.clone(), query.clone());
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
                let end = buf[..n].windows(4).position(|w| w == b"\r\n\r\n").map_or(n, |p| p + 4);
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, ctype, body): (&str, &str, Vec<u8>) = match (method, path, &query) {
                    ("GET", "/metrics", _) => ("200 OK", "text/plain; version=0.0.4", handle.render().into_bytes()),
                    ("GET", "/health", _) => {
                        let failed = health.archive_failed.load(Ordering::Relaxed);
                        let now_ms = crate::event::stats::now_ms();
                        let sources: Vec<serde_json::Value> =
                            health.stats.get().map(|s| s.sources().iter().map(|h| h.to_json(now_ms)).collect()).unwrap_or_default();
                        let source_failed = sources.iter().any(|s| s["state"] == "failed");
                        let body = serde_json::json!({
                            "status": if failed { "failing" } else if source_failed { "degraded" } else { "ok" },
                            "uptime_secs": started.elapsed().as_secs(),
                            "events": health.stats.get().map_or(0, |s| s.events.load(Ordering::Relaxed)),
                            "rows_sealed": health.rows_sealed.load(Ordering::Relaxed),
                            "commits": health.commits.load(Ordering::Relaxed),
                            "last_commit_unix": health.last_commit_unix.load(Ordering::Relaxed),
                            "open_incidents": health.stats.get().map_or(0, |s| s.open_incidents.load(Ordering::Relaxed)),
                            "sources": sources,
                        })
                        .to_string();
                        (if failed { "503 Service Unavailable" } else { "200 OK" }, "application/json", body.into_bytes())
                    }
                    ("POST", "/api/query", Some(api)) => {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.split_once(':')
                                    .filter(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                                    .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                            })
                            .unwrap_or(0);
                        if len > MAX_QUERY_BODY {
                            ("413 Payload Too Large", "text/plain", format!("at most {MAX_QUERY_BODY} bytes\n").into_bytes())
                        } else {
                            let mut body = buf[end..n].to_vec();
                            let _ = tokio::time::timeout(REQUEST_DEADLINE, async {
                                let mut chunk = [0u8; 8192];
                                while body.len() < len {
                                    match conn.read(&mut chunk).await {
                                        Ok(0) | Err(_) => break,
                                        Ok(k) => body.extend_from_slice(&chunk[..k]),
                                    }
                                }
                            })
                            .await;
                            body.truncate(len);
                            answer_query(api, &head, &body).await
                        }
                    }
                    ("GET", _, _) => ("404 Not Found", "text/plain", b"not found: try /metrics or /health\n".to_vec()),
                    _ => ("405 Method Not Allowed", "text/plain", b"only GET (and POST /api/query when enabled)\n".to_vec()),
                };
                let mut resp =
                    format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
                resp.extend_from_slice(&body);
                let _ = tokio::time::timeout(REQUEST_DEADLINE, async {
                    let _ = conn.write_all(&resp).await;
                    let _ = conn.shutdown().await;
                })
                .await;
                active.fetch_sub(1, Ordering::AcqRel);
            });
        }
    });
    Ok(local)
}
