//! Waking a file source when a followed file changes (Linux inotify), instead of sleeping
//! out its poll interval: a line appended is read within a millisecond or two. The poll
//! interval stays the upper bound (and the only mechanism where inotify is unavailable or
//! out of watches); new files and rotations are still found by the periodic scan.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Wake {
    fd: Option<i32>,
    watches: HashMap<PathBuf, i32>,
}

impl Wake {
    pub fn new() -> Wake {
        // SAFETY: plain syscall; a negative answer means no inotify.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        Wake { fd: (fd >= 0).then_some(fd), watches: HashMap::new() }
    }

    /// Watches exactly `paths` (the files open now).
    pub fn watch<'a>(&mut self, paths: impl Iterator<Item = &'a Path>) {
        let Some(fd) = self.fd else { return };
        let want: Vec<&Path> = paths.collect();
        self.watches.retain(|p, wd| {
            let keep = want.contains(&p.as_path());
            if !keep {
                // SAFETY: a watch this descriptor made.
                unsafe { libc::inotify_rm_watch(fd, *wd) };
            }
            keep
        });
        for p in want {
            if self.watches.contains_key(p) {
                continue;
            }
            let Ok(c) = CString::new(p.as_os_str().as_bytes()) else { continue };
            // SAFETY: a valid C string; the mask asks for content changes.
            let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MODIFY | libc::IN_CLOSE_WRITE | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF) };
            if wd >= 0 {
                self.watches.insert(p.to_path_buf(), wd);
            }
        }
    }

    /// Waits until a watched file changes or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        let Some(fd) = self.fd else {
            std::thread::sleep(timeout);
            return;
        };
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one pollfd, owned here.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
        if n > 0 {
            // Drain the events: which file changed does not matter, every open file is read.
            let mut buf = [0u8; 4096];
            // SAFETY: reading into a buffer of its length from a non-blocking descriptor.
            while unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        }
    }
}

impl Default for Wake {
    fn default() -> Self {
        Wake::new()
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if let Some(fd) = self.fd {
            // SAFETY: the descriptor this value owns.
            unsafe { libc::close(fd) };
        }
    }
}
