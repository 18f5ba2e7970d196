//! The integration tests, as one test binary: each file of `tests/` is a module here, so
//! the crate and its dependencies are linked once, not once per file. Run one file's tests
//! with `cargo test --test main corpus::`.

mod common;

mod actions;
mod architecture;
mod audit;
mod bad_input;
mod cli;
mod compaction;
mod config_errors;
mod corpus;
mod crash;
mod enrich;
mod limits;
mod operate;
mod properties;
mod reload;
mod retention;
mod score_golden;
mod sigma;
mod state;
mod state_golden;
mod syslog_vectors;
mod transports;
mod triage;
