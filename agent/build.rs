//! Builds the kernel programs (`agent-ebpf`) with the eBPF toolchain and leaves the object in
//! OUT_DIR, where `probes.rs` embeds it: the agent binary is the one file to deploy.
//!
//! The eBPF target needs `-Z build-std=core` and a compiler that ships `rust-src`; `cargo xtask
//! setup` links such a toolchain into rustup under the name below.

use anyhow::Context as _;
use aya_build::{Package, Toolchain};

/// The rustup toolchain `cargo xtask setup` links (Debian's rustc with its std source).
const EBPF_TOOLCHAIN: &str = "lineage-bpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=LINEAGE_EBPF_TOOLCHAIN");
    let toolchain =
        std::env::var("LINEAGE_EBPF_TOOLCHAIN").unwrap_or_else(|_| EBPF_TOOLCHAIN.into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?;
    let root_dir = format!("{manifest_dir}/../agent-ebpf");
    // `-Z build-std` on a stable compiler: the nested `rustup run ... cargo` inherits this.
    std::env::set_var("RUSTC_BOOTSTRAP", "1");
    let package = Package {
        name: "agent-ebpf",
        root_dir: &root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&toolchain)).with_context(|| {
        format!(
            "building the eBPF programs with rustup toolchain `{toolchain}` failed; \
             run `cargo xtask setup`"
        )
    })
}
