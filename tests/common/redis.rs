//! A `redis-server` of the test's own on a free loopback port, stopped on drop.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let r = Redis { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while r.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        r
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Pushes many entries in one pipelined call.
    pub fn pipe(&self, commands: &str) {
        let mut c = Command::new("redis-cli").args(["-p", &self.port.to_string(), "--pipe"]).stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        c.stdin.take().unwrap().write_all(commands.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
