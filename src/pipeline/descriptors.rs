//! Open-file descriptors: the soft limit is raised to the hard limit at start, and the
//! connection caps of the listeners are fitted into what is left after a reserve for the
//! archive (segment writers, snapshots, output files), file sources and the process, so a
//! flood of idle connections is refused at accept instead of making the archive fail on
//! its next segment with "Too many open files".

use crate::config::{Config, SourceKind};

/// Descriptors kept for the process itself: runtime, logs, metrics, dead letters, outputs.
const BASE_RESERVE: u64 = 128;

/// The soft `RLIMIT_NOFILE` raised to the hard limit; returns the limit now in force.
pub fn raise_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            return 1024;
        }
        if l.rlim_cur < l.rlim_max {
            let raised = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return l.rlim_max;
            }
        }
        l.rlim_cur
    }
}

/// Descriptors the archive and the file sources may hold at once.
pub fn reserve(cfg: &Config) -> u64 {
    let lanes = cfg.archive.writer_threads.max(1) as u64;
    // Each lane may hold a writer per open partition for each table, plus a margin for
    // the partitions a batch opens before the commit that closes them.
    let archive = lanes * 3 * (cfg.archive.max_open_partitions as u64 + 16);
    let files: u64 = cfg.sources.iter().map(|s| if let SourceKind::File(f) = &s.kind { f.max_open_files as u64 } else { 0 }).sum();
    BASE_RESERVE + archive + files
}

/// Fits the listeners' `max_connections` into `limit` − [`reserve`], shared evenly; a cap
/// lowered is logged with the numbers. Returns how many caps were lowered.
pub fn fit_listeners(cfg: &mut Config, limit: u64) -> usize {
    let reserve = reserve(cfg);
    let listeners = cfg.sources.iter().filter(|s| matches!(s.kind, SourceKind::SyslogTcp(_) | SourceKind::UnixStream(_))).count() as u64;
    if listeners == 0 {
        return 0;
    }
    let each = (limit.saturating_sub(reserve) / listeners).max(1) as usize;
    let mut lowered = 0;
    for s in &mut cfg.sources {
        let cap = match &mut s.kind {
            SourceKind::SyslogTcp(t) => &mut t.max_connections,
            SourceKind::UnixStream(u) => &mut u.max_connections,
            _ => continue,
        };
        if *cap > each {
            tracing::warn!(source = %s.name, configured = *cap, now = each, open_files_limit = limit, reserved = reserve, "max_connections lowered to fit the open-file limit");
            *cap = each;
            lowered += 1;
        }
    }
    lowered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listener_caps_fit_under_the_limit_with_the_archive_reserve() {
        let mut cfg = Config::parse(
            "[[sources]]\nname = \"t\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:0\"\n\n[[sources]]\nname = \"u\"\ntype = \"unix_stream\"\npath = \"/tmp/x.sock\"\nmax_connections = 10\n",
        )
        .unwrap();
        let r = reserve(&cfg);
        assert!(r > BASE_RESERVE);
        // A 1,024 limit: the TCP default of 1,024 does not fit beside the archive.
        assert_eq!(fit_listeners(&mut cfg, 1024), 1);
        let caps: Vec<usize> = cfg
            .sources
            .iter()
            .map(|s| match &s.kind {
                SourceKind::SyslogTcp(t) => t.max_connections,
                SourceKind::UnixStream(u) => u.max_connections,
                _ => 0,
            })
            .collect();
        assert_eq!(caps, [((1024 - r) / 2) as usize, 10]);
        assert!(caps.iter().sum::<usize>() as u64 + r <= 1024);
        // A generous limit changes nothing.
        assert_eq!(fit_listeners(&mut cfg, 1 << 20), 0);
        assert!(raise_limit() >= 1);
    }
}
