//! Unix socket listeners, as Suricata's EVE output writes to them
//! (`filetype: unix_stream` / `unix_dgram`).
//!
//! * `unix_stream`: accepts up to `max_connections` connections, one reader thread each;
//!   lines are framed per connection; a read timeout flushes what has arrived.
//! * `unix_dgram`: each datagram holds one or more lines; datagrams are gathered into a
//!   batch until `read_bytes` or 100 ms.
//!
//! The socket file is created with `socket_mode`; a stale socket file left by a previous
//! run is removed first. These are push sources: nothing can be re-read, so batches carry
//! no position and the default overflow policy is `drop` (counted).

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::framing::Framer;
use super::{Position, RawBatch, SourceCtx};
use crate::metrics as m;

#[derive(Debug, Clone)]
pub struct UnixConfig {
    pub path: PathBuf,
    pub mode: u32,
    pub max_connections: usize,
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Removes a socket file left behind by a dead process; refuses to touch anything else.
fn prepare_path(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(std::io::Error::new(ErrorKind::AddrInUse, format!("{} is in use by a running process", path.display())));
            }
            std::fs::remove_file(path)
        }
        Ok(_) => Err(std::io::Error::new(ErrorKind::AlreadyExists, format!("{} exists and is not a socket", path.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Binds the stream listener (call before `run_stream`, so bind errors surface at start).
pub fn bind_stream(cfg: &UnixConfig) -> std::io::Result<UnixListener> {
    prepare_path(&cfg.path)?;
    let l = UnixListener::bind(&cfg.path)?;
    std::fs::set_permissions(&cfg.path, std::fs::Permissions::from_mode(cfg.mode))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

pub fn bind_dgram(cfg: &UnixConfig) -> std::io::Result<UnixDatagram> {
    prepare_path(&cfg.path)?;
    let s = UnixDatagram::bind(&cfg.path)?;
    std::fs::set_permissions(&cfg.path, std::fs::Permissions::from_mode(cfg.mode))?;
    s.set_read_timeout(Some(FLUSH_EVERY))?;
    Ok(s)
}

pub fn run_stream(ctx: SourceCtx, cfg: UnixConfig, listener: UnixListener) -> std::io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    let streams = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let path_str: Arc<str> = cfg.path.to_string_lossy().into();
    while !ctx.stopping() {
        match listener.accept() {
            Ok((conn, _)) => {
                if active.load(Ordering::Acquire) >= cfg.max_connections {
                    metrics::counter!(m::SOURCE_CONNECTIONS_REFUSED, "source" => ctx.info.name.to_string()).increment(1);
                    drop(conn);
                    continue;
                }
                metrics::counter!(m::SOURCE_CONNECTIONS, "source" => ctx.info.name.to_string()).increment(1);
                let now = active.fetch_add(1, Ordering::AcqRel) + 1;
                ctx.health.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (ctx, active, path) = (ctx.clone(), active.clone(), path_str.clone());
                let stream_id = streams.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(source = %ctx.info.name, stream = stream_id, active = now, "client connected");
                handles.push(std::thread::spawn(move || {
                    match read_connection(&ctx, conn, stream_id, path) {
                        Ok(()) => tracing::debug!(source = %ctx.info.name, stream = stream_id, "client disconnected"),
                        Err(e) => tracing::warn!(source = %ctx.info.name, stream = stream_id, error = %e, "connection failed"),
                    }
                    ctx.health.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    active.fetch_sub(1, Ordering::AcqRel);
                }));
                handles.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let _ = std::fs::remove_file(&cfg.path);
    Ok(())
}

fn read_connection(ctx: &SourceCtx, conn: UnixStream, stream: u64, path: Arc<str>) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(FLUSH_EVERY))?;
    let mut framer = Framer::new(0, ctx.max_line_bytes, ctx.dead_letter.sample_bytes());
    let mut seq = 0;
    loop {
        if ctx.stopping() {
            return Ok(());
        }
        let n = match framer.read_fd(&conn, ctx.read_bytes) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        let chunk =
            if n == 0 { framer.take_rest(|o| ctx.overlong(Some(&path), &o, false)) } else { framer.take_lines(|o| ctx.overlong(Some(&path), &o, false)) };
        if let Some(c) = chunk {
            let b = RawBatch {
                source: ctx.info.clone(),
                seq,
                stream,
                data: c.data,
                base_offset: None,
                path: Some(path.clone()),
                origins: Vec::new(),
                position: Position::None,
                format: ctx.format,
                frames: Vec::new(),
            };
            seq += 1;
            if !ctx.send(b) {
                return Ok(());
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

pub fn run_dgram(ctx: SourceCtx, cfg: UnixConfig, sock: UnixDatagram) -> std::io::Result<()> {
    let path: Arc<str> = cfg.path.to_string_lossy().into();
    let mut buf = vec![0u8; ctx.max_line_bytes.clamp(65_536, 16 << 20)];
    let mut pending: Vec<u8> = Vec::with_capacity(ctx.read_bytes);
    let mut first = None::<Instant>;
    let mut seq = 0;
    let flush = |pending: &mut Vec<u8>, seq: &mut u64| -> bool {
        if pending.is_empty() {
            return true;
        }
        let data = bytes::Bytes::from(std::mem::take(pending));
        let b = RawBatch {
            source: ctx.info.clone(),
            seq: *seq,
            stream: 0,
            data,
            base_offset: None,
            path: Some(path.clone()),
            origins: Vec::new(),
            position: Position::None,
            format: ctx.format,
            frames: Vec::new(),
        };
        *seq += 1;
        ctx.send(b)
    };
    while !ctx.stopping() {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let d = &buf[..n];
                pending.extend_from_slice(d);
                if !d.ends_with(b"\n") {
                    pending.push(b'\n');
                }
                first.get_or_insert_with(Instant::now);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        if pending.len() >= ctx.read_bytes || first.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
            first = None;
            if !flush(&mut pending, &mut seq) {
                return Ok(());
            }
        }
    }
    flush(&mut pending, &mut seq);
    let _ = std::fs::remove_file(&cfg.path);
    Ok(())
}
