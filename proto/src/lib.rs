//! The `lineage.v1` API. The `.proto` file is the contract; any gRPC toolchain can generate a
//! client from it.

#[expect(clippy::all, reason = "generated code")]
pub mod v1 {
    tonic::include_proto!("lineage.v1");
}
