//! Generates the gRPC code from `lineage/v1/agent.proto`. protox parses the proto in Rust, so
//! no `protoc` binary is needed on any machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "lineage/v1/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["."])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
