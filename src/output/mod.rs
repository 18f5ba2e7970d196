//! Outputs of the alert path: the rows of the `alerts` and `incidents` tables
//! ([`rows`]), the JSON lines for downstream tools ([`lines`]), and the JSONL files those
//! lines are appended to once the commit holding their rows has landed ([`file`]).
//!
//! In: decided, enriched and scored alerts and incident changes (`event::alert`,
//! `event::enriched`, `event::scored`). Out: Arrow batches and text. Depends on `event/`
//! alone.

pub mod audit;
pub mod file;
pub mod lines;
pub mod rows;
