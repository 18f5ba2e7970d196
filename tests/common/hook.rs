//! A real HTTP/1.1 receiver on a loopback port for webhook tests: it records every request
//! (path, headers, body) and answers from a script (status codes, or hanging).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Status(u16),
    /// Reads the request, then answers nothing for this long.
    Hang(Duration),
}

pub struct Hook {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    script: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    connections: Arc<AtomicUsize>,
}

impl Hook {
    /// Answers 200 unless scripted otherwise.
    pub fn start() -> Hook {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = Hook { addr, requests: Arc::default(), script: Arc::default(), default: Arc::new(Mutex::new(Reply::Status(200))), connections: Arc::default() };
        let (reqs, script, default, conns) = (h.requests.clone(), h.script.clone(), h.default.clone(), h.connections.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                conns.fetch_add(1, Ordering::SeqCst);
                let (reqs, script, default) = (reqs.clone(), script.clone(), default.clone());
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut first = String::new();
                    if r.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = first.split(' ').nth(1).unwrap_or_default().to_string();
                    let mut headers = HashMap::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                        }
                    }
                    let n: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    let mut body = vec![0; n];
                    let _ = r.read_exact(&mut body);
                    let reply = script.lock().unwrap().pop_front().unwrap_or(*default.lock().unwrap());
                    reqs.lock().unwrap().push(Request { path, headers, body: String::from_utf8_lossy(&body).into_owned() });
                    let code = match reply {
                        Reply::Status(c) => c,
                        Reply::Hang(d) => {
                            std::thread::sleep(d);
                            return;
                        }
                    };
                    let _ = write!(s, "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
                });
            }
        });
        h
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next answers, in order.
    pub fn script(&self, replies: &[Reply]) {
        self.script.lock().unwrap().extend(replies.iter().copied());
    }

    /// The answer once the script is used up.
    pub fn answer(&self, r: Reply) {
        *self.default.lock().unwrap() = r;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests came (at most `secs`).
    pub fn wait_for(&self, n: usize, secs: u64) -> Vec<Request> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let r = self.requests();
            if r.len() >= n || std::time::Instant::now() > deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
