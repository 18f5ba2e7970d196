"""Webhooks received by a real HTTP server (Python's http.server), their payload shapes
checked, and their signatures verified by an independent implementation of Standard
Webhooks (the `standardwebhooks` package from PyPI): valid as sent, rejected when the
body, the id or the timestamp changes.
"""
import base64
import http.server
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

ROOT = Path(__file__).resolve().parents[2]
BIN = os.environ.get("ALERTFLOW_BIN", str(ROOT / "target" / "debug" / "alertflow"))
BASE = 1_795_000_000


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(h):
                body = h.rfile.read(int(h.headers.get("content-length", 0)))
                with self.lock:
                    self.requests.append((h.path, {k.lower(): v for k, v in h.headers.items()}, body))
                h.send_response(202)
                h.send_header("content-length", "0")
                h.end_headers()

            def log_message(h, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def on(self, path):
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p == path]


def alert(t, port, sid=2_000_001, src="198.51.100.7", signature="ET SCAN probe"):
    ts = f"{BASE + t}"
    when = __import__("datetime").datetime.fromtimestamp(BASE + t, __import__("datetime").timezone.utc)
    return json.dumps(
        {
            "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.000000+0000"),
            "flow_id": 1000 + t,
            "event_type": "alert",
            "src_ip": src,
            "src_port": 40000,
            "dest_ip": "10.0.0.5",
            "dest_port": port,
            "proto": "TCP",
            "alert": {"action": "allowed", "gid": 1, "signature_id": sid, "rev": 1, "signature": signature, "category": "Attempted Recon", "severity": 2},
        }
    )


@pytest.fixture()
def receiver():
    r = Receiver()
    t = threading.Thread(target=r.serve_forever, daemon=True)
    t.start()
    yield r
    r.shutdown()


def test_webhooks_are_shaped_and_signed_as_the_standards_say(tmp_path, receiver):
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    hook = lambda name, path, extra="": (
        f'[[actions.destinations]]\nname = "{name}"\ntype = "webhook"\nurl = "{url}{path}"\nallow = ["127.0.0.1/32"]\n{extra}\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[archive]\nroot = "{tmp_path / "archive"}"\n\n[metrics]\nlisten = ""\n\n'
        '[[state.rules]]\nname = "scan"\ntype = "value_count"\ngroup_by = ["src_ip"]\nfield = "dest_port"\ngte = 20\ntimespan_secs = 600\n\n'
        + hook("generic", "/generic", 'secret_env = "AF_TEST_WEBHOOK_SECRET"')
        + hook("slack", "/slack", 'format = "slack"')
        + hook("mattermost", "/mattermost", 'format = "mattermost"')
        + hook("teams", "/teams", 'format = "teams"\ntext = "{signature} from {src_ip}"')
        + hook("pager", "/pager", 'format = "pagerduty"\nrouting_key_env = "AF_TEST_ROUTING_KEY"')
        + '[[actions.triggers]]\nname = "alerts"\non = ["alert"]\nwhen = "event.dest_port == 1"\nactions = ["generic", "slack", "mattermost", "teams"]\n\n'
        + '[[actions.triggers]]\nname = "incidents"\non = ["incident_opened", "incident_closed"]\nrules = ["scan"]\nactions = ["pager", "generic"]\n'
    )
    eve = tmp_path / "eve.json"
    eve.write_text("\n".join(alert(i, 1 + i) for i in range(25)) + "\n")
    env = dict(os.environ, AF_TEST_WEBHOOK_SECRET=secret, AF_TEST_ROUTING_KEY="R0UTINGKEY", ALERTFLOW_CLOCK=str(BASE + 3600))
    out = subprocess.run([BIN, "replay", "--config", str(cfg), str(eve)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    # The first alert (dest_port 1) reached every chat destination, once.
    (slack,) = receiver.on("/slack")
    assert "ET SCAN probe" in json.loads(slack[1])["text"]
    (mm,) = receiver.on("/mattermost")
    assert json.loads(mm[1])["username"] == "alertflow"
    (teams,) = receiver.on("/teams")
    card = json.loads(teams[1])["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["body"][0]["text"] == "ET SCAN probe from 198.51.100.7"

    # PagerDuty: trigger on open, resolve on close, one dedup key (the incident).
    pager = [json.loads(b) for _, b in receiver.on("/pager")]
    assert [p["event_action"] for p in pager] == ["trigger", "resolve"]
    assert all(p["routing_key"] == "R0UTINGKEY" for p in pager)
    assert pager[0]["dedup_key"] == pager[1]["dedup_key"]
    assert pager[0]["payload"]["severity"] in ("critical", "error", "warning", "info")
    assert pager[0]["payload"]["custom_details"]["rule"] == "scan"

    # Generic: the versioned envelope, signed; an independent verifier accepts it and
    # rejects any change of body, id or timestamp.
    generic = receiver.on("/generic")
    assert sorted(json.loads(b)["event"] for _, b in generic) == ["alert", "incident_closed", "incident_opened"]
    wh = Webhook(secret)
    for headers, body in generic:
        sent = {k: headers[k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
        payload = wh.verify(body, sent)
        assert payload["schema"] == "alertflow.action/1"
        assert payload["id"] == sent["webhook-id"]
        with pytest.raises(WebhookVerificationError):
            wh.verify(body.replace(b"alertflow.action/1", b"alertflow.action/2"), sent)
        with pytest.raises(WebhookVerificationError):
            wh.verify(body, dict(sent, **{"webhook-id": sent["webhook-id"] + "x"}))
        with pytest.raises(WebhookVerificationError):
            wh.verify(body, dict(sent, **{"webhook-timestamp": str(int(sent["webhook-timestamp"]) - 1)}))
    # The secret is in no record of the journal.
    journal = (tmp_path / "archive" / "_audit" / "actions-audit.jsonl").read_text()
    assert secret not in journal and "R0UTINGKEY" not in journal


def test_mail_reaches_a_real_smtp_server_and_fields_cannot_add_headers(tmp_path):
    import email
    import email.policy
    import socket

    from aiosmtpd.controller import Controller

    class Keep:
        def __init__(self):
            self.envelopes = []

        async def handle_DATA(self, server, session, envelope):
            self.envelopes.append(envelope)
            return "250 OK"

    keep = Keep()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(keep, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        cfg = tmp_path / "c.toml"
        cfg.write_text(
            f'[archive]\nroot = "{tmp_path / "archive"}"\n\n[metrics]\nlisten = ""\n\n'
            f'[[actions.destinations]]\nname = "mail"\ntype = "email"\nhost = "127.0.0.1"\nport = {port}\ntls = "none"\n'
            'from = "alertflow@example.org"\nto = ["soc@example.org"]\n\n'
            '[[actions.triggers]]\nname = "all"\non = ["alert"]\nactions = ["mail"]\n'
        )
        evil = "ET EVIL probe\r\nBcc: attacker@example.net\r\nX-Injected: yes"
        eve = tmp_path / "eve.json"
        eve.write_text(alert(0, 80, signature=evil) + "\n" + alert(1, 81, sid=2_000_002, signature="<script>alert(1)</script>") + "\n")
        env = dict(os.environ, ALERTFLOW_CLOCK=str(BASE + 3600))
        out = subprocess.run([BIN, "replay", "--config", str(cfg), str(eve)], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    finally:
        ctl.stop()
    assert len(keep.envelopes) == 2
    for env_ in keep.envelopes:
        assert env_.rcpt_tos == ["soc@example.org"], "recipients come from the configuration only"
        msg = email.message_from_bytes(env_.original_content, policy=email.policy.default)
        assert msg["Bcc"] is None and msg["X-Injected"] is None
        assert "\n" not in str(msg["Subject"])
        assert msg["Message-ID"].startswith("<msg_")
        parts = {p.get_content_type(): p.get_content() for p in msg.walk() if not p.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}
        assert "<script>" not in parts["text/html"]
    subjects = sorted(str(email.message_from_bytes(e.original_content, policy=email.policy.default)["Subject"]) for e in keep.envelopes)
    assert any("ET EVIL probe" in s and "Bcc" in s for s in subjects), subjects
