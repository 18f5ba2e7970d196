//! `alertflow query`: SQL over the archive (Apache DataFusion).
//!
//! Every table of the archive that has data (`events`, `alerts`, `incidents`, `actions`) is
//! registered by name over its Hive folders, with `date` (a date) and `hour` (an integer)
//! read from the folder names; a condition on them opens only the matching folders, and
//! `--since` / `--until` add one to every table. JSON-text columns (`enrichment`, `reasons`,
//! `context`, `detail`, …) work with the JSON functions (`json_get_str(reasons, 0, 'rule')`,
//! `json_get_int(detail, 'count')`, `->`, `->>`). Errors are one line each; the caller
//! exits 2 on them.

pub mod report;
pub mod saved;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::prelude::SessionContext;

/// One line for the user.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

fn err(s: impl Into<String>) -> QueryError {
    QueryError(s.into())
}

/// A table of the archive: its name, its folder of `date=…/hour=…` partitions, and the
/// column `--since` and `--until` bound.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: &'static str,
    pub dir: PathBuf,
    pub time_column: &'static str,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// The archive root (for messages).
    pub root: PathBuf,
    /// The tables that have data.
    pub tables: Vec<TableSpec>,
    pub sql: String,
    /// Event time bounds (µs), applied to every table's partitions and time column.
    pub since_us: Option<i64>,
    pub until_us: Option<i64>,
}

fn date_hour(us: i64) -> (String, i32) {
    let t = jiff::Timestamp::from_microsecond(us).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    // Timestamps format in UTC.
    (t.strftime("%Y-%m-%d").to_string(), t.strftime("%H").to_string().parse().unwrap_or(0))
}

/// The condition `--since` / `--until` put on a table: on the partitions (so only their
/// folders are opened) and on the time column (so the bounds are exact).
fn bounds(t: &TableSpec, since: Option<i64>, until: Option<i64>) -> Option<String> {
    let mut w = Vec::new();
    let ts = |us: i64| jiff::Timestamp::from_microsecond(us).map(|t| t.to_string()).unwrap_or_default();
    if let Some(s) = since {
        let (d, h) = date_hour(s);
        w.push(format!("(date > DATE '{d}' OR (date = DATE '{d}' AND hour >= {h}))"));
        w.push(format!("{} >= TIMESTAMP '{}'", t.time_column, ts(s)));
    }
    if let Some(u) = until {
        let (d, h) = date_hour(u);
        w.push(format!("(date < DATE '{d}' OR (date = DATE '{d}' AND hour <= {h}))"));
        w.push(format!("{} < TIMESTAMP '{}'", t.time_column, ts(u)));
    }
    (!w.is_empty()).then(|| w.join(" AND "))
}

/// Views over the change log of `incidents`, the same in `alertflow query` and in DuckDB
/// ([`duckdb_views`]): `incidents_now`, each incident's latest state (one row per
/// incident, no window function needed by its reader), and `incident_members`, every
/// member of every incident once (the change rows list the members that joined since the
/// previous one; together they list each member once).
pub const INCIDENT_VIEWS: [(&str, &str); 2] = [
    (
        "incidents_now",
        "SELECT incident_id, rule, group_key, status, first_seen, last_seen, alert_count, score, priority, reasons, recommendations, context, date, hour \
         FROM (SELECT *, row_number() OVER (PARTITION BY incident_id ORDER BY last_seen DESC, alert_count DESC, \
         CASE status WHEN 'closed' THEN 1 ELSE 0 END DESC) AS change_rank FROM incidents) AS changes WHERE change_rank = 1",
    ),
    ("incident_members", "SELECT DISTINCT incident_id, alert_id FROM (SELECT incident_id, unnest(alert_ids) AS alert_id FROM incidents) AS members"),
];

/// The archive's tables and [`INCIDENT_VIEWS`] as DuckDB views (`alertflow query
/// --duckdb-views`): `date` a DATE and `hour` an INTEGER as in `alertflow query`.
pub fn duckdb_views(tables: &[TableSpec]) -> String {
    let mut out = String::new();
    for t in tables {
        let glob = format!("{}/**/*.parquet", t.dir.display()).replace('\'', "''");
        out.push_str(&format!(
            "CREATE OR REPLACE VIEW {} AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, hive_types = {{'date': DATE, 'hour': INTEGER}});\n",
            t.name
        ));
    }
    if tables.iter().any(|t| t.name == "incidents") {
        for (name, sql) in INCIDENT_VIEWS {
            out.push_str(&format!("CREATE OR REPLACE VIEW {name} AS {sql};\n"));
        }
    }
    out
}

/// The tables a statement names, or `None` when that cannot be told (then every table is
/// registered and the planner reports what is wrong). A view over `incidents` brings it.
fn named_tables(ctx: &SessionContext, sql: &str) -> Option<Vec<String>> {
    if sql.trim().is_empty() {
        return None;
    }
    let state = ctx.state();
    let statement = state.sql_to_statement(sql, &state.config().options().sql_parser.dialect).ok()?;
    let refs = state.resolve_table_references(&statement).ok()?;
    let mut names: Vec<String> = refs.iter().map(|r| r.table().to_string()).collect();
    if names.iter().any(|n| INCIDENT_VIEWS.iter().any(|(v, _)| v == n)) {
        names.push("incidents".into());
    }
    Some(names)
}

/// The segment of `dir` (a table's folder of `date=…/hour=…` partitions) in the newest
/// partition: the newest schema (columns are only ever added), read from one footer
/// instead of every file's.
fn newest_segment(dir: &Path) -> Option<PathBuf> {
    let newest_child = |d: &Path, prefix: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)))
            .collect();
        // `hour=9` sorts after `hour=10` as text: compare the numbers.
        v.sort_by_key(|p| {
            let n = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let value = n[prefix.len()..].to_string();
            (value.parse::<i64>().ok(), value)
        });
        v.pop()
    };
    let date = newest_child(dir, "date=")?;
    let hour = newest_child(&date, "hour=")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&hour)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| !n.to_string_lossy().starts_with('.')) && p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files.pop()
}

/// A table over its Hive folders, its schema from its newest segment when one is found
/// (else from every file, as DataFusion does by default).
async fn listing_table(ctx: &SessionContext, dir: &Path) -> Result<ListingTable, QueryError> {
    let fail = |e: &dyn std::fmt::Display| err(format!("{}: {e}", dir.display()));
    let url = ListingTableUrl::parse(format!("{}/", dir.display())).map_err(|e| fail(&e))?;
    let format = Arc::new(ParquetFormat::default());
    let opts = ListingOptions::new(format.clone())
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![("date".to_string(), DataType::Date32), ("hour".to_string(), DataType::Int32)]);
    let state = ctx.state();
    let schema = match newest_segment(dir) {
        Some(file) => {
            use datafusion::datasource::file_format::FileFormat;
            use datafusion::object_store::ObjectStoreExt;
            let store = ctx.runtime_env().object_store(url.object_store()).map_err(|e| fail(&e))?;
            let location = datafusion::object_store::path::Path::from_filesystem_path(&file).map_err(|e| fail(&e))?;
            let meta = store.head(&location).await.map_err(|e| fail(&e))?;
            Some(format.infer_schema(&state, &store, &[meta]).await.map_err(|e| fail(&e))?)
        }
        None => None,
    };
    let cfg = ListingTableConfig::new(url).with_listing_options(opts);
    let cfg = match schema {
        Some(s) => cfg.with_schema(s),
        None => cfg.infer_schema(&state).await.map_err(|e| fail(&e))?,
    };
    ListingTable::try_new(cfg).map_err(|e| fail(&e))
}

/// DataFusion's settings: its defaults, then any `DATAFUSION_*` environment variable
/// (e.g. `DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true`).
fn session_config() -> Result<datafusion::prelude::SessionConfig, QueryError> {
    datafusion::prelude::SessionConfig::from_env().map_err(|e| err(format!("DataFusion setting from the environment: {e}")))
}

/// A session over the archive: the tables with data that the statement names (every one
/// when it names none, as for the report) registered (behind a view when bounded by time).
pub async fn context(req: &Request) -> Result<SessionContext, QueryError> {
    let (root, since, until) = (&req.root, req.since_us, req.until_us);
    if !root.is_dir() {
        return Err(err(format!("{}: no such archive", root.display())));
    }
    if req.tables.is_empty() {
        return Err(err(format!("{}: the archive has no tables yet (nothing archived)", root.display())));
    }
    let mut ctx = SessionContext::new_with_config(session_config()?);
    datafusion_functions_json::register_all(&mut ctx).map_err(|e| err(e.to_string()))?;
    let named = named_tables(&ctx, &req.sql);
    let wanted = |name: &str| named.as_ref().is_none_or(|n| n.iter().any(|x| x == name));
    for t in req.tables.iter().filter(|t| wanted(t.name)) {
        let table = listing_table(&ctx, &t.dir).await?;
        match bounds(t, since, until) {
            None => {
                ctx.register_table(t.name, Arc::new(table)).map_err(|e| err(e.to_string()))?;
            }
            Some(w) => {
                let all = format!("__{}_all", t.name);
                ctx.register_table(all.as_str(), Arc::new(table)).map_err(|e| err(e.to_string()))?;
                ctx.sql(&format!("CREATE VIEW {} AS SELECT * FROM {all} WHERE {w}", t.name)).await.map_err(|e| err(e.to_string()))?;
            }
        }
    }
    if req.tables.iter().any(|t| t.name == "incidents") {
        for (name, sql) in INCIDENT_VIEWS.iter().filter(|(v, _)| wanted(v)) {
            ctx.sql(&format!("CREATE VIEW {name} AS {sql}")).await.map_err(|e| err(format!("view {name}: {e}")))?;
        }
    }
    Ok(ctx)
}

/// A DataFusion message as one line, with what the user can do about it.
fn explain(e: datafusion::error::DataFusionError, req: &Request) -> QueryError {
    let msg = e.strip_backtrace().replace('\n', " ");
    if let Some(rest) = msg.split("table '").nth(1).filter(|_| msg.contains("not found")) {
        let name = rest.split('\'').next().unwrap_or_default().rsplit('.').next().unwrap_or_default().to_string();
        let have: Vec<&str> = req.tables.iter().map(|t| t.name).collect();
        return err(format!("unknown table `{name}` (tables with data: {})", have.join(", ")));
    }
    err(msg)
}

/// Runs one read-only statement (no DDL, DML or `SET`) for a tool: at most `max_rows`
/// rows, and whether more were cut off.
pub async fn run_limited(req: &Request, max_rows: usize) -> Result<(Vec<RecordBatch>, bool), QueryError> {
    let ctx = context(req).await?;
    let opts = datafusion::execution::context::SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let df = ctx.sql_with_options(&req.sql, opts).await.map_err(|e| explain(e, req))?;
    let df = df.limit(0, Some(max_rows + 1)).map_err(|e| explain(e, req))?;
    let mut batches = df.collect().await.map_err(|e| explain(e, req))?;
    let mut left = max_rows;
    let mut truncated = false;
    for b in batches.iter_mut() {
        if b.num_rows() > left {
            *b = b.slice(0, left);
            truncated = true;
        }
        left -= b.num_rows();
    }
    Ok((batches, truncated))
}

/// The answer as JSON: `{"columns": [...], "rows": [[...]], "truncated": bool}` (values
/// as Arrow's JSON writer gives them).
pub fn json_answer(batches: &[RecordBatch], truncated: bool) -> Result<String, QueryError> {
    let columns: Vec<String> = batches.first().map(|b| b.schema().fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default();
    let mut buf = Vec::new();
    {
        let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
        for b in batches {
            w.write(b).map_err(|e| err(e.to_string()))?;
        }
        w.finish().map_err(|e| err(e.to_string()))?;
    }
    let objects: Vec<serde_json::Map<String, serde_json::Value>> =
        if buf.is_empty() { Vec::new() } else { serde_json::from_slice(&buf).map_err(|e| err(e.to_string()))? };
    let rows: Vec<Vec<serde_json::Value>> =
        objects.into_iter().map(|mut o| columns.iter().map(|c| o.remove(c).unwrap_or(serde_json::Value::Null)).collect()).collect();
    Ok(serde_json::json!({"columns": columns, "rows": rows, "truncated": truncated}).to_string())
}

/// The answer as an Arrow IPC stream.
pub fn arrow_answer(batches: &[RecordBatch]) -> Result<Vec<u8>, QueryError> {
    let Some(first) = batches.first() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    {
        let mut w = datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut out, &first.schema()).map_err(|e| err(e.to_string()))?;
        for b in batches {
            w.write(b).map_err(|e| err(e.to_string()))?;
        }
        w.finish().map_err(|e| err(e.to_string()))?;
    }
    Ok(out)
}

/// Runs one statement; every batch of the answer.
pub fn run(req: &Request) -> Result<Vec<RecordBatch>, QueryError> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| err(e.to_string()))?;
    rt.block_on(async {
        let ctx = context(req).await?;
        let df = ctx.sql(&req.sql).await.map_err(|e| explain(e, req))?;
        df.collect().await.map_err(|e| explain(e, req))
    })
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// The answer as text.
pub fn render(batches: &[RecordBatch], f: Format) -> Result<String, QueryError> {
    match f {
        Format::Table => Ok(datafusion::arrow::util::pretty::pretty_format_batches(batches).map_err(|e| err(e.to_string()))?.to_string()),
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
                for b in batches {
                    w.write(b).map_err(|e| err(e.to_string()))?;
                }
            }
            String::from_utf8(out).map_err(|e| err(e.to_string()))
        }
        Format::Json => {
            let mut out = Vec::new();
            {
                let mut w = datafusion::arrow::json::LineDelimitedWriter::new(&mut out);
                for b in batches {
                    w.write(b).map_err(|e| err(e.to_string()))?;
                }
                w.finish().map_err(|e| err(e.to_string()))?;
            }
            String::from_utf8(out).map_err(|e| err(e.to_string()))
        }
    }
}

/// Writes the answer as one Parquet file.
pub fn write_parquet(batches: &[RecordBatch], path: &Path) -> Result<(), QueryError> {
    let Some(first) = batches.first() else { return Err(err("the answer has no rows: nothing to write")) };
    let f = std::fs::File::create(path).map_err(|e| err(format!("{}: {e}", path.display())))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(f, first.schema(), None).map_err(|e| err(e.to_string()))?;
    for b in batches {
        w.write(b).map_err(|e| err(e.to_string()))?;
    }
    w.close().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// `24h`, `7d`, `90m`, `30s`, or an RFC 3339 time → µs since the epoch (relative to `now_us`).
pub fn parse_time(s: &str, now_us: i64) -> Result<i64, QueryError> {
    let s = s.trim();
    let unit = |c: char| -> Option<i64> {
        Some(match c {
            's' => 1_000_000,
            'm' => 60_000_000,
            'h' => 3_600_000_000,
            'd' => 86_400_000_000,
            'w' => 7 * 86_400_000_000,
            _ => return None,
        })
    };
    if let Some(c) = s.chars().last() {
        if let (Some(u), Ok(n)) = (unit(c), s[..s.len() - 1].parse::<i64>()) {
            return Ok(now_us - n.saturating_mul(u));
        }
    }
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t.as_microsecond());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        // A date alone: its midnight, UTC.
        return format!("{d}T00:00:00Z").parse::<jiff::Timestamp>().map(|t| t.as_microsecond()).map_err(|e| err(e.to_string()));
    }
    Err(err(format!("`{s}` is not a time: use 24h, 7d, 90m, or 2026-11-18T10:00:00Z")))
}
