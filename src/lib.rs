//! alertflow: a streaming alert processor for IDS output.
//!
//! ```text
//! ingest ──RawBatch──► parse ──ParsedBatch──► pipeline::commit ──► archive (events)
//!                                                   │
//!                                                   ▼ alert path (pipeline::alerts)
//!                                  state → enrich → score → output ──► archive (alerts,
//!                                                                      incidents), JSON lines
//! ```
//!
//! Every stage (`ingest`, `parse`, `state`, `enrich`, `score`, `output`, `act`, `archive`)
//! stands on the floor (`event`: the models and hand-off types; `metrics`; `deadletter`)
//! and imports no other stage. `pipeline` alone wires them: it owns the threads and
//! channels, runs the alert path and the commit protocol. `config` turns text into each
//! stage's own config type; `api` serves metrics and health; `demo` replays a sample.
//! See ARCHITECTURE.md; `tests/architecture.rs` keeps the graph one-way.

pub mod act;
pub mod api;
pub mod archive;
pub mod config;
pub mod deadletter;
pub mod demo;
pub mod enrich;
pub mod event;
pub mod ingest;
pub mod metrics;
pub mod output;
pub mod parse;
pub mod pipeline;
#[cfg(feature = "query")]
pub mod query;
pub mod score;
pub mod state;
pub mod triage;
