//! Response scripts: argv only (never a shell), each argument a template substituted once;
//! the environment cleared to an allow-list plus `ALERTFLOW_ACTION_ID`, `ALERTFLOW_KEY`,
//! `ALERTFLOW_TRIGGER` and `ALERTFLOW_EVENT`; the event line on stdin; the script in a
//! process group of its own that a timeout kills whole; exit code and the start of its
//! output go into the journal.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{template, ExecConfig, Job, Outcome};

/// Longest substituted value (Linux refuses one argument over 128 KiB).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Output kept of each stream.
const KEEP: usize = 4096;

/// The argv of `j`, or why it is refused: a value that starts with `-` where it would be
/// read as an option (a whole argument), a NUL byte, or an oversize value.
pub fn argv(cfg: &ExecConfig, j: &Job) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(cfg.argv.len());
    for (i, t) in cfg.argv.iter().enumerate() {
        let mut bad = None;
        let whole_value = t.trim().starts_with('{') && !t.starts_with("{{");
        let arg = template::render_parts(t, &j.data, &mut |v| {
            if v.len() > MAX_VALUE_BYTES {
                bad = Some(format!("a value of {} bytes (at most {MAX_VALUE_BYTES})", v.len()));
            } else if v.contains('\0') {
                bad = Some("a value with a NUL byte".to_string());
            }
        })?;
        if let Some(b) = bad {
            return Err(format!("argument {i} refused: {b}"));
        }
        if i > 0 && whole_value && arg.starts_with('-') {
            return Err(format!("argument {i} refused: `{}` would be read as an option", arg.chars().take(40).collect::<String>()));
        }
        out.push(arg);
    }
    Ok(out)
}

fn keep(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if buf.len() < KEEP {
                        buf.extend_from_slice(&chunk[..n.min(KEEP - buf.len())]);
                    }
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// One run.
pub fn run(cfg: &ExecConfig, j: &Job, timeout: Duration) -> Outcome {
    let args = match argv(cfg, j) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let Some((prog, rest)) = args.split_first() else { return Outcome::Failed("no program".into()) };
    let mut cmd = Command::new(prog);
    cmd.args(rest).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    for name in &cfg.env {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    cmd.env("ALERTFLOW_ACTION_ID", &j.id).env("ALERTFLOW_KEY", &j.key).env("ALERTFLOW_TRIGGER", &j.trigger).env("ALERTFLOW_EVENT", j.on.as_str());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // A missing or non-executable program does not fix itself between attempts.
        Err(e) => return Outcome::Failed(format!("{prog}: {e}")),
    };
    let pgid = child.id() as i32;
    let out = keep(child.stdout.take().expect("piped"));
    let err = keep(child.stderr.take().expect("piped"));
    if let Some(mut stdin) = child.stdin.take() {
        let line = j.data.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(line.as_bytes());
            let _ = stdin.write_all(b"\n");
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Outcome::Retry { error: format!("{prog}: wait: {e}"), after: None },
        }
    };
    // The whole group goes: a timeout, or helpers the script left behind.
    // SAFETY: signalling a process group this call created.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.wait();
            let _ = (out.join(), err.join());
            return Outcome::Retry { error: format!("{prog}: timed out after {} ms, process group killed", timeout.as_millis()), after: None };
        }
    };
    let (stdout, stderr) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let said = |s: &str| s.trim().chars().take(400).collect::<String>();
    match status.code() {
        Some(0) => Outcome::Delivered(format!("exit 0; stdout: {}", said(&stdout))),
        Some(c) => Outcome::Retry { error: format!("exit {c}; stderr: {}", said(&stderr)), after: None },
        None => Outcome::Retry { error: "killed by a signal".into(), after: None },
    }
}
