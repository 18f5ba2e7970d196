//! Every metric name, in one place. Stages emit per batch, never per event.
//!
//! Labels: `source` (config name of the input), `reason` (a
//! [`RejectReason`](crate::event::reject::RejectReason) name), `field` (a typed field name),
//! `stage` (`ingest`, `parse`, `archive`).

/// Bytes read by a source.
pub const SOURCE_BYTES: &str = "alertflow_source_bytes_total";
/// Line batches sent by a source into the pipeline.
pub const SOURCE_BATCHES: &str = "alertflow_source_batches_total";
/// Lines a source dropped because the pipeline was full (sockets with `overflow = "drop"`).
pub const SOURCE_DROPPED_LINES: &str = "alertflow_source_dropped_lines_total";
/// Files a file source is following.
pub const SOURCE_OPEN_FILES: &str = "alertflow_source_open_files";
/// Rotations and truncations a file source noticed.
pub const SOURCE_ROTATIONS: &str = "alertflow_source_rotations_total";
/// Connections accepted / refused by socket sources.
pub const SOURCE_CONNECTIONS: &str = "alertflow_source_connections_total";
pub const SOURCE_CONNECTIONS_REFUSED: &str = "alertflow_source_connections_refused_total";
/// Connections open now, per source.
pub const SOURCE_ACTIVE_CONNECTIONS: &str = "alertflow_source_active_connections";
/// Connections closed for a timeout, by `kind` (idle, frame, handshake).
pub const SOURCE_TIMEOUTS: &str = "alertflow_source_timeouts_total";
/// TLS handshakes that failed (bad certificate, protocol error).
pub const SOURCE_TLS_FAILURES: &str = "alertflow_source_tls_failures_total";
/// Frames longer than `max_frame_bytes`, skipped.
pub const SOURCE_OVERSIZE_FRAMES: &str = "alertflow_source_oversize_frames_total";
/// Datagrams the kernel dropped because the socket's receive buffer was full.
pub const SOURCE_KERNEL_DROPS: &str = "alertflow_source_kernel_drops_total";
/// Alerts seen by the state stage.
pub const STATE_ALERTS: &str = "alertflow_state_alerts_total";
/// Alerts older than the watermark (archived with `late = true`, outside dedup).
pub const STATE_LATE: &str = "alertflow_state_late_alerts_total";
/// Repeats held back by dedup (counted in roll-ups).
pub const STATE_SUPPRESSED: &str = "alertflow_state_suppressed_total";
/// "Still happening" roll-ups emitted.
pub const STATE_ROLLUPS: &str = "alertflow_state_rollups_total";
/// Incidents opened by correlation rules.
pub const STATE_INCIDENTS_OPENED: &str = "alertflow_state_incidents_opened_total";
/// Gauge: incidents open now (correlation and entity incidents; counted every second).
pub const STATE_INCIDENTS_OPEN: &str = "alertflow_state_incidents_open";
/// Dedup keys evicted because `state.dedup.max_keys` was reached.
pub const STATE_DEDUP_EVICTIONS: &str = "alertflow_state_dedup_evictions_total";
/// JSON lines written to `state.output` (alerts that go on, roll-ups, incident changes).
pub const STATE_NOTIFICATIONS: &str = "alertflow_state_notifications_total";
/// Late alerts by what the policy did: `late_output`, `dropped` (per rule kept out),
/// `reevaluated` (per rule), `corrected` (closed incidents corrected).
pub const STATE_LATE_HANDLED: &str = "alertflow_state_late_handled_total";
/// Context events (flow, dns, http, tls, fileinfo, anomaly) remembered for flow context.
pub const STATE_CONTEXT_EVENTS: &str = "alertflow_state_context_events_total";
/// Flow-context entries evicted (by `reason`: `cap`, `ttl`) and items over `max_items`.
pub const STATE_CONTEXT_EVICTIONS: &str = "alertflow_state_context_evictions_total";
/// Alerts that found flow context.
pub const STATE_CONTEXT_ALERTS: &str = "alertflow_state_alerts_with_context_total";
/// Bytes the flow context holds.
pub const STATE_CONTEXT_BYTES: &str = "alertflow_state_context_bytes";
/// The newest state snapshot: its size, and how long the alert path spent taking it.
pub const STATE_SNAPSHOT_BYTES: &str = "alertflow_state_snapshot_bytes";
pub const STATE_SNAPSHOT_SECONDS: &str = "alertflow_state_snapshot_seconds";
pub const STATE_SNAPSHOTS: &str = "alertflow_state_snapshots_total";
pub const ALERTS_SHED: &str = "alertflow_alerts_shed_total";
/// Alerts enriched.
pub const ENRICH_ALERTS: &str = "alertflow_enrich_alerts_total";
/// GeoIP lookups (src and dest of each alert), and those answered by the memo.
pub const ENRICH_GEO_LOOKUPS: &str = "alertflow_enrich_geo_lookups_total";
pub const ENRICH_GEO_MEMO_HITS: &str = "alertflow_enrich_geo_memo_hits_total";
/// Lookups that failed, by reason (`bad_ip`, `geo_decode`).
pub const ENRICH_LOOKUP_FAILURES: &str = "alertflow_enrich_lookup_failures_total";
/// `intel_alert` lines for indicators in traffic without an alert, and repeats held back.
pub const ENRICH_SIGHTINGS: &str = "alertflow_enrich_sightings_total";
pub const ENRICH_SIGHTINGS_REPEATED: &str = "alertflow_enrich_sightings_repeated_total";
/// Source loads, by `source` and `result` (`ok`, `failed`).
pub const ENRICH_RELOADS: &str = "alertflow_enrich_reloads_total";
/// When each source's current version was loaded (Unix seconds).
pub const ENRICH_SOURCE_LOADED: &str = "alertflow_enrich_source_loaded_timestamp_seconds";
/// Indicators a feed holds now.
pub const ENRICH_INDICATORS: &str = "alertflow_enrich_indicators";
/// Archived events a retro-hunt found with new indicators.
pub const RETRO_HUNT_MATCHES: &str = "alertflow_retro_hunt_matches_total";
/// Alerts triage assessed.
pub const TRIAGE_ALERTS: &str = "alertflow_triage_alerts_total";
/// Entity incidents opened.
pub const TRIAGE_INCIDENTS: &str = "alertflow_triage_incidents_opened_total";
/// Entries dropped from a full triage map, by `map` (`entities`, `signatures`, `pairs`).
pub const TRIAGE_EVICTED: &str = "alertflow_triage_evicted_total";
/// Hosts triage holds.
pub const TRIAGE_ENTITIES: &str = "alertflow_triage_entities";
/// Alerts scored, by priority.
pub const SCORE_ALERTS: &str = "alertflow_score_alerts_total";
/// Rule evaluations that failed (type errors…): the rule does not match.
pub const SCORE_RULE_ERRORS: &str = "alertflow_score_rule_errors_total";
/// Redis: entries acknowledged (list: removed from the processing list; stream: XACK).
pub const REDIS_ACKED: &str = "alertflow_redis_acked_total";
/// Redis: entries already archived before a restart, acknowledged without re-archiving.
pub const REDIS_ALREADY_ARCHIVED: &str = "alertflow_redis_already_archived_total";
/// Redis stream: entries trimmed from the stream before this group read them.
pub const REDIS_STREAM_GAP: &str = "alertflow_redis_stream_gap_entries_total";
/// Redis stream: pending entries claimed from consumers that stopped.
pub const REDIS_CLAIMED: &str = "alertflow_redis_claimed_total";
/// Redis: connections lost (for channels: windows in which messages may have been missed).
pub const REDIS_DISCONNECTS: &str = "alertflow_redis_disconnects_total";

/// EVE lines kept by repairing escapes JSON does not allow: Suricata's `\xNN` and UTF-16
/// surrogate escapes without their pair (replaced by U+FFFD in the typed columns; `raw`
/// keeps the line as it came).
pub const REPAIRED_ESCAPES: &str = "alertflow_parse_repaired_escapes_total";
/// Events whose time is implausible, archived under the hour they arrived.
pub const IMPLAUSIBLE_TIMES: &str = "alertflow_parse_implausible_times_total";
/// Lines received by the parse stage (blank lines included).
pub const PARSE_LINES: &str = "alertflow_parse_lines_total";
/// Blank lines skipped.
pub const PARSE_BLANK_LINES: &str = "alertflow_parse_blank_lines_total";
/// Events parsed and sent on.
pub const PARSE_EVENTS: &str = "alertflow_parse_events_total";
/// Lines rejected, by `reason`.
pub const REJECTED_LINES: &str = "alertflow_rejected_lines_total";
/// Typed fields present but unusable (kept as null), by `field`.
pub const FIELD_INVALID: &str = "alertflow_field_invalid_total";
/// Messages claiming RFC 5424 that broke one of its rules (read leniently), by `rule`.
pub const SYSLOG_NONCONFORMING: &str = "alertflow_syslog_rfc5424_nonconforming_total";
/// Syslog messages with a JSON payload that was not a valid EVE event (kept as `syslog`).
pub const SYSLOG_PAYLOAD_INVALID: &str = "alertflow_syslog_payload_invalid_total";
/// Syslog lines that were not UTF-8 and were stored decoded as Latin-1.
pub const SYSLOG_LATIN1: &str = "alertflow_syslog_latin1_total";
/// Events without an event time (EVE `"ts-error"`, a syslog message without a date).
pub const TIMESTAMP_ERRORS: &str = "alertflow_timestamp_errors_total";
/// Dead-letter records not written because the file reached its cap.
pub const DEADLETTER_DROPPED: &str = "alertflow_deadletter_dropped_total";

/// Rows written to archive segments (sealed or not yet sealed).
pub const ARCHIVE_ROWS: &str = "alertflow_archive_rows_total";
/// Segments sealed (renamed into place).
pub const ARCHIVE_SEGMENTS: &str = "alertflow_archive_segments_sealed_total";
/// Bytes of sealed Parquet.
pub const ARCHIVE_BYTES: &str = "alertflow_archive_bytes_total";
/// Commits (a set of segments sealed together with their source positions).
pub const ARCHIVE_COMMITS: &str = "alertflow_archive_commits_total";
/// Rows buffered in open (unsealed) segments.
pub const ARCHIVE_OPEN_ROWS: &str = "alertflow_archive_open_rows";
/// Open partition writers.
pub const ARCHIVE_OPEN_PARTITIONS: &str = "alertflow_archive_open_partitions";
/// Batches that waited because every writer lane's queue was full (the archive is the
/// bottleneck: more `writer_threads` or a cheaper codec).
pub const ARCHIVE_LANE_WAITS: &str = "alertflow_archive_lane_waits_total";
/// Archive write failures (the pipeline stops on these).
pub const ARCHIVE_ERRORS: &str = "alertflow_archive_errors_total";
/// Partitions removed by retention, and their bytes.
pub const ARCHIVE_RETENTION_PARTITIONS: &str = "alertflow_archive_retention_partitions_total";
pub const ARCHIVE_RETENTION_BYTES: &str = "alertflow_archive_retention_bytes_total";
/// Partitions compacted, and the segments they replaced.
pub const ARCHIVE_COMPACTIONS: &str = "alertflow_archive_compactions_total";
pub const ARCHIVE_COMPACTED_SEGMENTS: &str = "alertflow_archive_compacted_segments_total";

/// Actions queued in the outbox, by `action` (destination name).
pub const ACTIONS_QUEUED: &str = "alertflow_actions_queued_total";
/// Actions delivered, by `action`.
pub const ACTIONS_DELIVERED: &str = "alertflow_actions_delivered_total";
/// Failed attempts that will be tried again, by `action`.
pub const ACTIONS_RETRIES: &str = "alertflow_actions_retries_total";
/// Actions given up (dead letters), by `action`.
pub const ACTIONS_DEAD: &str = "alertflow_actions_dead_total";
/// Picks that queued nothing, by `reason` (duplicate, cooldown, queue_full, condition_error).
pub const ACTIONS_SKIPPED: &str = "alertflow_actions_skipped_total";
/// Actions waiting to be delivered.
pub const ACTIONS_PENDING: &str = "alertflow_actions_pending";
/// Destinations whose circuit is open (deliveries paused after repeated failures).
pub const ACTIONS_OPEN_CIRCUITS: &str = "alertflow_actions_open_circuits";

/// Batches waiting in the channel in front of a stage, by `stage`.
pub const QUEUE_DEPTH: &str = "alertflow_queue_depth_batches";

/// Registers help texts with the installed recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(SOURCE_BYTES, Unit::Bytes, "bytes read by a source");
    describe_counter!(SOURCE_BATCHES, "line batches sent by a source");
    describe_counter!(SOURCE_DROPPED_LINES, "lines dropped by a source because the pipeline was full");
    describe_gauge!(SOURCE_OPEN_FILES, "files a file source is following");
    describe_counter!(SOURCE_ROTATIONS, "rotations and truncations noticed by file sources");
    describe_counter!(SOURCE_CONNECTIONS, "connections accepted by socket sources");
    describe_counter!(SOURCE_CONNECTIONS_REFUSED, "connections refused by socket sources (over the cap)");
    describe_gauge!(SOURCE_ACTIVE_CONNECTIONS, "connections open now");
    describe_counter!(SOURCE_TIMEOUTS, "connections closed for a timeout, by kind (idle, frame, handshake)");
    describe_counter!(SOURCE_TLS_FAILURES, "TLS handshakes that failed");
    describe_counter!(SOURCE_OVERSIZE_FRAMES, "frames longer than max_frame_bytes, skipped");
    describe_counter!(SOURCE_KERNEL_DROPS, "datagrams the kernel dropped for lack of receive-buffer room");
    describe_counter!(STATE_ALERTS, "alerts seen by the state stage");
    describe_gauge!(STATE_SNAPSHOT_BYTES, "size of the newest state snapshot (whole or delta)");
    describe_counter!(ALERTS_SHED, "alerts left out of the alert path while it was behind ([state.overload] shed), by severity");
    describe_counter!(STATE_SNAPSHOTS, "state snapshots written, by kind (whole, delta: what changed since the one before)");
    describe_gauge!(
        STATE_SNAPSHOT_SECONDS,
        "time the alert path spent on the newest state snapshot (a whole one serialized; a delta's entries copied out, in slices)"
    );
    describe_counter!(STATE_LATE, "alerts older than the watermark, archived with late = true");
    describe_counter!(STATE_SUPPRESSED, "repeats held back by dedup");
    describe_counter!(STATE_ROLLUPS, "still-happening roll-ups emitted");
    describe_counter!(STATE_INCIDENTS_OPENED, "incidents opened by correlation rules");
    describe_gauge!(STATE_INCIDENTS_OPEN, "incidents open now (correlation and entity incidents)");
    describe_counter!(STATE_DEDUP_EVICTIONS, "dedup keys evicted at state.dedup.max_keys");
    describe_counter!(STATE_NOTIFICATIONS, "JSON lines written to state.output");
    describe_counter!(STATE_LATE_HANDLED, "late alerts by what their policy did (policy label)");
    describe_counter!(STATE_CONTEXT_EVENTS, "context events remembered for flow context");
    describe_counter!(STATE_CONTEXT_EVICTIONS, "flow-context entries evicted (reason label: cap, ttl, items)");
    describe_counter!(STATE_CONTEXT_ALERTS, "alerts that found flow context");
    describe_gauge!(STATE_CONTEXT_BYTES, "bytes held by the flow context");
    describe_counter!(ENRICH_ALERTS, "alerts enriched");
    describe_counter!(ENRICH_GEO_LOOKUPS, "GeoIP lookups of alert addresses");
    describe_counter!(ENRICH_GEO_MEMO_HITS, "GeoIP lookups answered by the per-thread memo");
    describe_counter!(ENRICH_LOOKUP_FAILURES, "enrichment lookups that failed, by reason");
    describe_counter!(SCORE_ALERTS, "alerts scored, by priority");
    describe_counter!(TRIAGE_ALERTS, "alerts triage assessed (direction, entity, stage, rarity, risk)");
    describe_counter!(TRIAGE_INCIDENTS, "entity incidents opened");
    describe_counter!(TRIAGE_EVICTED, "entries dropped from a full triage map, by map");
    describe_gauge!(TRIAGE_ENTITIES, "hosts triage holds");
    describe_counter!(ENRICH_SIGHTINGS, "intel_alert lines for indicators seen in traffic without an alert");
    describe_counter!(ENRICH_SIGHTINGS_REPEATED, "indicator sightings held back as repeats within the hour");
    describe_counter!(SCORE_RULE_ERRORS, "scoring rule evaluations that failed");
    describe_counter!("alertflow_enrich_reloads_total", "enrichment source loads by source and result (ok, failed)");
    describe_gauge!("alertflow_enrich_indicators", "indicators per threat-intel feed");
    describe_gauge!("alertflow_enrich_source_loaded_timestamp_seconds", "when each enrichment source was last loaded");
    describe_counter!(REDIS_ACKED, "Redis entries acknowledged after their segment was sealed");
    describe_counter!(REDIS_ALREADY_ARCHIVED, "Redis entries found archived at restart, acknowledged without re-archiving");
    describe_counter!(REDIS_STREAM_GAP, "Redis stream entries trimmed before the group read them");
    describe_counter!(REDIS_CLAIMED, "Redis stream pending entries claimed from stopped consumers");
    describe_counter!(REDIS_DISCONNECTS, "Redis connections lost");
    describe_counter!(PARSE_LINES, "lines received by the parse stage");
    describe_counter!(PARSE_BLANK_LINES, "blank lines skipped");
    describe_counter!(PARSE_EVENTS, "events parsed and sent on");
    describe_counter!(REJECTED_LINES, "lines rejected, by reason");
    describe_counter!(FIELD_INVALID, "typed fields present but unusable (archived as null), by field");
    describe_counter!(TIMESTAMP_ERRORS, "events without an event time (EVE ts-error, syslog without a date)");
    describe_counter!(SYSLOG_NONCONFORMING, "messages claiming RFC 5424 that broke a rule and were read leniently, by rule");
    describe_counter!(SYSLOG_PAYLOAD_INVALID, "syslog messages whose JSON payload was not a valid EVE event (kept as syslog events)");
    describe_counter!(SYSLOG_LATIN1, "syslog lines that were not UTF-8, stored decoded as Latin-1");
    describe_counter!(REPAIRED_ESCAPES, "EVE lines kept by repairing \\xNN and lone surrogate escapes");
    describe_counter!(IMPLAUSIBLE_TIMES, "events with a time outside the plausible window, archived under the hour they arrived");
    describe_counter!(DEADLETTER_DROPPED, "dead-letter records not written (file cap reached)");
    describe_counter!(ARCHIVE_ROWS, "rows written to archive segments");
    describe_counter!(ARCHIVE_SEGMENTS, "archive segments sealed");
    describe_counter!(ARCHIVE_BYTES, Unit::Bytes, "bytes of sealed parquet");
    describe_counter!(ARCHIVE_COMMITS, "archive commits");
    describe_gauge!(ARCHIVE_OPEN_ROWS, "rows in open segments");
    describe_gauge!(ARCHIVE_OPEN_PARTITIONS, "open partition writers");
    describe_counter!(ARCHIVE_LANE_WAITS, "batches that waited for a writer lane (every lane's queue full)");
    describe_counter!(ARCHIVE_ERRORS, "archive write failures");
    describe_counter!(ARCHIVE_RETENTION_PARTITIONS, "date partitions removed by retention");
    describe_counter!(ARCHIVE_RETENTION_BYTES, "bytes of the partitions removed by retention");
    describe_counter!(ARCHIVE_COMPACTIONS, "partitions whose segments were merged into larger files");
    describe_counter!(ARCHIVE_COMPACTED_SEGMENTS, "segments replaced by compacted files");
    describe_gauge!(QUEUE_DEPTH, "batches waiting in front of a stage");
    describe_counter!(ACTIONS_QUEUED, "actions queued in the outbox, by destination");
    describe_counter!(ACTIONS_DELIVERED, "actions delivered, by destination");
    describe_counter!(ACTIONS_RETRIES, "failed action attempts that will be retried, by destination");
    describe_counter!(ACTIONS_DEAD, "actions given up (dead letters), by destination");
    describe_counter!(ACTIONS_SKIPPED, "trigger picks that queued nothing, by reason");
    describe_gauge!(ACTIONS_PENDING, "actions waiting to be delivered");
    describe_gauge!(ACTIONS_OPEN_CIRCUITS, "destinations with an open circuit");
}
