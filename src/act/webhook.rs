//! HTTP webhooks: the body of each format, Standard Webhooks signatures (HMAC-SHA256 over
//! `id.timestamp.body`, headers `webhook-id`, `webhook-timestamp`, `webhook-signature`),
//! and one attempt through a client that follows no redirect, uses no proxy and resolves
//! through the SSRF guard.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

use super::guard::{Guard, Resolver};
use super::{envelope, template, Format, Job, On, Outcome, WebhookConfig};

/// The default message text of chat and paging formats.
pub fn default_text(on: On) -> &'static str {
    match on {
        On::Alert => "[{priority}] {signature} — {src_ip} → {dest_ip} (sensor {sensor}, score {score})",
        On::Digest => "alertflow digest ({trigger}): {count} events, {first_seen} to {last_seen}\n{summary}",
        _ => "[{priority}] incident {status}: {rule} {group_key} — {alert_count} alerts, score {score}",
    }
}

/// The request body of `j` for `cfg`.
pub fn body(cfg: &WebhookConfig, j: &Job) -> Value {
    let text = template::render(cfg.text.as_deref().unwrap_or(default_text(j.on)), &j.data);
    match cfg.format {
        Format::Generic => envelope(j),
        Format::Slack => json!({"text": text}),
        Format::Mattermost => json!({"text": text, "username": "alertflow"}),
        Format::Teams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [{"type": "TextBlock", "text": text, "wrap": true}],
                },
            }],
        }),
        Format::PagerDuty => {
            let subject = j.data.get("incident_id").or_else(|| j.data.get("alert_id")).and_then(Value::as_str).unwrap_or(&j.key);
            let routing = cfg.routing_key.as_ref().map(|s| s.expose()).unwrap_or_default();
            if j.on == On::IncidentClosed {
                return json!({"routing_key": routing, "event_action": "resolve", "dedup_key": subject});
            }
            let severity = match j.data.get("priority").and_then(Value::as_str) {
                Some("critical") => "critical",
                Some("high") => "error",
                Some("medium") => "warning",
                _ => "info",
            };
            let summary: String = text.chars().take(1024).collect();
            json!({
                "routing_key": routing,
                "event_action": "trigger",
                "dedup_key": subject,
                "payload": {
                    "summary": summary,
                    "source": j.data.get("sensor").and_then(Value::as_str).unwrap_or("alertflow"),
                    "severity": severity,
                    "timestamp": j.data.get("last_seen").or_else(|| j.data.get("timestamp")),
                    "component": j.data.get("rule").or_else(|| j.data.get("signature")),
                    "custom_details": &*j.data,
                },
            })
        }
    }
}

/// The key bytes of a Standard Webhooks secret (`whsec_` + base64, else the text's bytes).
pub fn secret_bytes(secret: &str) -> Vec<u8> {
    secret.strip_prefix("whsec_").and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok()).unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// `webhook-signature` of `body` sent as message `id` at `timestamp` (seconds).
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret_bytes(secret));
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref()))
}

/// One destination's client.
pub struct Webhook {
    cfg: WebhookConfig,
    url: Result<reqwest::Url, String>,
    guard: Arc<Guard>,
    client: reqwest::blocking::Client,
}

impl Webhook {
    pub fn new(cfg: WebhookConfig, timeout: Duration) -> Result<Webhook, String> {
        // Certificates are checked with the ring provider the syslog TLS listener uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let guard = Arc::new(Guard { allow: cfg.allow.clone() });
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(concat!("alertflow/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(Resolver(guard.clone())))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("url: {e}"));
        Ok(Webhook { cfg, url, guard, client })
    }

    /// One attempt.
    pub fn send(&self, j: &Job) -> Outcome {
        let url = match &self.url {
            Ok(u) => u.clone(),
            Err(e) => return Outcome::Failed(e.clone()),
        };
        if let Err(e) = self.guard.check_url(&url) {
            return Outcome::Failed(e);
        }
        let body = body(&self.cfg, j).to_string();
        // The real time of sending (receivers refuse stale messages), never a test clock.
        let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &j.id)
            .header("webhook-timestamp", ts.to_string())
            .header("idempotency-key", &j.id);
        if let Some(s) = &self.cfg.secret {
            req = req.header("webhook-signature", signature(s.expose(), &j.id, ts, body.as_bytes()));
        }
        for (k, v) in &self.cfg.headers {
            req = req.header(k.as_str(), v.expose());
        }
        match req.body(body).send() {
            Ok(resp) => {
                let status = resp.status();
                let after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
                let code = status.as_u16();
                if status.is_success() {
                    Outcome::Delivered(format!("HTTP {code}"))
                } else if code == 408 || code == 429 || status.is_server_error() {
                    Outcome::Retry { error: format!("HTTP {code}"), after }
                } else {
                    // 3xx (redirects are not followed), 410 Gone and other 4xx: the request
                    // itself is wrong; sending it again cannot help.
                    Outcome::Failed(format!("HTTP {code}"))
                }
            }
            Err(e) => {
                let mut why = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    src = s.source();
                }
                if why.contains("refused (add its network") {
                    Outcome::Failed(why)
                } else {
                    Outcome::Retry { error: why, after: None }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let s = signature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, br#"{"test": 2432232314}"#);
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
