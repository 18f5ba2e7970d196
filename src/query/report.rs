//! `alertflow report`: what a SOC lead sends upward, from the archive alone — one
//! self-contained HTML file (inline SVG, no script, no fetch), or Markdown, or JSON.
//! Every number comes from a SQL statement over the archive (listed in the JSON form), so
//! the report and `alertflow query` always agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::Serialize;

use super::{context, QueryError, Request};
use crate::event::json::html_escape as esc;

/// The statements behind the report, by section.
pub const SQL: &[(&str, &str)] = &[
    ("totals_events", "SELECT count(*) AS n FROM events"),
    ("events_by_type", "SELECT event_type, count(*) AS n FROM events GROUP BY event_type ORDER BY n DESC, event_type"),
    (
        "totals_alerts",
        "SELECT count(*) AS alerts, sum(CASE WHEN suppressed THEN 1 ELSE 0 END) AS suppressed, sum(CASE WHEN late THEN 1 ELSE 0 END) AS late FROM alerts",
    ),
    (
        "alerts_by_hour",
        "SELECT CAST(date AS VARCHAR) || ' ' || lpad(CAST(hour AS VARCHAR), 2, '0') || ':00' AS hour, coalesce(priority, 'unscored') AS priority, count(*) AS n \
         FROM alerts GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "top_signatures",
        "SELECT alert_signature AS signature, count(*) AS n FROM alerts GROUP BY alert_signature ORDER BY n DESC, signature LIMIT 10",
    ),
    ("top_categories", "SELECT alert_category AS category, count(*) AS n FROM alerts GROUP BY alert_category ORDER BY n DESC, category LIMIT 10"),
    (
        "top_sources",
        "SELECT src_ip AS host, count(*) AS n, max(src_country) AS country, max(src_as_org) AS network, max(src_asset) AS asset \
         FROM alerts GROUP BY src_ip ORDER BY n DESC, host LIMIT 10",
    ),
    (
        "top_destinations",
        "SELECT dest_ip AS host, count(*) AS n, max(dest_country) AS country, max(dest_as_org) AS network, max(dest_asset) AS asset \
         FROM alerts GROUP BY dest_ip ORDER BY n DESC, host LIMIT 10",
    ),
    (
        "incidents",
        "SELECT incident_id, rule, group_key, status, alert_count, score, priority, \
         json_get_str(reasons, 0, 'reason') AS story, json_get_str(recommendations, 0, 'rule') AS recommended FROM ( \
         SELECT *, row_number() OVER (PARTITION BY incident_id ORDER BY last_seen DESC, alert_count DESC, CASE status WHEN 'closed' THEN 2 ELSE 1 END DESC) AS rn \
         FROM incidents) WHERE rn = 1 ORDER BY score DESC NULLS LAST, alert_count DESC LIMIT 25",
    ),
    (
        "totals_incidents",
        "SELECT count(*) AS incidents, sum(CASE WHEN priority IN ('high', 'critical') THEN 1 ELSE 0 END) AS high_or_critical FROM ( \
         SELECT priority, row_number() OVER (PARTITION BY incident_id ORDER BY last_seen DESC, alert_count DESC, CASE status WHEN 'closed' THEN 2 ELSE 1 END DESC) AS rn \
         FROM incidents) WHERE rn = 1",
    ),
    ("actions_by_kind", "SELECT kind, count(*) AS n FROM actions GROUP BY kind ORDER BY n DESC, kind"),
];

/// One answer: column names and rows as text (null as empty).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Answer {
    pub sql: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub archive: String,
    pub since: Option<String>,
    pub until: Option<String>,
    pub generated: String,
    pub answers: BTreeMap<String, Answer>,
    /// Dead-letter records by reason (`_deadletter/rejected.jsonl`).
    pub rejected: BTreeMap<String, u64>,
}

fn text(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Vec<String>>), QueryError> {
    let mut rows = Vec::new();
    let columns = batches.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default();
    let opts = FormatOptions::default();
    for b in batches {
        let fmts: Vec<ArrayFormatter> =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>().map_err(|e| QueryError(e.to_string()))?;
        for i in 0..b.num_rows() {
            rows.push(b.columns().iter().zip(&fmts).map(|(c, f)| if c.is_null(i) { String::new() } else { f.value(i).to_string() }).collect());
        }
    }
    Ok((columns, rows))
}

impl Report {
    pub fn n(&self, key: &str, row: usize, col: usize) -> String {
        self.answers.get(key).and_then(|a| a.rows.get(row)).and_then(|r| r.get(col)).cloned().unwrap_or_default()
    }
}

/// Runs every statement (a table without data gives an empty answer).
pub fn build(req: &Request, rejected: BTreeMap<String, u64>) -> Result<Report, QueryError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| QueryError(e.to_string()))?;
    let answers = rt.block_on(async {
        let ctx = context(req).await?;
        let mut out = BTreeMap::new();
        for (key, sql) in SQL {
            let res = match ctx.sql(sql).await {
                Ok(df) => df.collect().await,
                Err(e) => Err(e),
            };
            let (columns, rows) = match res {
                Ok(b) => text(&b)?,
                // A table that has no data yet (no incidents, no actions) is empty.
                Err(e) if e.to_string().contains("not found") => (Vec::new(), Vec::new()),
                Err(e) => return Err(QueryError(format!("{key}: {}", e.strip_backtrace().replace('\n', " ")))),
            };
            out.insert(key.to_string(), Answer { sql: sql.to_string(), columns, rows });
        }
        Ok(out)
    })?;
    let iso = |us: Option<i64>| us.and_then(|u| jiff::Timestamp::from_microsecond(u).ok()).map(|t| t.to_string());
    Ok(Report {
        archive: req.root.display().to_string(),
        since: iso(req.since_us),
        until: iso(req.until_us),
        generated: jiff::Timestamp::now().to_string(),
        answers,
        rejected,
    })
}

const PRIORITIES: [(&str, &str); 6] =
    [("critical", "#b71c1c"), ("high", "#e65100"), ("medium", "#f9a825"), ("low", "#1565c0"), ("info", "#78909c"), ("unscored", "#cfd8dc")];

/// Stacked bars: alerts per hour by priority.
fn svg_hours(a: &Answer) -> String {
    let mut hours: Vec<String> = Vec::new();
    let mut by: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in &a.rows {
        if !hours.contains(&r[0]) {
            hours.push(r[0].clone());
        }
        by.insert((r[0].clone(), r[1].clone()), r[2].parse().unwrap_or(0.0));
    }
    if hours.is_empty() {
        return "<p>No alerts in this period.</p>".into();
    }
    let max =
        hours.iter().map(|h| PRIORITIES.iter().map(|(p, _)| by.get(&(h.clone(), p.to_string())).copied().unwrap_or(0.0)).sum::<f64>()).fold(1.0, f64::max);
    let (w, h, left, bottom) = (860.0, 220.0, 50.0, 40.0);
    let bw = ((w - left) / hours.len() as f64).min(60.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\" aria-label=\"alerts per hour by priority\">",
        h + bottom + 24.0
    );
    let _ = write!(s, "<text x=\"0\" y=\"12\" font-size=\"11\">{}</text><text x=\"0\" y=\"{h}\" font-size=\"11\">0</text>", max as u64);
    for (i, hr) in hours.iter().enumerate() {
        let x = left + i as f64 * bw;
        let mut y = h;
        for (p, color) in PRIORITIES {
            let v = by.get(&(hr.clone(), p.to_string())).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let bh = v / max * (h - 16.0);
            y -= bh;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{color}\"><title>{} {p}: {}</title></rect>",
                bw * 0.8,
                esc(hr),
                v as u64
            );
        }
        if hours.len() <= 24 || i % (hours.len() / 12).max(1) == 0 {
            let _ = write!(s, "<text x=\"{x:.1}\" y=\"{}\" font-size=\"10\">{}</text>", h + 14.0, esc(&hr[hr.len().saturating_sub(5)..]));
        }
    }
    let mut lx = left;
    for (p, color) in PRIORITIES {
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"{}\" width=\"10\" height=\"10\" fill=\"{color}\"/><text x=\"{}\" y=\"{}\" font-size=\"11\">{p}</text>",
            h + 26.0,
            lx + 14.0,
            h + 35.0
        );
        lx += 90.0;
    }
    s.push_str("</svg>");
    s
}

/// Horizontal bars of (label, count) rows.
fn svg_bars(a: &Answer, color: &str) -> String {
    if a.rows.is_empty() {
        return "<p>None.</p>".into();
    }
    let max = a.rows.iter().map(|r| r[1].parse::<f64>().unwrap_or(0.0)).fold(1.0, f64::max);
    let row_h = 22.0;
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"860\" height=\"{}\" role=\"img\">", a.rows.len() as f64 * row_h + 4.0);
    for (i, r) in a.rows.iter().enumerate() {
        let v = r[1].parse::<f64>().unwrap_or(0.0);
        let y = i as f64 * row_h;
        let label: String = r[0].chars().take(70).collect();
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"12\">{}</text><rect x=\"470\" y=\"{:.1}\" width=\"{:.1}\" height=\"14\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\">{}</text>",
            y + 14.0,
            esc(if label.is_empty() { "(none)" } else { &label }),
            y + 3.0,
            v / max * 330.0,
            476.0 + v / max * 330.0,
            y + 14.0,
            v as u64
        );
    }
    s.push_str("</svg>");
    s
}

fn table(a: &Answer, cols: &[usize]) -> String {
    if a.rows.is_empty() {
        return "<p>None.</p>".into();
    }
    let mut s = String::from("<table><tr>");
    for &c in cols {
        let _ = write!(s, "<th>{}</th>", esc(&a.columns[c]));
    }
    s.push_str("</tr>");
    for r in &a.rows {
        s.push_str("<tr>");
        for &c in cols {
            let _ = write!(s, "<td>{}</td>", esc(&r[c]));
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
    s
}

/// The HTML report: one file, inline SVG and CSS, nothing fetched when opened.
pub fn html(r: &Report) -> String {
    let empty = Answer::default();
    let a = |k: &str| r.answers.get(k).unwrap_or(&empty);
    let period = match (&r.since, &r.until) {
        (Some(s), Some(u)) => format!("{s} to {u}"),
        (Some(s), None) => format!("since {s}"),
        (None, Some(u)) => format!("until {u}"),
        (None, None) => "everything archived".into(),
    };
    let (alerts, suppressed, late) = (r.n("totals_alerts", 0, 0), r.n("totals_alerts", 0, 1), r.n("totals_alerts", 0, 2));
    let number = |k: &str, c: usize| match r.n(k, 0, c) {
        n if n.is_empty() => "0".to_string(),
        n => n,
    };
    let (incidents, critical_high) = (number("totals_incidents", 0), number("totals_incidents", 1));
    let mut s = String::with_capacity(64 * 1024);
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>alertflow report — {}</title><style>\
         body{{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:32px auto;max-width:920px;color:#212121}}\
         h1{{font-size:24px;margin-bottom:0}} h2{{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}}\
         .sub{{color:#666;margin-top:4px}} .kpis{{display:flex;gap:12px;margin:20px 0}} .kpi{{flex:1;border:1px solid #ddd;border-radius:6px;padding:10px}}\
         .kpi b{{display:block;font-size:22px}} table{{border-collapse:collapse;width:100%;font-size:12px}} th,td{{text-align:left;border-bottom:1px solid #eee;padding:4px 6px;vertical-align:top}}\
         .p-critical{{color:#b71c1c;font-weight:600}} .p-high{{color:#e65100;font-weight:600}} footer{{margin-top:32px;color:#888;font-size:11px}}</style></head><body>",
        esc(&period)
    );
    let _ = write!(s, "<h1>Security alerts report</h1><p class=\"sub\">{} · archive {} · generated {}</p>", esc(&period), esc(&r.archive), esc(&r.generated));
    let _ = write!(
        s,
        "<div class=\"kpis\"><div class=\"kpi\"><b>{}</b>events</div><div class=\"kpi\"><b>{}</b>alerts</div><div class=\"kpi\"><b>{}</b>repeats suppressed</div>\
         <div class=\"kpi\"><b>{}</b>incidents</div><div class=\"kpi\"><b>{}</b>high or critical</div></div>",
        esc(&r.n("totals_events", 0, 0)),
        esc(&alerts),
        esc(&suppressed),
        esc(&incidents),
        esc(&critical_high)
    );
    let _ = write!(s, "<h2>Alerts per hour by priority</h2>{}", svg_hours(a("alerts_by_hour")));
    let _ = write!(s, "<h2>Incidents</h2>");
    if a("incidents").rows.is_empty() {
        s.push_str("<p>No incidents.</p>");
    } else {
        s.push_str("<table><tr><th>priority</th><th>score</th><th>incident</th><th>alerts</th><th>status</th><th>story</th><th>recommended</th></tr>");
        for x in &a("incidents").rows {
            let _ = write!(
                s,
                "<tr><td class=\"p-{}\">{}</td><td>{}</td><td>{} {}<br><small>{}</small></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&x[6]),
                esc(&x[6]),
                esc(&x[5]),
                esc(&x[1]),
                esc(&x[2]),
                esc(&x[0]),
                esc(&x[4]),
                esc(&x[3]),
                esc(&x[7]),
                esc(&x[8])
            );
        }
        s.push_str("</table>");
    }
    let _ = write!(s, "<h2>Top signatures</h2>{}", svg_bars(a("top_signatures"), "#5c6bc0"));
    let _ = write!(s, "<h2>Top categories</h2>{}", svg_bars(a("top_categories"), "#26a69a"));
    let _ = write!(s, "<h2>Top sources</h2>{}", table(a("top_sources"), &[0, 1, 2, 3, 4]));
    let _ = write!(s, "<h2>Top destinations</h2>{}", table(a("top_destinations"), &[0, 1, 2, 3, 4]));
    let _ = write!(s, "<h2>Decisions and actions on record</h2>{}", table(a("actions_by_kind"), &[0, 1]));
    let _ = write!(s, "<h2>Pipeline health</h2><p>{} late alerts (after their window); dead-letter records by reason:</p>", esc(&late));
    if r.rejected.is_empty() {
        s.push_str("<p>None: every line was read.</p>");
    } else {
        s.push_str("<table><tr><th>reason</th><th>lines</th></tr>");
        for (k, v) in &r.rejected {
            let _ = write!(s, "<tr><td>{}</td><td>{v}</td></tr>", esc(k));
        }
        s.push_str("</table>");
    }
    let _ = write!(s, "{}", table(a("events_by_type"), &[0, 1]));
    s.push_str(
        "<footer>Every number is a SQL answer over the archive (<code>alertflow report --format json</code> lists the statements).</footer></body></html>",
    );
    s
}

/// The same as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = format!("# Security alerts report\n\narchive `{}`, generated {}\n\n", r.archive, r.generated);
    for (key, a) in &r.answers {
        let _ = writeln!(s, "## {}\n", key.replace('_', " "));
        if a.rows.is_empty() {
            s.push_str("None.\n\n");
            continue;
        }
        let _ = writeln!(s, "| {} |", a.columns.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(a.columns.len()));
        for row in &a.rows {
            let _ = writeln!(s, "| {} |", row.iter().map(|c| c.replace('|', "\\|").replace('\n', " ")).collect::<Vec<_>>().join(" | "));
        }
        s.push('\n');
    }
    s
}
