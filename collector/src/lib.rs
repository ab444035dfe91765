//! The Lineage collector: pulls sealed segments from many agents over their gRPC API,
//! verifies every one with the shared evidence library before accepting it, countersigns the
//! header with its own witness key, and stores segments through `object_store` (a local
//! directory by default, S3-compatible buckets for scale) in the agent's own layout, so
//! `lineagectl verify` works on the collected copy unchanged.
//!
//! Module map:
//! - [`config`]: the TOML file and its validation.
//! - [`client`]: connecting to an agent (Unix socket or mutual TLS).
//! - [`check`]: incremental verification of one segment against the stored chain.
//! - [`store`]: the store layout over `object_store`.
//! - [`state`]: the per-host cursor that makes restarts cheap.
//! - [`witness`]: the collector's witness key and per-segment countersignature.
//! - [`cosigner`]: the C2SP tlog-witness checks and timestamped cosignatures of checkpoints.
//! - [`puller`]: one task per agent.
//! - [`status`]: per-agent status, silence detection and the status file.
//! - [`metrics`]: the Prometheus page rendered from that status.
//! - [`app`]: wiring and lifecycle.

pub mod app;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod cosigner;
pub mod metrics;
pub mod puller;
pub mod state;
pub mod status;
pub mod store;
pub mod witness;
