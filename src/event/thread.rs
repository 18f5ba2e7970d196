//! Scheduling of the pipeline's own threads.
//!
//! On a machine whose cores are all busy, bulk work that nobody waits for line by line
//! (encoding and compressing Parquet segments, compaction, writing snapshots) should not
//! take the core from the path an alert travels (parse, state, actions): its work is
//! queued and bounded and catches up in the gaps. Linux lets one thread lower its own
//! priority (`setpriority` on its thread id); elsewhere this does nothing.

/// Nice value of background threads (0 normal, 19 lowest).
pub const BACKGROUND_NICE: i32 = 5;

/// Lowers the calling thread's priority to [`BACKGROUND_NICE`] (best effort: a failure
/// leaves it as it was).
pub fn run_in_background() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority take no pointers; they act on the calling thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICE);
    }
}
