//! Reaching a Lineage agent's gRPC API from Rust: the one connector `lineagectl`, the collector
//! and the bench share (see README.md for why it is its own crate).

mod assemble;
mod connect;
mod explain;
mod target;

pub use assemble::{AssembleError, SegmentAssembler, MAX_SEGMENT_BYTES};
pub use connect::{connect, error_chain, Client, ConnectError, Tls, DEFAULT_SOCKET};
pub use explain::explain;
pub use target::{Target, TargetError};
