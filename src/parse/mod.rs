//! Parsing: raw line batches in, columnar event batches out.
//!
//! [`eve::EveParser`] turns one line into an [`EventView`](crate::event::EventView);
//! [`ParseStage`] runs it over a whole [`RawBatch`](crate::event::handoff::RawBatch), appends the
//! good events to an [`EventBatchBuilder`](crate::event::EventBatchBuilder) and sends each
//! rejected line to the dead-letter file with its reason. A bad line never stops the batch.

pub mod eve;
pub mod fast;
pub mod stage;
pub mod syslog;

pub use crate::event::handoff::{BatchStats, ParsedBatch};
pub use eve::{EveParser, ParseLimits};
pub use stage::ParseStage;

pub use crate::event::reject::RejectReason;
