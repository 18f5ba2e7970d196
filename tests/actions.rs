//! Actions through the binary, against a real HTTP receiver on loopback and real scripts:
//! triggers pick alerts and incidents, webhooks are retried on 5xx and hangs and given up
//! on 410, the SSRF guard keeps them off loopback unless allowed, scripts get their
//! arguments literally (or refused), kill -9 with queued and in-flight actions loses
//! nothing and sends nothing twice under two ids, dead letters are listed and replayed, and
//! the journal is a hash chain `audit verify` checks.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::hook::{Hook, Reply};
use common::redis::Redis;
use serde_json::Value;

const BASE: i64 = 1_795_000_000;

fn alert(t: i64, sid: i64, src: &str, signature: &str) -> String {
    let ts = jiff::Timestamp::from_second(BASE + t).unwrap().strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let sig = serde_json::to_string(signature).unwrap();
    format!(
        "{{\"timestamp\":\"{ts}.000000+0000\",\"flow_id\":{},\"event_type\":\"alert\",\"src_ip\":\"{src}\",\"src_port\":40000,\"dest_ip\":\"10.0.0.5\",\"dest_port\":445,\"proto\":\"TCP\",\"alert\":{{\"action\":\"allowed\",\"gid\":1,\"signature_id\":{sid},\"rev\":1,\"signature\":{sig},\"category\":\"Misc\",\"severity\":2}}}}",
        1000 + t
    )
}

/// `n` alerts of distinct signatures (each goes on as the first of its key).
fn alerts(dir: &Path, n: i64) -> PathBuf {
    let lines: Vec<String> = (0..n).map(|i| alert(i, 3_000_000 + i, "203.0.113.9", &format!("ET TEST signature {i}"))).collect();
    let p = dir.join("eve.json");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

fn config(dir: &Path, actions: &str) -> PathBuf {
    let p = dir.join("c.toml");
    std::fs::write(&p, format!("[archive]\nroot = \"{}\"\nidle_seal_ms = 100\n\n[metrics]\nlisten = \"\"\n\n{actions}", dir.join("archive").display()))
        .unwrap();
    p
}

fn replay(cfg: &Path, input: &Path) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow"))
        .args(["replay", "--config"])
        .arg(cfg)
        .arg(input)
        .env(alertflow::event::time::CLOCK_ENV, (BASE + 3600).to_string())
        // In the environment of alertflow, never in that of the scripts it runs.
        .env("ALERTFLOW_TEST_SECRET", "must-not-pass")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn list(archive: &Path) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["actions", "list", "--json", "--archive"]).arg(archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn journal(archive: &Path) -> Vec<Value> {
    std::fs::read_to_string(archive.join("_audit/actions-audit.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn webhook(name: &str, url: &str, extra: &str) -> String {
    format!("[[actions.destinations]]\nname = \"{name}\"\ntype = \"webhook\"\nurl = \"{url}\"\nallow = [\"127.0.0.1/32\"]\nbackoff_ms = 20\nmax_backoff_secs = 1\n{extra}\n")
}

fn trigger(name: &str, actions: &[&str], extra: &str) -> String {
    format!("[[actions.triggers]]\nname = \"{name}\"\non = [\"alert\"]\nactions = {actions:?}\n{extra}\n")
}

#[test]
fn webhooks_are_retried_given_up_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    let ok = Hook::start();
    ok.script(&[Reply::Status(500), Reply::Status(503)]);
    let gone = Hook::start();
    gone.answer(Reply::Status(410));
    let hang = Hook::start();
    hang.answer(Reply::Hang(Duration::from_secs(5)));
    let cfg = config(
        dir.path(),
        &[
            webhook("ok", &ok.url("/hook"), ""),
            webhook("gone", &gone.url("/gone"), ""),
            webhook("hang", &hang.url("/hang"), "timeout_ms = 200\nmax_attempts = 2"),
            trigger("first", &["ok", "gone", "hang"], "when = 'event.signature_id == 3000000'"),
        ]
        .concat(),
    );
    let input = alerts(dir.path(), 3);
    let t = Instant::now();
    replay(&cfg, &input);
    assert!(t.elapsed() < Duration::from_secs(30));

    // 500, 503, then 200: one logical notification, three requests with one id.
    let reqs = ok.requests();
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    let ids: std::collections::HashSet<_> = reqs.iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(ids.len(), 1);
    let body = reqs[2].json();
    assert_eq!(body["schema"], "alertflow.action/1");
    assert_eq!(body["event"], "alert");
    assert_eq!(body["trigger"], "first");
    assert_eq!(body["data"]["signature_id"], 3_000_000);
    assert_eq!(body["id"], reqs[2].headers["webhook-id"].as_str());
    // 410 Gone: given up at once.
    assert_eq!(gone.requests().len(), 1);
    // A receiver that hangs: timed out, tried again, given up.
    assert_eq!(hang.wait_for(2, 5).len(), 2);

    let archive = dir.path().join("archive");
    let entries = list(&archive);
    let by_action = |a: &str| entries.iter().find(|e| e["action"] == a).unwrap().clone();
    assert_eq!(by_action("ok")["status"], "delivered");
    assert_eq!(by_action("ok")["attempts"], 3);
    assert_eq!(by_action("gone")["status"], "dead");
    assert!(by_action("gone")["last"].as_str().unwrap().contains("410"));
    assert_eq!(by_action("hang")["status"], "dead");
    assert_eq!(by_action("hang")["attempts"], 2);
    let kinds: Vec<String> = journal(&archive).iter().map(|r| r["kind"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds.iter().filter(|k| *k == "action_queued").count(), 3);
    assert_eq!(kinds.iter().filter(|k| *k == "action_retry").count(), 3);

    // A second replay of the same file decides the same: nothing new goes out.
    replay(&cfg, &input);
    assert_eq!(ok.requests().len(), 3);

    // The dead letters go out again after `actions replay` and a start.
    gone.answer(Reply::Status(204));
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["actions", "replay", "--dead", "--archive"]).arg(&archive).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.path().join("empty.json"), "").unwrap();
    replay(&cfg, &dir.path().join("empty.json"));
    let g = gone.requests();
    assert_eq!(g.len(), 2);
    assert_eq!(g[0].headers["webhook-id"], g[1].headers["webhook-id"], "a replay keeps the idempotency id");
    let entries = list(&archive);
    assert_eq!(entries.iter().find(|e| e["action"] == "gone").unwrap()["status"], "delivered");

    // The journal is a hash chain: verify passes, then names an edited record.
    let verify = |a: &Path| Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["audit", "verify", "--archive"]).arg(a).output().unwrap();
    let v = verify(&archive);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(String::from_utf8_lossy(&v.stdout).contains("actions-audit.jsonl: ok"));
    let j = archive.join("_audit/actions-audit.jsonl");
    let text = std::fs::read_to_string(&j).unwrap();
    std::fs::write(&j, text.replacen("\"action\":\"gone\"", "\"action\":\"okay\"", 1)).unwrap();
    let v = verify(&archive);
    assert_eq!(v.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&v.stderr).contains("hash does not match"), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn loopback_and_metadata_addresses_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hook::start();
    let port = h.addr.port();
    let mut actions = String::new();
    for (i, host) in ["127.0.0.1", "2130706433", "0177.0.0.1", "[::ffff:127.0.0.1]", "localhost", "169.254.169.254"].iter().enumerate() {
        actions.push_str(&format!(
            "[[actions.destinations]]\nname = \"d{i}\"\ntype = \"webhook\"\nurl = \"http://{host}:{port}/x\"\ntimeout_ms = 300\nmax_attempts = 2\nbackoff_ms = 10\n\n"
        ));
    }
    actions.push_str(&trigger("all", &["d0", "d1", "d2", "d3", "d4", "d5"], ""));
    let cfg = config(dir.path(), &actions);
    replay(&cfg, &alerts(dir.path(), 2));
    assert_eq!(h.connections(), 0, "a refused address was connected to");
    let entries = list(&dir.path().join("archive"));
    assert_eq!(entries.len(), 12);
    for e in &entries {
        assert_eq!(e["status"], "dead", "{e}");
        assert!(e["last"].as_str().unwrap().contains("refused"), "{e}");
    }
}

#[test]
fn scripts_get_their_arguments_literally_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("runs");
    std::fs::create_dir(&out).unwrap();
    let helper = dir.path().join("helper.py");
    std::fs::write(
        &helper,
        "import json, os, sys\nd = {'argv': sys.argv[1:], 'env': dict(os.environ), 'stdin': sys.stdin.read()}\nopen(os.path.join(sys.argv[1], os.environ['ALERTFLOW_ACTION_ID']), 'w').write(json.dumps(d))\n",
    )
    .unwrap();
    // The interpreter itself, not a wrapper that sets variables of its own.
    let python = Command::new("python3").args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let cfg = config(
        dir.path(),
        &format!(
            "[[actions.destinations]]\nname = \"block\"\ntype = \"exec\"\ncommand = [\"{python}\", \"{}\", \"{}\", \"{{signature}}\", \"--ip={{src_ip}}\"]\nmax_attempts = 1\n\n{}",
            helper.display(),
            out.display(),
            trigger("all", &["block"], "")
        ),
    );
    let evil = ["; rm -rf /", "$(id)", "`id` && echo x", "line\nbreak", "{dest_ip}", "-rf", &"A".repeat(1 << 20)];
    let lines: Vec<String> = evil.iter().enumerate().map(|(i, s)| alert(i as i64, 3_100_000 + i as i64, "203.0.113.9", s)).collect();
    let input = dir.path().join("eve.json");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    replay(&cfg, &input);
    let runs: Vec<Value> =
        std::fs::read_dir(&out).unwrap().map(|e| serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap()).collect();
    let mut got: Vec<String> = runs.iter().map(|r| r["argv"][1].as_str().unwrap().to_string()).collect();
    got.sort();
    let mut want: Vec<String> = evil[..5].iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "each value arrives as one literal argument");
    for r in &runs {
        assert_eq!(r["argv"][2], "--ip=203.0.113.9");
        let env: Vec<&String> = r["env"].as_object().unwrap().keys().collect();
        assert!(env.iter().all(|k| k.as_str() == "PATH" || k.starts_with("ALERTFLOW_") || k.as_str() == "LC_CTYPE"), "{env:?}");
        assert!(!env.iter().any(|k| k.as_str() == "ALERTFLOW_TEST_SECRET"));
        let stdin: Value = serde_json::from_str(r["stdin"].as_str().unwrap().trim()).unwrap();
        assert_eq!(stdin["type"], "alert");
    }
    // The option-like value and the 1 MiB value are refused, never run.
    let entries = list(&dir.path().join("archive"));
    let dead: Vec<&Value> = entries.iter().filter(|e| e["status"] == "dead").collect();
    assert_eq!(dead.len(), 2, "{entries:?}");
    assert!(dead.iter().any(|e| e["last"].as_str().unwrap().contains("read as an option")));
    assert!(dead.iter().any(|e| e["last"].as_str().unwrap().contains("1048576 bytes")));
}

#[test]
fn a_timeout_kills_the_whole_process_group_and_runs_leave_no_zombies() {
    use alertflow::act::{exec, ExecConfig, Job, On, Outcome};
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let job =
        Job { entry: 1, id: "msg_1".into(), key: "k".into(), trigger: "t".into(), on: On::Alert, attempt: 1, data: std::sync::Arc::new(serde_json::json!({})) };
    // A script that leaves a helper behind and hangs.
    let cfg = ExecConfig { argv: vec!["sh".into(), "-c".into(), format!("sleep 30 & echo $! > {}; wait", pidfile.display())], env: vec!["PATH".into()] };
    let t = Instant::now();
    let out = exec::run(&cfg, &job, Duration::from_millis(300));
    assert!(matches!(&out, Outcome::Retry { error, .. } if error.contains("timed out")), "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(5));
    let helper: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{helper}")).exists() && std::fs::read_to_string(format!("/proc/{helper}/stat")).is_ok_and(|s| !s.contains(") Z ")) {
        assert!(Instant::now() < deadline, "the script's helper survived the timeout");
        std::thread::sleep(Duration::from_millis(20));
    }
    // 1,000 runs: every child reaped.
    let ok = ExecConfig { argv: vec!["true".into()], env: vec!["PATH".into()] };
    for _ in 0..1000 {
        assert!(matches!(exec::run(&ok, &job, Duration::from_secs(10)), Outcome::Delivered(_)));
    }
    let me = std::process::id();
    let mut zombies = 0;
    for task in std::fs::read_dir(format!("/proc/{me}/task")).unwrap() {
        let children = std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            // Only the runs of `true` above: other tests running beside this one have
            // children of their own that may be between exiting and being reaped.
            if std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains("(true) Z ")) {
                zombies += 1;
            }
        }
    }
    assert_eq!(zombies, 0);
}

#[test]
fn kill9_with_queued_and_inflight_actions_loses_nothing_and_repeats_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hook::start();
    // Down: every request hangs (in flight) until the restart.
    h.answer(Reply::Hang(Duration::from_secs(60)));
    let input = dir.path().join("eve.json");
    std::fs::write(&input, "").unwrap();
    let cfg = config(
        dir.path(),
        &format!(
            "[[sources]]\nname = \"eve\"\ntype = \"file\"\npath = \"{}\"\npoll_interval_ms = 50\n\n{}{}",
            input.display(),
            webhook("hook", &h.url("/h"), "timeout_ms = 30000\nconcurrency = 2"),
            trigger("all", &["hook"], "")
        ),
    );
    let start = || {
        common::Running::new(
            Command::new(env!("CARGO_BIN_EXE_alertflow"))
                .args(["run", "--config"])
                .arg(&cfg)
                .env("ALERTFLOW_LOG", "error")
                .env(alertflow::event::time::CLOCK_ENV, (BASE + 3600).to_string())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let archive = dir.path().join("archive");
    let journal_path = archive.join("_audit/actions-audit.jsonl");
    let queued = || std::fs::read_to_string(&journal_path).unwrap_or_default().lines().filter(|l| l.contains("\"action_queued\"")).count();
    let child = start();
    let lines: Vec<String> = (0..12).map(|i| alert(i, 3_200_000 + i, "203.0.113.9", &format!("ET TEST {i}"))).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while queued() < 12 || h.requests().len() < 2 {
        assert!(Instant::now() < deadline, "queued {} requests {}", queued(), h.requests().len());
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill9();
    let in_flight: Vec<String> = h.requests().iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert_eq!(in_flight.len(), 2);

    // Up again; a restart resumes the journal's queue.
    h.answer(Reply::Status(200));
    let child = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while list(&archive).iter().filter(|e| e["status"] == "delivered").count() < 12 {
        assert!(Instant::now() < deadline, "{:?}", list(&archive));
        std::thread::sleep(Duration::from_millis(100));
    }
    child.stop();
    let reqs = h.requests();
    let mut per_alert: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    for r in &reqs {
        per_alert.entry(r.json()["data"]["alert_id"].as_str().unwrap().to_string()).or_default().insert(r.headers["webhook-id"].clone());
    }
    assert_eq!(per_alert.len(), 12, "every alert notified");
    assert!(per_alert.values().all(|ids| ids.len() == 1), "one id per alert across the kill: {per_alert:?}");
    // The two in flight at the kill were sent again with their ids; the rest once.
    assert_eq!(reqs.len(), 14, "{reqs:?}");
    assert_eq!(queued(), 12, "the restart made no second entry for a key");
}

#[test]
fn streams_for_downstream_tools_carry_the_versioned_envelope() {
    let dir = tempfile::tempdir().unwrap();
    let r = Redis::start();
    let jsonl = dir.path().join("out/actions.jsonl");
    let url = r.url();
    let cfg = config(
        dir.path(),
        &format!(
            "[[actions.destinations]]\nname = \"list\"\ntype = \"redis\"\nurl = \"{url}\"\nkey = \"af:list\"\n\n\
             [[actions.destinations]]\nname = \"stream\"\ntype = \"redis\"\nmode = \"stream\"\nurl = \"{url}\"\nkey = \"af:stream\"\nmaxlen = 1000\n\n\
             [[actions.destinations]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n\n{}",
            jsonl.display(),
            trigger("all", &["list", "stream", "file"], "")
        ),
    );
    replay(&cfg, &alerts(dir.path(), 3));
    assert_eq!(r.cli(&["LLEN", "af:list"]).trim(), "3");
    assert_eq!(r.cli(&["XLEN", "af:stream"]).trim(), "3");
    let listed: Vec<Value> = r.cli(&["LRANGE", "af:list", "0", "-1"]).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let lines: Vec<Value> = std::fs::read_to_string(&jsonl).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    for v in listed.iter().chain(&lines) {
        assert_eq!(v["schema"], "alertflow.action/1");
        assert_eq!(v["event"], "alert");
        assert!(v["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(v["data"]["type"], "alert");
    }
    // The same alert has one id in every stream's envelope (the key names the destination).
    let ids: std::collections::HashSet<_> = lines.iter().map(|v| v["id"].clone()).collect();
    assert_eq!(ids.len(), 3);
    // Redis gone: deliveries are retried, then dead letters with the error.
    drop(r);
    let dir2 = tempfile::tempdir().unwrap();
    let cfg = config(
        dir2.path(),
        &format!(
            "[[actions.destinations]]\nname = \"list\"\ntype = \"redis\"\nurl = \"{url}\"\nkey = \"af:list\"\nmax_attempts = 2\nbackoff_ms = 10\ntimeout_ms = 500\n\n{}",
            trigger("all", &["list"], "")
        ),
    );
    replay(&cfg, &alerts(dir2.path(), 1));
    let entries = list(&dir2.path().join("archive"));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["status"], "dead");
    assert_eq!(entries[0]["attempts"], 2);
}

#[test]
fn rate_limits_queue_an_alert_storm_instead_of_failing_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hook::start();
    let cfg = config(
        dir.path(),
        &[
            "[actions]\ndrain_secs = 2\n\n".to_string(),
            webhook("paced", &h.url("/paced"), "rate_per_minute = 6"),
            webhook("per-ip", &h.url("/per-ip"), "per_key = \"{src_ip}\"\nper_key_interval_secs = 3600"),
            trigger("storm", &["paced", "per-ip"], ""),
        ]
        .concat(),
    );
    replay(&cfg, &alerts(dir.path(), 30));
    let reqs = h.requests();
    let on = |p: &str| reqs.iter().filter(|r| r.path == p).count();
    // A full bucket (6) goes at once, then one each 10 s: nothing more within the 2 s drain.
    assert_eq!(on("/paced"), 6);
    // One block per address an hour: the first goes, the rest wait their turn.
    assert_eq!(on("/per-ip"), 1);
    let entries = list(&dir.path().join("archive"));
    let count = |a: &str, s: &str| entries.iter().filter(|e| e["action"] == a && e["status"] == s).count();
    assert_eq!((count("paced", "delivered"), count("paced", "pending")), (6, 24));
    assert_eq!((count("per-ip", "delivered"), count("per-ip", "pending")), (1, 29));
    assert_eq!(entries.iter().filter(|e| e["status"] == "dead").count(), 0, "nothing failed for being limited");
}

#[test]
fn a_digest_trigger_sends_what_it_held_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Hook::start();
    let cfg = config(dir.path(), &[webhook("chat", &h.url("/chat"), "format = \"slack\""), trigger("daily", &["chat"], "digest_minutes = 60")].concat());
    replay(&cfg, &alerts(dir.path(), 5));
    // The end of the replay sends the digest it held.
    let reqs = h.requests();
    assert_eq!(reqs.len(), 1, "{reqs:?}");
    let text = reqs[0].json()["text"].as_str().unwrap().to_string();
    assert!(text.starts_with("alertflow digest (daily): 5 events"), "{text}");
    assert_eq!(text.matches("ET TEST signature").count(), 5, "{text}");
    let entries = list(&dir.path().join("archive"));
    assert_eq!(entries.iter().filter(|e| e["status"] == "digested").count(), 5);
    assert_eq!(entries.iter().filter(|e| e["event"] == "digest" && e["status"] == "delivered").count(), 1);
    // Nothing is held any more: a second start sends no second digest.
    std::fs::write(dir.path().join("empty.json"), "").unwrap();
    replay(&cfg, &dir.path().join("empty.json"));
    assert_eq!(h.requests().len(), 1);
}
