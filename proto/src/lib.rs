//! The `lineage.v1` API and event model. The `.proto` files are the contract; any protobuf
//! toolchain can generate a client and decode events from them.
//!
//! Besides the generated messages this crate holds what every Rust user of events shares:
//! the EVENT payload schemas of the evidence chain ([`payload`]) and the canonical JSON form
//! of timestamps ([`timestamp`]).

pub mod codec;
pub mod payload;
pub mod syscall;
pub mod timestamp;

#[allow(
    clippy::all,
    reason = "generated code (prost, tonic, pbjson); whether a lint fires in it varies with the generators, so `expect` would warn"
)]
pub mod v1 {
    tonic::include_proto!("lineage.v1");
    include!(concat!(env!("OUT_DIR"), "/lineage.v1.serde.rs"));
    include!(concat!(env!("OUT_DIR"), "/kinds.rs"));
}
