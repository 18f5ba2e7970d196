//! alertflow: a streaming alert processor for IDS output.
//!
//! Modules are declared in the order data flows through them:
//! config → ingest (sources, framing) → parse → event (model, batches, time) → state
//! (event-time dedup and correlation of alerts) → archive, wired together by `pipeline`; `api` serves metrics and health; `deadletter` keeps
//! what was refused.

pub mod config;
pub mod ingest;
pub mod parse;
pub mod event;
pub mod state;
pub mod archive;
pub mod pipeline;
pub mod deadletter;
pub mod metrics;
pub mod api;
pub mod demo;
pub mod enrich;
pub mod score;
pub mod output;
