//! Capture: ring-buffer bytes → decoded records → loss reconciliation → lineage join, ending in
//! the typed events that the recorder puts on the chain.

pub mod container;
pub mod decode;
pub mod event;
pub mod fileops;
pub mod lineage;
pub mod loss;
pub mod names;
pub mod pipeline;
pub mod snapshot;
pub mod stats;
pub mod sysops;
pub mod tamper;
pub mod uring;
pub mod worker;
