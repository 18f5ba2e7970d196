//! Network syslog listeners: UDP (RFC 5426, one message per datagram) and TCP or TLS
//! (RFC 6587 framing, RFC 5425 for TLS).
//!
//! * UDP runs on its own thread; datagrams are gathered into a batch until `read_bytes`
//!   or 100 ms. The socket's receive buffer is set to `recv_buffer_bytes`, and the
//!   kernel's count of datagrams it dropped for lack of room (`/proc/net/udp*`) is
//!   published as `alertflow_source_kernel_drops_total`.
//! * TCP/TLS runs on a small tokio runtime of its own: one task per connection, at most
//!   `max_connections` at once and `max_connections_per_client` from one address (the
//!   rest are closed at accept and counted by reason), so one host's flood of idle
//!   connections cannot keep the other senders out; a TLS
//!   handshake deadline, an idle timeout, and a frame timeout (a message must complete
//!   within `frame_timeout` of its first byte, so a 1 B/s sender cannot hold a slot).
//!   Frames longer than `max_frame_bytes` are skipped as they arrive and recorded as
//!   `too_long` rejections.
//! * The connections of one listener hand their framed messages to one coalescer, which
//!   gathers them (for up to 20 ms, or `read_bytes`) into shared batches: a thousand
//!   senders of one message each cost a few batches, not a thousand. Each batch keeps the
//!   path (`tcp://peer`) of every run of messages, so dead letters still name their sender.
//!
//! These are push sources: batches carry no position; `overflow = "drop"` (the default)
//! counts what the pipeline had no room for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use super::octet::{Frames, OctetFramer, Oversize};
use super::{Format, Position, RawBatch, SourceCtx, SourceInfo};
use crate::deadletter::LineOrigin;
use crate::event::reject::RejectReason;
use crate::metrics as m;

#[derive(Debug, Clone)]
pub struct UdpConfig {
    pub listen: SocketAddr,
    /// SO_RCVBUF to ask for; 0 keeps the system default.
    pub recv_buffer_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
    pub handshake_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct TcpConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    /// Connections one client address may hold at once.
    pub max_connections_per_client: usize,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_frame_bytes: usize,
    pub tls: Option<TlsConfig>,
}

const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How long the coalescer waits for more connections' messages before sending a batch.
const LINGER: Duration = Duration::from_millis(20);
/// Pieces waiting for the coalescer; a connection with more waits (each is at most
/// `read_bytes` plus one frame).
const COALESCE_PIECES: usize = 16;

fn frames_batch(ctx: &SourceCtx, frames: Frames, seq: u64, stream: u64, path: &Arc<str>) -> RawBatch {
    RawBatch {
        source: ctx.info.clone(),
        seq,
        stream,
        data: bytes::Bytes::from(frames.data),
        base_offset: None,
        path: Some(path.clone()),
        origins: Vec::new(),
        position: Position::None,
        format: ctx.format,
        frames: frames.ends,
    }
}

fn report_oversize(ctx: &SourceCtx, path: &str, o: &Oversize, max: usize) {
    let reason = if o.truncated { RejectReason::Truncated } else { RejectReason::TooLong };
    metrics::counter!(m::REJECTED_LINES, "reason" => reason.as_str()).increment(1);
    if !o.truncated {
        metrics::counter!(m::SOURCE_OVERSIZE_FRAMES, "source" => ctx.info.name.to_string()).increment(1);
    }
    ctx.stats.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    let origin = LineOrigin { source: &ctx.info.name, path: Some(path), offset: None };
    let len = if o.truncated { o.sample.len() as u64 } else { o.declared.unwrap_or(max as u64 + 1) };
    ctx.dead_letter.record(origin, reason, &o.sample, len);
}

/// Binds the UDP socket (at start, so errors surface before the pipeline runs).
pub fn bind_udp(cfg: &UdpConfig) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(cfg.listen), Type::DGRAM, Some(Protocol::UDP))?;
    if cfg.recv_buffer_bytes > 0 {
        // The kernel caps this at net.core.rmem_max; what it grants is logged.
        let _ = s.set_recv_buffer_size(cfg.recv_buffer_bytes);
    }
    s.bind(&cfg.listen.into()).map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on udp {}: {e}", cfg.listen)))?;
    s.set_read_timeout(Some(FLUSH_EVERY))?;
    let granted = s.recv_buffer_size().unwrap_or(0);
    tracing::info!(listen = %cfg.listen, recv_buffer_bytes = granted, "syslog udp listening");
    Ok(s.into())
}

/// The kernel's drop counter of the UDP socket bound to `port` (`/proc/net/udp{,6}`).
fn kernel_udp_drops(port: u16) -> Option<u64> {
    let mut total = None;
    for f in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(f) else { continue };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                if let Some(d) = cols.last().and_then(|d| d.parse::<u64>().ok()) {
                    *total.get_or_insert(0) += d;
                }
            }
        }
    }
    total
}

pub fn run_udp(ctx: SourceCtx, sock: std::net::UdpSocket) -> std::io::Result<()> {
    let local = sock.local_addr()?;
    let path: Arc<str> = format!("udp://{local}").into();
    let mut buf = vec![0u8; 65_536];
    let mut pending = Frames::default();
    let mut first = None::<Instant>;
    let mut seq = 0;
    let mut drops_seen = kernel_udp_drops(local.port()).unwrap_or(0);
    let mut drops_checked = Instant::now();
    let name = ctx.info.name.to_string();
    while !ctx.stopping() {
        match sock.recv_from(&mut buf) {
            Ok((n, _peer)) => {
                let mut d = &buf[..n];
                while let [rest @ .., b'\n' | b'\0'] = d {
                    d = rest;
                }
                pending.data.extend_from_slice(d);
                pending.ends.push(pending.data.len() as u32);
                first.get_or_insert_with(Instant::now);
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(e) => return Err(e),
        }
        if pending.data.len() >= ctx.read_bytes || first.is_some_and(|t| t.elapsed() >= FLUSH_EVERY) {
            first = None;
            if !ctx.send(frames_batch(&ctx, pending.take(), seq, 0, &path)) {
                return Ok(());
            }
            seq += 1;
        }
        if drops_checked.elapsed() >= Duration::from_secs(1) {
            drops_checked = Instant::now();
            if let Some(d) = kernel_udp_drops(local.port()) {
                if d > drops_seen {
                    metrics::counter!(m::SOURCE_KERNEL_DROPS, "source" => name.clone()).increment(d - drops_seen);
                }
                drops_seen = d;
            }
        }
    }
    if !pending.is_empty() {
        ctx.send(frames_batch(&ctx, pending.take(), seq, 0, &path));
    }
    Ok(())
}

/// Binds the TCP listener and loads the TLS material (at start, so errors surface early).
pub fn bind_tcp(cfg: &TcpConfig) -> std::io::Result<(std::net::TcpListener, Option<tokio_rustls::TlsAcceptor>)> {
    let tls = match &cfg.tls {
        Some(t) => Some(tls_acceptor(t)?),
        None => None,
    };
    let l = std::net::TcpListener::bind(cfg.listen).map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on tcp {}: {e}", cfg.listen)))?;
    l.set_nonblocking(true)?;
    Ok((l, tls))
}

/// Loads the certificate, key and client CA of `t` into an acceptor (also how the
/// configuration check finds a missing or broken file before anything starts).
pub fn tls_acceptor(t: &TlsConfig) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid =
        |what: &str, p: &PathBuf, e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} {}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert)
        .map_err(|e| invalid("certificate", &t.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("certificate", &t.cert, &e))?;
    if certs.is_empty() {
        return Err(invalid("certificate", &t.cert, &"no certificate in file"));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key).map_err(|e| invalid("key", &t.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| invalid("tls", &t.cert, &e))?;
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).map_err(|e| invalid("client CA", ca, &e))? {
                roots.add(c.map_err(|e| invalid("client CA", ca, &e))?).map_err(|e| invalid("client CA", ca, &e))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(|e| invalid("client CA", ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|e| invalid("certificate", &t.cert, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// One connection's framed messages on their way to the listener's coalescer.
struct Piece {
    frames: Frames,
    path: Arc<str>,
}

/// Messages of several connections in one batch, with the path of each run.
struct Coalesced {
    data: Vec<u8>,
    ends: Vec<u32>,
    origins: Vec<(u32, Arc<str>)>,
}

impl Coalesced {
    fn new(first: Piece) -> Self {
        let end = first.frames.data.len() as u32;
        Coalesced { data: first.frames.data, ends: first.frames.ends, origins: vec![(end, first.path)] }
    }

    fn push(&mut self, p: Piece) {
        let base = self.data.len() as u32;
        self.data.extend_from_slice(&p.frames.data);
        self.ends.extend(p.frames.ends.iter().map(|e| e + base));
        let end = self.data.len() as u32;
        match self.origins.last_mut() {
            Some((e, path)) if *path == p.path => *e = end,
            _ => self.origins.push((end, p.path)),
        }
    }

    fn into_batch(self, source: Arc<SourceInfo>, format: Format, seq: u64, stream: u64) -> RawBatch {
        // One peer: the batch's path says it all.
        let (path, origins) = match <[_; 1]>::try_from(self.origins) {
            Ok([(_, p)]) => (p, Vec::new()),
            Err(o) => (o[o.len() - 1].1.clone(), o),
        };
        RawBatch {
            source,
            seq,
            stream,
            data: bytes::Bytes::from(self.data),
            base_offset: None,
            path: Some(path),
            origins,
            position: Position::None,
            format,
            frames: self.ends,
        }
    }
}

/// Gathers the connections' pieces into shared batches, in the order they arrive (so each
/// connection's messages stay in order), until `closed` and nothing is left.
async fn coalesce(shared: Arc<Shared>, mut rx: tokio::sync::mpsc::Receiver<Piece>) {
    let ctx = &shared.ctx;
    let stream = shared.streams.fetch_add(1, Ordering::Relaxed);
    let mut seq = 0u64;
    loop {
        let first = tokio::select! {
            p = rx.recv() => p,
            _ = tokio::time::sleep(FLUSH_EVERY) => {
                if shared.closed.load(Ordering::Acquire) && rx.is_empty() {
                    return;
                }
                continue;
            }
        };
        let Some(first) = first else { return };
        let mut batch = Coalesced::new(first);
        let linger = tokio::time::sleep(LINGER);
        tokio::pin!(linger);
        while batch.data.len() < ctx.read_bytes {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => batch.push(p),
                    None => break,
                },
                _ = &mut linger => break,
            }
        }
        let raw = batch.into_batch(ctx.info.clone(), ctx.format, seq, stream);
        seq += 1;
        if !ctx.send_async(raw).await {
            return;
        }
    }
}

struct Shared {
    ctx: SourceCtx,
    /// To the coalescer.
    pieces: tokio::sync::mpsc::Sender<Piece>,
    /// Set once the connections are gone: the coalescer sends what is left and ends.
    closed: AtomicBool,
    cfg: TcpConfig,
    active: AtomicUsize,
    /// Open connections per client address.
    per_client: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    streams: AtomicU64,
    name: String,
}

impl Shared {
    /// Takes a slot for `ip` unless it holds `max_connections_per_client` already.
    fn take_client_slot(&self, ip: std::net::IpAddr) -> bool {
        let mut m = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if *n >= self.cfg.max_connections_per_client {
            return false;
        }
        *n += 1;
        true
    }

    fn free_client_slot(&self, ip: std::net::IpAddr) {
        let mut m = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

pub fn run_tcp(ctx: SourceCtx, cfg: TcpConfig, listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().thread_name(format!("syslog-{}", ctx.info.name)).build()?;
    let name = ctx.info.name.to_string();
    let (pieces, rx) = tokio::sync::mpsc::channel(COALESCE_PIECES);
    let shared = Arc::new(Shared {
        ctx,
        pieces,
        closed: AtomicBool::new(false),
        cfg,
        active: AtomicUsize::new(0),
        per_client: Default::default(),
        streams: AtomicU64::new(0),
        name,
    });
    let coalescer = rt.spawn(coalesce(shared.clone(), rx));
    let res = rt.block_on(accept_loop(shared.clone(), listener, tls));
    // Let connection tasks flush what they framed, then the coalescer, then stop them.
    let deadline = Instant::now() + Duration::from_secs(2);
    while shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    shared.closed.store(true, Ordering::Release);
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), coalescer).await });
    rt.shutdown_timeout(Duration::from_millis(100));
    res
}

async fn accept_loop(shared: Arc<Shared>, listener: std::net::TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(source = %shared.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tick.tick() => {
                if shared.ctx.stopping() {
                    return Ok(());
                }
                continue;
            }
        };
        if shared.active.load(Ordering::Acquire) >= shared.cfg.max_connections {
            metrics::counter!(m::SOURCE_CONNECTIONS_REFUSED, "source" => shared.name.clone(), "reason" => "max_connections").increment(1);
            tracing::debug!(source = %shared.name, %peer, reason = "max_connections", "client refused");
            drop(conn);
            continue;
        }
        if !shared.take_client_slot(peer.ip()) {
            metrics::counter!(m::SOURCE_CONNECTIONS_REFUSED, "source" => shared.name.clone(), "reason" => "per_client").increment(1);
            tracing::debug!(source = %shared.name, %peer, reason = "per_client", "client refused");
            drop(conn);
            continue;
        }
        let active = shared.active.fetch_add(1, Ordering::AcqRel) + 1;
        shared.ctx.health.open.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(source = %shared.name, %peer, active, "client connected");
        // Active before counted, so a scrape that counts a connection shows it active too.
        metrics::gauge!(m::SOURCE_ACTIVE_CONNECTIONS, "source" => shared.name.clone()).increment(1.0);
        metrics::counter!(m::SOURCE_CONNECTIONS, "source" => shared.name.clone()).increment(1);
        let _ = conn.set_nodelay(true);
        let (shared2, tls) = (shared.clone(), tls.clone());
        tokio::spawn(async move {
            let path: Arc<str> = format!("{}://{peer}", if tls.is_some() { "tls" } else { "tcp" }).into();
            let res = match tls {
                None => read_conn(&shared2, conn, &path).await,
                Some(acceptor) => {
                    match tokio::time::timeout(shared2.cfg.tls.as_ref().map(|t| t.handshake_timeout).unwrap_or(Duration::from_secs(10)), acceptor.accept(conn))
                        .await
                    {
                        Ok(Ok(s)) => read_conn(&shared2, s, &path).await,
                        Ok(Err(e)) => {
                            metrics::counter!(m::SOURCE_TLS_FAILURES, "source" => shared2.name.clone()).increment(1);
                            Err(e)
                        }
                        Err(_) => {
                            metrics::counter!(m::SOURCE_TIMEOUTS, "source" => shared2.name.clone(), "kind" => "handshake").increment(1);
                            Ok(())
                        }
                    }
                }
            };
            match res {
                Ok(()) => tracing::debug!(source = %shared2.name, %peer, "client disconnected"),
                Err(e) => tracing::debug!(source = %shared2.name, %peer, error = %e, "client disconnected with an error"),
            }
            // The slots are free before the gauge says so: a client that sees a connection
            // gone can open another in its place.
            shared2.free_client_slot(peer.ip());
            shared2.active.fetch_sub(1, Ordering::AcqRel);
            shared2.ctx.health.open.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!(m::SOURCE_ACTIVE_CONNECTIONS, "source" => shared2.name.clone()).decrement(1.0);
        });
    }
}

async fn read_conn<S: AsyncRead + Unpin>(shared: &Shared, mut s: S, path: &Arc<str>) -> std::io::Result<()> {
    let ctx = &shared.ctx;
    let cfg = &shared.cfg;
    let mut framer = OctetFramer::new(cfg.max_frame_bytes, ctx.dead_letter.sample_bytes());
    let mut frames = Frames::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut frame_started: Option<Instant> = None;
    let mut last_flush = Instant::now();
    let poll = Duration::from_millis(100);
    let mut idle = Duration::ZERO;
    loop {
        let read = tokio::time::timeout(poll, s.read(&mut buf)).await;
        let n = match read {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                flush(shared, &mut frames, path).await;
                return Err(e);
            }
            Err(_) => {
                idle += poll;
                if ctx.stopping() {
                    break;
                }
                let timeout = if frame_started.is_some_and(|t| t.elapsed() >= cfg.frame_timeout) {
                    Some("frame")
                } else if idle >= cfg.idle_timeout {
                    Some("idle")
                } else {
                    None
                };
                if let Some(kind) = timeout {
                    metrics::counter!(m::SOURCE_TIMEOUTS, "source" => shared.name.clone(), "kind" => kind).increment(1);
                    framer.abandon(&mut |o| report_oversize(ctx, path, &o, cfg.max_frame_bytes));
                    flush(shared, &mut frames, path).await;
                    return Ok(());
                }
                if !frames.is_empty() && !flush(shared, &mut frames, path).await {
                    return Ok(());
                }
                continue;
            }
        };
        if n == 0 {
            break;
        }
        idle = Duration::ZERO;
        framer.push(&buf[..n], &mut frames, &mut |o| report_oversize(ctx, path, &o, cfg.max_frame_bytes));
        frame_started = match (framer.mid_frame(), frame_started) {
            (false, _) => None,
            (true, Some(t)) => Some(t),
            (true, None) => Some(Instant::now()),
        };
        if frame_started.is_some_and(|t| t.elapsed() >= cfg.frame_timeout) {
            metrics::counter!(m::SOURCE_TIMEOUTS, "source" => shared.name.clone(), "kind" => "frame").increment(1);
            framer.abandon(&mut |o| report_oversize(ctx, path, &o, cfg.max_frame_bytes));
            flush(shared, &mut frames, path).await;
            return Ok(());
        }
        if (frames.data.len() >= ctx.read_bytes || last_flush.elapsed() >= poll) && !frames.is_empty() {
            last_flush = Instant::now();
            if !flush(shared, &mut frames, path).await {
                return Ok(());
            }
        }
        if ctx.stopping() {
            break;
        }
    }
    framer.finish(&mut frames, &mut |o| report_oversize(ctx, path, &o, cfg.max_frame_bytes));
    flush(shared, &mut frames, path).await;
    Ok(())
}

/// Hands the connection's framed messages to the coalescer; false once it is gone.
async fn flush(shared: &Shared, frames: &mut Frames, path: &Arc<str>) -> bool {
    if frames.is_empty() {
        return true;
    }
    shared.pieces.send(Piece { frames: frames.take(), path: path.clone() }).await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(msgs: &[&str], path: &Arc<str>) -> Piece {
        let mut frames = Frames::default();
        for m in msgs {
            frames.data.extend_from_slice(m.as_bytes());
            frames.ends.push(frames.data.len() as u32);
        }
        Piece { frames, path: path.clone() }
    }

    #[test]
    fn coalesced_batches_keep_each_message_and_its_sender() {
        let (a, b): (Arc<str>, Arc<str>) = ("tcp://a".into(), "tcp://b".into());
        let mut c = Coalesced::new(piece(&["a1", "a22"], &a));
        c.push(piece(&["a333"], &a));
        c.push(piece(&["b1"], &b));
        c.push(piece(&["a4", "a55"], &a));
        assert_eq!(c.origins.iter().map(|(e, p)| (*e, &**p)).collect::<Vec<_>>(), [(9, "tcp://a"), (11, "tcp://b"), (16, "tcp://a")]);
        let info = Arc::new(SourceInfo { id: 0, name: "tcp".into(), zone: None });
        let raw = c.into_batch(info.clone(), Format::Syslog, 3, 9);
        let got: Vec<(&str, Option<&str>)> = raw.messages().map(|(off, m)| (std::str::from_utf8(m).unwrap(), raw.path_at(off))).collect();
        assert_eq!(
            got,
            [
                ("a1", Some("tcp://a")),
                ("a22", Some("tcp://a")),
                ("a333", Some("tcp://a")),
                ("b1", Some("tcp://b")),
                ("a4", Some("tcp://a")),
                ("a55", Some("tcp://a"))
            ]
        );
        // One sender: no per-run paths, the batch's path names it.
        let one = Coalesced::new(piece(&["x"], &b)).into_batch(info, Format::Syslog, 0, 0);
        assert!(one.origins.is_empty());
        assert_eq!(one.path_at(0), Some("tcp://b"));
    }
}
