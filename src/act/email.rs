//! Email over SMTP (implicit TLS, STARTTLS, or plain on a trusted network; optional
//! authentication): a text and an HTML part. Event fields reach the subject only as a
//! single line (CR and LF become spaces, and the mail builder encodes the header), and the
//! HTML part only escaped; recipients come from the configuration, never from a field.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::Tls;
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;

use super::{template, EmailConfig, Job, Outcome, SmtpTls};
use crate::event::json::html_escape;

/// The default subject.
pub const SUBJECT: &str = "[alertflow {priority}] {signature}{rule} {group_key}";

/// One line: CR, LF and other controls become spaces.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_string()
}

pub struct Mailer {
    cfg: EmailConfig,
    from: Mailbox,
    to: Vec<Mailbox>,
    transport: SmtpTransport,
}

impl Mailer {
    pub fn new(cfg: EmailConfig, timeout: Duration) -> Result<Mailer, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = match cfg.tls {
            SmtpTls::Tls => SmtpTransport::relay(&cfg.host).map_err(|e| e.to_string())?,
            SmtpTls::Starttls => SmtpTransport::starttls_relay(&cfg.host).map_err(|e| e.to_string())?,
            SmtpTls::None => SmtpTransport::builder_dangerous(&cfg.host).tls(Tls::None),
        };
        b = b.port(cfg.port).timeout(Some(timeout));
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            b = b.credentials(Credentials::new(u.expose().to_string(), p.expose().to_string()));
        }
        let from: Mailbox = cfg.from.parse().map_err(|e| format!("from `{}`: {e}", cfg.from))?;
        let to = cfg.to.iter().map(|t| t.parse::<Mailbox>().map_err(|e| format!("to `{t}`: {e}"))).collect::<Result<Vec<_>, _>>()?;
        Ok(Mailer { transport: b.build(), cfg, from, to })
    }

    fn message(&self, j: &Job) -> Result<Message, String> {
        let subject = one_line(&template::render(self.cfg.subject.as_deref().unwrap_or(SUBJECT), &j.data));
        let text = template::render(self.cfg.text.as_deref().unwrap_or(super::webhook::default_text(j.on)), &j.data);
        let mut rows = String::new();
        for k in [
            "type",
            "priority",
            "score",
            "signature",
            "category",
            "src_ip",
            "dest_ip",
            "sensor",
            "rule",
            "group_key",
            "status",
            "alert_count",
            "timestamp",
            "last_seen",
        ] {
            if let Some(v) = j.data.get(k).filter(|v| !v.is_null()) {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                rows.push_str(&format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", k, html_escape(&v)));
            }
        }
        let html = format!(
            "<!doctype html><html><body><p>{}</p><table>{rows}</table><p><small>{} · {} · {}</small></p></body></html>",
            html_escape(&text),
            html_escape(j.on.as_str()),
            html_escape(&j.trigger),
            html_escape(&j.id)
        );
        let mut m = Message::builder().from(self.from.clone()).subject(subject).message_id(Some(format!("<{}@alertflow>", j.id)));
        for t in &self.to {
            m = m.to(t.clone());
        }
        m.multipart(MultiPart::alternative_plain_html(text, html)).map_err(|e| e.to_string())
    }

    /// One attempt.
    pub fn send(&self, j: &Job) -> Outcome {
        let m = match self.message(j) {
            Ok(m) => m,
            Err(e) => return Outcome::Failed(e),
        };
        match self.transport.send(&m) {
            Ok(r) => Outcome::Delivered(format!("SMTP {}", r.code())),
            Err(e) if e.is_permanent() => Outcome::Failed(format!("SMTP: {e}")),
            Err(e) => Outcome::Retry { error: format!("SMTP: {e}"), after: None },
        }
    }
}
