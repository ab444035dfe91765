//! Serve: what leaves the agent besides the chain on disk — the gRPC API, the metrics page and
//! the optional stdout printer.

pub mod grpc;
pub mod metrics;
pub mod sink;
