//! `[actions]`: destinations (webhooks, response scripts, JSONL files, Redis, email), triggers, and the
//! outbox's bounds.

use std::time::Duration;

use super::reader::{Cx, Tbl};
use crate::act::{
    priority_rank, template, ActionsConfig, Destination, EmailConfig, ExecConfig, Format, Kind, On, RedisConfig, RedisMode, Secret, SmtpTls, TriggerConfig,
    WebhookConfig, PRIORITIES,
};

/// A secret from `<key>_env` (an environment variable) or `<key>_file`.
fn secret(cx: &mut Cx, t: &Tbl, key: &str) -> Option<Secret> {
    let env_key = format!("{key}_env");
    let file_key = format!("{key}_file");
    if let Some(var) = cx.string(t, &env_key) {
        return match std::env::var(&var) {
            Ok(v) if !v.is_empty() => Some(Secret::new(v)),
            _ => {
                cx.error_at(t, &env_key, format!("environment variable `{var}` is not set"));
                None
            }
        };
    }
    if let Some(path) = cx.string(t, &file_key) {
        return match std::fs::read_to_string(&path) {
            Ok(v) if !v.trim().is_empty() => Some(Secret::new(v.trim().to_string())),
            Ok(_) => {
                cx.error_at(t, &file_key, format!("{path} is empty"));
                None
            }
            Err(e) => {
                cx.error_at(t, &file_key, format!("cannot read {path}: {e}"));
                None
            }
        };
    }
    None
}

fn check_template(cx: &mut Cx, t: &Tbl, key: &str, text: &str) {
    if let Err(e) = template::check(text) {
        cx.error_at(t, key, e);
    }
}

fn read_destination(cx: &mut Cx, t: &Tbl) -> Option<Destination> {
    cx.unknown_keys(
        t,
        &[
            "name",
            "type",
            "url",
            "format",
            "secret_env",
            "secret_file",
            "routing_key_env",
            "routing_key_file",
            "headers",
            "header_env",
            "allow",
            "text",
            "command",
            "env",
            "path",
            "timeout_ms",
            "max_attempts",
            "backoff_ms",
            "max_backoff_secs",
            "rate_per_minute",
            "per_key",
            "per_key_interval_secs",
            "concurrency",
            "url_env",
            "mode",
            "key",
            "maxlen",
            "host",
            "port",
            "tls",
            "username_env",
            "password_env",
            "password_file",
            "from",
            "to",
            "subject",
        ],
    );
    let name = cx.required_string(t, "name");
    let kind_name = cx.required_string(t, "type");
    let kind = match kind_name.as_deref() {
        Some("webhook") => {
            let url = cx.required_string(t, "url");
            if let Some(u) = &url {
                match reqwest::Url::parse(u) {
                    Ok(p) if p.scheme() == "http" || p.scheme() == "https" => {}
                    Ok(p) => cx.error_at(t, "url", format!("scheme `{}` is not http or https", p.scheme())),
                    Err(e) => cx.error_at(t, "url", format!("`{u}` is not a URL: {e}")),
                }
            }
            let format = match cx.string(t, "format") {
                None => Format::Generic,
                Some(f) => Format::from_name(&f).unwrap_or_else(|| {
                    cx.error_at(t, "format", format!("`{f}` is not one of: {}", Format::NAMES));
                    Format::Generic
                }),
            };
            let mut allow = Vec::new();
            for n in cx.string_list(t, "allow").unwrap_or_default() {
                match crate::event::prefix::parse_cidr(&n) {
                    Some(p) => allow.push(p),
                    None => cx.error_at(t, "allow", format!("`{n}` is not an address or network (127.0.0.1/32, fd00::/8)")),
                }
            }
            let mut headers: Vec<(String, Secret)> = cx.string_map(t, "headers").into_iter().map(|(k, v, _)| (k, Secret::new(v))).collect();
            for (h, var, _) in cx.string_map(t, "header_env") {
                match std::env::var(&var) {
                    Ok(v) => headers.push((h, Secret::new(v))),
                    Err(_) => cx.error_at(t, "header_env", format!("environment variable `{var}` (header {h}) is not set")),
                }
            }
            let text = cx.string(t, "text");
            if let Some(x) = &text {
                check_template(cx, t, "text", x);
            }
            let routing_key = secret(cx, t, "routing_key");
            if format == Format::PagerDuty && routing_key.is_none() {
                cx.error_here(t, "routing_key_env", "a pagerduty webhook needs its integration key (routing_key_env or routing_key_file)");
            }
            Kind::Webhook(WebhookConfig { url: url.unwrap_or_default(), format, secret: secret(cx, t, "secret"), routing_key, headers, allow, text })
        }
        Some("exec") => {
            let argv = cx.string_list(t, "command").unwrap_or_default();
            if argv.is_empty() {
                cx.error_here(t, "command", "an exec action needs `command`, the program and its arguments (no shell)");
            }
            for a in &argv {
                check_template(cx, t, "command", a);
            }
            if argv.first().is_some_and(|p| p.contains('{')) {
                cx.error_at(t, "command", "the program itself cannot come from an event field");
            }
            Kind::Exec(ExecConfig { argv, env: cx.string_list(t, "env").unwrap_or_else(|| vec!["PATH".into()]) })
        }
        Some("jsonl") => Kind::Jsonl(cx.required_string(t, "path").unwrap_or_default().into()),
        Some("redis") => {
            let url = match secret(cx, t, "url") {
                Some(u) => Some(u),
                None => cx.string(t, "url").map(Secret::new),
            };
            let Some(url) = url else {
                cx.error_here(t, "url", "a redis action needs `url` (or `url_env`), e.g. \"redis://127.0.0.1:6379/0\"");
                return None;
            };
            if let Err(e) = redis::Client::open(url.expose()) {
                cx.error_at(t, if t.has("url_env") { "url_env" } else { "url" }, format!("not a Redis URL: {e}"));
            }
            let mode = match cx.string(t, "mode").as_deref() {
                None | Some("list") => RedisMode::List,
                Some("stream") => RedisMode::Stream,
                Some("publish") => RedisMode::Publish,
                Some(m) => {
                    cx.error_at(t, "mode", format!("`{m}` is not one of: list, stream, publish"));
                    RedisMode::List
                }
            };
            let key = cx.required_string(t, "key").unwrap_or_default();
            Kind::Redis(RedisConfig { url, mode, key, maxlen: cx.uint(t, "maxlen", 100_000, 0, u64::MAX >> 1) })
        }
        Some("email") => {
            let host = cx.required_string(t, "host").unwrap_or_default();
            let tls = match cx.string(t, "tls").as_deref() {
                None | Some("starttls") => SmtpTls::Starttls,
                Some("tls") => SmtpTls::Tls,
                Some("none") => SmtpTls::None,
                Some(x) => {
                    cx.error_at(t, "tls", format!("`{x}` is not one of: starttls, tls, none"));
                    SmtpTls::Starttls
                }
            };
            let default_port = match tls {
                SmtpTls::Tls => 465,
                SmtpTls::Starttls => 587,
                SmtpTls::None => 25,
            };
            let from = cx.required_string(t, "from").unwrap_or_default();
            if !from.is_empty() && from.parse::<lettre::message::Mailbox>().is_err() {
                cx.error_at(t, "from", format!("`{from}` is not a mail address"));
            }
            let to = cx.string_list(t, "to").unwrap_or_default();
            if to.is_empty() {
                cx.error_here(t, "to", "an email action needs `to`, its recipients");
            }
            for a in &to {
                if a.parse::<lettre::message::Mailbox>().is_err() {
                    cx.error_at(t, "to", format!("`{a}` is not a mail address"));
                }
            }
            for k in ["subject", "text"] {
                if let Some(x) = cx.string_or_none(t, k) {
                    check_template(cx, t, k, &x);
                }
            }
            let username = secret(cx, t, "username");
            let password = secret(cx, t, "password");
            if username.is_some() != password.is_some() {
                cx.error_here(t, "password_env", "SMTP authentication needs both username_env and password_env (or password_file)");
            }
            Kind::Email(EmailConfig {
                host,
                port: cx.uint(t, "port", default_port, 1, 65535) as u16,
                tls,
                username,
                password,
                from,
                to,
                subject: cx.string(t, "subject"),
                text: cx.string(t, "text"),
            })
        }
        Some(other) => {
            cx.error_at(t, "type", format!("`{other}` is not one of: webhook, exec, jsonl, redis, email"));
            return None;
        }
        None => return None,
    };
    let mut d = Destination::new(name.as_deref().unwrap_or_default(), kind);
    d.timeout = Duration::from_millis(cx.uint(t, "timeout_ms", d.timeout.as_millis() as u64, 10, 600_000));
    d.max_attempts = cx.uint(t, "max_attempts", d.max_attempts as u64, 1, 1000) as u32;
    d.backoff = Duration::from_millis(cx.uint(t, "backoff_ms", d.backoff.as_millis() as u64, 1, 3_600_000));
    d.max_backoff = Duration::from_secs(cx.uint(t, "max_backoff_secs", d.max_backoff.as_secs(), 1, 86_400));
    d.rate_per_minute = cx.uint(t, "rate_per_minute", 0, 0, 1_000_000) as u32;
    d.per_key = cx.string(t, "per_key");
    if let Some(k) = &d.per_key {
        check_template(cx, t, "per_key", k);
    }
    d.per_key_interval = Duration::from_secs(cx.uint(t, "per_key_interval_secs", d.per_key_interval.as_secs(), 1, 86_400 * 30));
    d.concurrency = cx.uint(t, "concurrency", d.concurrency as u64, 1, 64) as usize;
    name.map(|_| d)
}

fn read_trigger(cx: &mut Cx, t: &Tbl) -> Option<TriggerConfig> {
    cx.unknown_keys(t, &["name", "on", "min_priority", "rules", "when", "actions", "cooldown_secs", "cooldown_key", "digest_minutes"]);
    let name = cx.required_string(t, "name");
    let on = match cx.string_list(t, "on") {
        None => vec![On::Alert, On::IncidentOpened],
        Some(list) => list
            .iter()
            .filter_map(|o| {
                let v = On::from_name(o);
                if v.is_none() {
                    cx.error_at(t, "on", format!("`{o}` is not one of: {}", On::NAMES));
                }
                v
            })
            .collect(),
    };
    let min_priority = cx.string(t, "min_priority").and_then(|p| {
        let r = priority_rank(&p);
        if r.is_none() {
            cx.error_at(t, "min_priority", format!("`{p}` is not one of: {}", PRIORITIES.join(", ")));
        }
        r
    });
    let when = cx.string(t, "when");
    if let Some(w) = &when {
        if let Err(e) = crate::act::trigger::compile_when(w) {
            cx.error_at(t, "when", format!("not a CEL expression: {e}"));
        }
    }
    let actions = cx.string_list(t, "actions").unwrap_or_default();
    if actions.is_empty() {
        cx.error_here(t, "actions", "a trigger needs `actions`, the destinations it fires");
    }
    let cooldown_key = cx.string(t, "cooldown_key");
    if let Some(k) = &cooldown_key {
        check_template(cx, t, "cooldown_key", k);
    }
    Some(TriggerConfig {
        name: name?,
        on,
        min_priority,
        rules: cx.string_list(t, "rules").unwrap_or_default(),
        when,
        actions,
        cooldown: Duration::from_secs(cx.uint(t, "cooldown_secs", 0, 0, 86_400 * 30)),
        cooldown_key,
        digest: Duration::from_secs(60 * cx.uint(t, "digest_minutes", 0, 0, 7 * 24 * 60)),
    })
}

pub(super) fn read_actions(cx: &mut Cx, root: &Tbl) -> ActionsConfig {
    let d = ActionsConfig::default();
    let a = cx.section(root, "actions");
    cx.unknown_keys(&a, &["destinations", "triggers", "queue_max", "remember_keys", "breaker_failures", "breaker_open_secs", "drain_secs"]);
    let mut destinations: Vec<Destination> = Vec::new();
    for t in cx.array_of_tables(&a, "destinations") {
        if let Some(dest) = read_destination(cx, &t) {
            if destinations.iter().any(|o| o.name == dest.name) {
                cx.error_at(&t, "name", format!("duplicate destination name `{}`", dest.name));
            }
            destinations.push(dest);
        }
    }
    let mut triggers: Vec<TriggerConfig> = Vec::new();
    for t in cx.array_of_tables(&a, "triggers") {
        if let Some(tr) = read_trigger(cx, &t) {
            if triggers.iter().any(|o| o.name == tr.name) {
                cx.error_at(&t, "name", format!("duplicate trigger name `{}`", tr.name));
            }
            for name in &tr.actions {
                if !destinations.iter().any(|d| &d.name == name) {
                    let known: Vec<&str> = destinations.iter().map(|d| d.name.as_str()).collect();
                    cx.error_at(
                        &t,
                        "actions",
                        format!("no destination named `{name}` (destinations: {})", if known.is_empty() { "none".into() } else { known.join(", ") }),
                    );
                }
            }
            triggers.push(tr);
        }
    }
    ActionsConfig {
        destinations,
        triggers,
        queue_max: cx.uint(&a, "queue_max", d.queue_max as u64, 1, 10_000_000) as usize,
        remember_keys: cx.uint(&a, "remember_keys", d.remember_keys as u64, 1000, 100_000_000) as usize,
        breaker_failures: cx.uint(&a, "breaker_failures", d.breaker_failures as u64, 1, 1000) as u32,
        breaker_open: Duration::from_secs(cx.uint(&a, "breaker_open_secs", d.breaker_open.as_secs(), 1, 86_400)),
        drain: Duration::from_secs(cx.uint(&a, "drain_secs", d.drain.as_secs(), 0, 3600)),
    }
}
