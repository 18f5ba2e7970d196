//! Invalid configurations: every problem is reported at once, with its dotted path, its
//! line and an exact message. Also `alertflow check-config` exit codes.

use std::process::Command;

use alertflow::config::Config;

fn errors(toml: &str) -> Vec<String> {
    match Config::parse(toml) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn table_of_invalid_configs() {
    let cases: &[(&str, &[&str])] = &[
        ("[archive]\nzstd_level = 30\n", &["line 2: archive.zstd_level: 30 is out of range; expected 1 to 22"]),
        ("[archive]\nraw_codec = \"snappy\"\n", &["line 2: archive.raw_codec: `snappy` is not a codec; expected one of: zstd, lz4, none"]),
        ("[archive]\nroot = 5\n", &["line 2: archive.root: expected a string, found an integer"]),
        ("[archive]\nwriter_threads = \"two\"\n", &["line 2: archive.writer_threads: expected an integer, found a string"]),
        ("archive = 3\n", &["line 1: archive: expected a table, found an integer"]),
        ("[pipeline]\nmax_line_bytes = 10\n", &["line 2: pipeline.max_line_bytes: 10 is out of range; expected 64 to 1073741824"]),
        ("[pipeline]\nparse_workers = -1\n", &["line 2: pipeline.parse_workers: -1 is out of range; expected 0 to 256"]),
        ("[metrics]\nlisten = \"localhost\"\n", &["line 2: metrics.listen: `localhost` is not an address:port (use \"\" to turn the listener off)"]),
        ("[dead_letter]\nenabled = \"yes\"\n", &["line 2: dead_letter.enabled: expected a boolean, found a string"]),
        ("[[sources]]\ntype = \"file\"\npath = \"/x\"\n", &["line 1: sources[0].name: missing required key"]),
        ("[[sources]]\nname = \"a\"\n", &["line 1: sources[0].type: missing required key"]),
        ("[[sources]]\nname = \"a\"\ntype = \"syslog_udp\"\nlisten = \"514\"\n", &["line 4: sources[0].listen: `514` is not an address:port such as \"0.0.0.0:514\""]),
        ("[[sources]]\nname = \"a\"\ntype = \"redis\"\nkey = \"k\"\nmode = \"queue\"\n", &["line 5: sources[0].mode: `queue` is not one of: list, channel, stream"]),
        ("[[sources]]\nname = \"a\"\ntype = \"file\"\npath = \"x\"\nformat = \"csv\"\n", &["line 5: sources[0].format: `csv` is not one of: eve, fast, syslog, auto"]),
        ("[[sources]]\nname = \"a\"\ntype = \"stdin\"\ntimezone = \"Mars/Olympus\"\n", &["line 4: sources[0].timezone: `Mars/Olympus` is not a time zone name such as \"Europe/Berlin\" or \"UTC\""]),
        ("[[state.rules]]\nname = \"r\"\ntype = \"temporal\"\nselectors = [\"nope\"]\n", &["line 4: state.rules[0].selectors: no selector named `nope` in [[state.selectors]]", "line 4: state.rules[0].selectors: a temporal rule needs at least two selectors"]),
        ("[state.dedup]\nkey = [\"sensor\", \"colour\"]\n", &["line 2: state.dedup.key: `colour` is not a field; expected one of: sensor, signature_id, category, severity, src_ip, src_port, dest_ip, dest_port, proto, host, signature, dns_query, http_hostname, http_url, http_user_agent, http_status, tls_sni, tls_ja3, file_name, file_sha256, file_md5, file_sha1, flow_pkts_toserver, flow_pkts_toclient, flow_bytes_toserver, flow_bytes_toclient"]),
        ("[state]\nsigma = [\"/nonexistent/alertflow/*.yml\"]\n", &["line 2: state.sigma: `/nonexistent/alertflow/*.yml` matches no file"]),
        ("[[sources]]\nname = \"a\"\ntype = \"kafka\"\n", &["line 3: sources[0].type: unknown source type `kafka`; expected one of: file, stdin, unix_stream, unix_dgram, syslog_udp, syslog_tcp, redis"]),
        ("[[sources]]\nname = \"a b\"\ntype = \"stdin\"\n", &["line 2: sources[0].name: `a b` is not a valid name (letters, digits, `_`, `-`, `.`)"]),
        ("[[sources]]\nname = \"a\"\ntype = \"file\"\n", &["line 1: sources[0].path: a file source needs `path` (a file name or glob) or `paths`"]),
        ("[[sources]]\nname = \"a\"\ntype = \"file\"\npath = \"/x\"\nstart_at = \"middle\"\n", &["line 5: sources[0].start_at: `middle` is not one of: beginning, end"]),
        ("[[sources]]\nname = \"a\"\ntype = \"file\"\npath = \"/x\"\noverflow = \"spill\"\n", &["line 5: sources[0].overflow: `spill` is not one of: block, drop"]),
        ("[[sources]]\nname = \"a\"\ntype = \"unix_stream\"\npath = \"/x.sock\"\nsocket_mode = \"999\"\n", &["line 5: sources[0].socket_mode: `999` is not an octal file mode such as \"0660\""]),
        ("[[sources]]\nname = \"a\"\ntype = \"unix_dgram\"\npath = \"/x.sock\"\nmax_connections = 3\n", &["line 5: sources[0].max_connections: applies to unix_stream sources only"]),
        ("[[sources]]\nname = \"a\"\ntype = \"unix_stream\"\n", &["line 1: sources[0].path: missing required key"]),
        ("[[sources]]\nname = \"a\"\ntype = \"stdin\"\npath = \"/x\"\n", &["line 4: sources[0].path: unknown key; expected one of: name, type, overflow, format, timezone"]),
        ("[[sources]]\nname = \"a\"\ntype = \"file\"\npaths = [\"/x\", 3]\n", &["line 4: sources[0].paths[1]: expected a string, found an integer"]),
        ("sources = 1\n", &["line 1: sources: expected an array of tables ([[sources]]), found an integer"]),
        ("bogus = 1\n", &["line 1: bogus: unknown key; expected one of: use_defaults, pipeline, archive, dead_letter, metrics, state, enrich, triage, score, audit, actions, sources"]),
        ("[[actions.destinations]]\nname = \"d\"\ntype = \"webhook\"\nurl = \"ftp://x/\"\n", &["line 4: actions.destinations[0].url: scheme `ftp` is not http or https"]),
        ("[[actions.destinations]]\nname = \"d\"\ntype = \"sms\"\n", &["line 3: actions.destinations[0].type: `sms` is not one of: webhook, exec, jsonl, redis, email"]),
        ("[[actions.destinations]]\nname = \"d\"\ntype = \"exec\"\ncommand = [\"{prog}\"]\n", &["line 4: actions.destinations[0].command: the program itself cannot come from an event field"]),
        ("[[actions.destinations]]\nname = \"d\"\ntype = \"webhook\"\nurl = \"https://x/\"\nsecret_env = \"ALERTFLOW_NO_SUCH_VARIABLE\"\n", &["line 5: actions.destinations[0].secret_env: environment variable `ALERTFLOW_NO_SUCH_VARIABLE` is not set"]),
        ("[[actions.destinations]]\nname = \"d\"\ntype = \"webhook\"\nurl = \"https://x/\"\ntext = \"{unclosed\"\n", &["line 5: actions.destinations[0].text: `{` without `}` in `{unclosed`"]),
        ("[[actions.triggers]]\nname = \"t\"\non = [\"alert\", \"sunrise\"]\nactions = [\"nowhere\"]\nwhen = \"event.x ==\"\n", &["line 3: actions.triggers[0].on: `sunrise` is not one of: alert, incident_opened, incident_updated, incident_escalated, incident_closed", "line 4: actions.triggers[0].actions: no destination named `nowhere` (destinations: none)", "line 5: actions.triggers[0].when: not a CEL expression: ERROR: <input>:1:11: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n| event.x ==\n| ..........^"]),
        ("[score]\naggregator = \"median\"\n", &["line 2: score.aggregator: `median` is not one of: max, sum, mean, noisy_or"]),
        ("[score.thresholds]\nhigh = 95\n", &["line 1: score.thresholds.critical: thresholds must not decrease: critical ≥ high ≥ medium ≥ low"]),
        ("[[score.rules]]\nname = \"r\"\nwhen = \"true\"\nscore = 150\n", &["line 4: score.rules[0].score: `150` is out of range; expected a number from -100 to 100"]),
        ("[[score.recommend]]\nname = \"r\"\nwhen = \"true\"\n", &["line 1: score.recommend[0].actions: a recommendation needs at least one action"]),
        ("[[enrich.intel]]\nname = \"f\"\npath = \"x\"\ntype = \"email\"\n", &["line 4: enrich.intel[0].type: `email` is not one of: ip, domain, url, md5, sha1, sha256, ja3, ja4, sni"]),
        ("[[enrich.intel]]\nname = \"f\"\npath = \"x\"\nformat = \"xml\"\n", &["line 4: enrich.intel[0].format: `xml` is not one of: list, csv, misp, stix"]),
    ];
    for (toml, want) in cases {
        assert_eq!(errors(toml), *want, "config:\n{toml}");
    }
}

#[test]
fn every_problem_is_reported_at_once_in_line_order() {
    let toml = "\
[archive]
zstd_level = 0
typo_key = 1

[[sources]]
name = \"eve\"
type = \"file\"
path = \"/var/log/suricata/eve.json\"

[[sources]]
name = \"eve\"
type = \"unix_stream\"
path = \"/run/eve.sock\"
start_at = \"end\"
";
    assert_eq!(
        errors(toml),
        [
            "line 2: archive.zstd_level: 0 is out of range; expected 1 to 22",
            "line 3: archive.typo_key: unknown key; expected one of: root, writer_threads, zstd_level, raw_codec, data_page_version, row_group_max_bytes, segment_max_bytes, max_open_partitions, lane_queue_batches, idle_seal_ms, max_segment_age_secs, retention_days, retention, compaction",
            "line 11: sources[1].name: duplicate source name `eve`",
            "line 14: sources[1].start_at: unknown key; expected one of: name, type, overflow, path, socket_mode, max_connections, format, timezone",
        ]
    );
}

#[test]
fn syntax_errors_name_their_line() {
    let errs = errors("[archive]\nroot = \"x\"\nzstd_level = = 3\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("line 3: invalid TOML: "), "{}", errs[0]);
}

#[test]
fn valid_config_with_every_source_type() {
    let toml = "\
[archive]
root = \"/tmp/a\"
writer_threads = 3

[[sources]]
name = \"eve\"
type = \"file\"
paths = [\"/var/log/suricata/eve.json*\", \"/data/eve-*.json\"]
start_at = \"end\"

[[sources]]
name = \"sock\"
type = \"unix_stream\"
path = \"/run/suricata/eve.sock\"
socket_mode = \"0600\"

[[sources]]
name = \"dgram\"
type = \"unix_dgram\"
path = \"/run/suricata/eve.dgram\"
overflow = \"block\"

[[sources]]
name = \"in\"
type = \"stdin\"
";
    let c = Config::parse(toml).unwrap();
    assert_eq!(c.sources.len(), 4);
    assert_eq!(c.archive.writer_threads, 3);
    match &c.sources[1].kind {
        alertflow::config::SourceKind::UnixStream(u) => assert_eq!(u.mode, 0o600),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.sources[1].overflow, alertflow::ingest::Overflow::Drop, "sockets drop by default");
    assert_eq!(c.sources[2].overflow, alertflow::ingest::Overflow::Block);
}

#[test]
fn check_config_command_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[archive]\nzstd_level = 99\n[metrics]\nlisten = \"nope\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: archive.zstd_level: 99 is out of range; expected 1 to 22"), "{err}");
    assert!(err.contains("line 4: metrics.listen: `nope` is not an address:port"), "{err}");
    assert!(err.contains("2 problems"), "{err}");

    let good = dir.path().join("good.toml");
    std::fs::write(&good, alertflow::config::DEFAULT_TOML).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&good).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (0 sources)"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("interpreter"), "the shipped rules need no CEL interpreter");

    // A rule beyond the typed subset of CEL is named (it runs, more slowly).
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, "[[score.rules]]\nname = \"internal\"\nwhen = \"in_cidr(src.ip, '10.0.0.0/8')\"\nscore = 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&slow).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("note: score rule `internal` runs in the CEL interpreter"), "{err}");

    // `run` with a broken config refuses to start with exit code 2.
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).args(["run", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn scoring_rules_that_do_not_compile_are_reported_at_their_key() {
    let e = errors("[[score.rules]]\nname = \"a\"\nwhen = \"alert.severity <=\"\nscore = 10\n\n[[score.rules]]\nname = \"b\"\nwhen = \"colour == 'red'\"\nscore = 10\n\n[[score.rules]]\nname = \"c\"\nwhen = \"true\"\nreason = \"{{ alert. }}\"\n");
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("line 3: score.rules[0].when: rule `a`: when:"), "{e:?}");
    assert!(e[1].starts_with("line 8: score.rules[1].when:") && e[1].contains("unknown variable `colour`"), "{e:?}");
    assert!(e[2].starts_with("line 14: score.rules[2].reason: rule `c`: reason:"), "{e:?}");
}

/// A TLS listener whose certificate, key or client CA is missing or not PEM is a
/// configuration problem, reported at its key before anything starts.
#[test]
fn missing_or_broken_tls_files_are_reported_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let tls = |cert: &str, key: &str| {
        format!(
            "[[sources]]\nname = \"tls\"\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:6514\"\n[sources.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.path().join(cert).display(),
            dir.path().join(key).display()
        )
    };
    let e = errors(&tls("nope.pem", "nokey.pem"));
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].starts_with("line 6: sources[0].tls.cert: ") && e[0].contains("nope.pem"), "{e:?}");
    assert!(e[1].starts_with("line 7: sources[0].tls.key: ") && e[1].contains("nokey.pem"), "{e:?}");
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    let e = errors(&tls("garbage.pem", "garbage.pem"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].contains("sources[0].tls.cert") && e[0].contains("no certificate"), "{e:?}");
}

/// `check-config` loads every enrichment file: a broken feed or asset inventory is a
/// problem (exit 2, the source and the reason named); the same files fixed check ok.
#[test]
fn check_config_loads_enrichment_files() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.csv");
    let assets = dir.path().join("assets.csv");
    std::fs::write(&feed, "indicator,type,confidence\n203.0.113.9,ip,800\n").unwrap();
    std::fs::write(&assets, "cidr,name\n10.0.0.0/33,bad\n").unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(
        &cfg,
        format!("[enrich]\nassets = \"{}\"\n\n[[enrich.intel]]\nname = \"f\"\npath = \"{}\"\nformat = \"csv\"\n", assets.display(), feed.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("intel:f") && err.contains("confidence"), "{err}");
    assert!(err.contains("assets") && err.contains("10.0.0.0/33"), "{err}");
    assert!(err.contains("2 problems"), "{err}");
    std::fs::write(&feed, "indicator,type,confidence\n203.0.113.9,ip,80\n").unwrap();
    std::fs::write(&assets, "cidr,name\n10.0.0.0/8,corp\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every starting file `alertflow config init` writes (the files of `configs/examples/`)
/// is valid as shipped, layered over the defaults, and `config init` refuses to overwrite.
#[test]
fn every_config_init_profile_is_valid_as_shipped() {
    for (name, text) in alertflow::config::PROFILES {
        let on_disk = std::fs::read_to_string(format!("{}/configs/examples/{name}.toml", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(on_disk, text, "{name}: the embedded profile is the file in configs/examples/");
        let cfg = Config::parse_site(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!cfg.sources.is_empty(), "{name}: a profile names its sources");
        assert_eq!(cfg.archive.root, std::path::Path::new("/var/lib/alertflow/archive"), "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("etc/alertflow.toml");
    let init = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_alertflow"))
            .args(["config", "init", "--profile", "redis", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(init(&[]).status.success());
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_alertflow")).arg("check-config").arg(&out).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    let again = init(&[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("give --force"), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(init(&["--force"]).status.success());
}
