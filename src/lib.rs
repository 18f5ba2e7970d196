//! alertflow: a streaming alert processor for IDS output.
//!
//! Modules are declared in the order data flows through them:
//! config → ingest (sources, framing) → parse → event (model, batches, time) → state
//! (event-time dedup and correlation of alerts) → archive, wired together by `pipeline`; `api` serves metrics and health; `deadletter` keeps
//! what was refused.

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
pub mod score;
pub mod state;
