//! `cargo xtask`: the two commands a new user needs (`run`, `test`) and the setup they rely on.

mod package;
mod setup;
mod shell;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use crate::shell::{cargo, is_root, workspace_root};

#[derive(Parser)]
#[command(about = "Lineage project tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build needs (apt packages, bpf-linker, the eBPF toolchain link).
    Setup,
    /// Build the agent and capture, printing live lineage (needs root). Extra args go to
    /// `lineage-agent run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every test: unit tests, the kernel integration tests (needs root), a short fuzz run.
    Test,
    /// Throughput, loss, latency and overhead benchmarks, side by side with auditd (root).
    /// Extra args go to `lineage-bench` (e.g. `--quick`).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A release tarball: binaries, systemd units, default configs, docs.
    Package,
    /// Fuzz every parser of untrusted bytes for a while (cargo-fuzz, nightly).
    Fuzz {
        /// Seconds per fuzz target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::Run { args } => run(args),
        Task::Test => test(),
        Task::Fuzz { secs } => fuzz(secs),
        Task::Bench { args } => bench(args),
        Task::Package => package::run().map(drop),
    }
}

/// The three binaries a deployment needs.
pub(crate) const BINARIES: [&str; 3] = ["lineage-agent", "lineage-collector", "lineagectl"];

pub(crate) fn build_release() -> Result<()> {
    let mut args = vec!["build", "--release"];
    for b in BINARIES {
        args.extend(["-p", b]);
    }
    cargo(&args)
}

fn run(args: Vec<String>) -> Result<()> {
    setup::ensure()?;
    build_release()?;
    if !is_root() {
        bail!("lineage-agent loads eBPF programs: run `cargo xtask run` as root");
    }
    let agent = workspace_root().join("target/release/lineage-agent");
    let mut full = vec!["run".to_string()];
    if !args.iter().any(|a| a == "--print") {
        full.extend(["--print".into(), "text".into()]);
    }
    full.extend(args);
    eprintln!(
        "xtask: starting {} {} (Ctrl-C stops it)",
        agent.display(),
        full.join(" ")
    );
    shell::run_command(std::process::Command::new(agent).args(&full))
}

fn test() -> Result<()> {
    setup::ensure()?;
    if !is_root() {
        bail!(
            "`cargo xtask test` includes kernel tests that load eBPF programs: run it as root \
             (unit tests alone: `cargo test`)"
        );
    }
    build_release()?;
    eprintln!("xtask: unit tests");
    // setup installed the Python checker's packages, so the independent vector check must run.
    std::env::set_var("LINEAGE_REQUIRE_PYTHON_VECTORS", "1");
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--exclude",
        "lineage-tests",
    ])?;
    eprintln!("xtask: kernel integration tests (root, one at a time)");
    let release = workspace_root().join("target/release");
    std::env::set_var("LINEAGE_AGENT", release.join("lineage-agent"));
    std::env::set_var("LINEAGECTL", release.join("lineagectl"));
    std::env::set_var("LINEAGE_COLLECTOR", release.join("lineage-collector"));
    // The systemd tests install exactly what ships: the release tarball.
    std::env::set_var("LINEAGE_PACKAGE", package::run()?);
    // Every test binary runs even after one fails, so one run shows every failure.
    cargo(&[
        "test",
        "--release",
        "--no-fail-fast",
        "-p",
        "lineage-tests",
        "--",
        "--test-threads=1",
    ])?;
    eprintln!("xtask: short fuzz run of every untrusted-input parser");
    fuzz(10)?;
    eprintln!("xtask: all tests passed");
    Ok(())
}

fn fuzz(secs: u64) -> Result<()> {
    setup::ensure_fuzz()?;
    let script = workspace_root().join("evidence/fuzz/run.sh");
    shell::run_command(std::process::Command::new(script).arg(secs.to_string()))
}

fn bench(args: Vec<String>) -> Result<()> {
    setup::ensure()?;
    if !is_root() {
        bail!(
            "the benchmarks load eBPF programs and start auditd: run `cargo xtask bench` as root"
        );
    }
    build_release()?;
    cargo(&["build", "--release", "-p", "lineage-bench"])?;
    let release = workspace_root().join("target/release");
    shell::run_command(
        std::process::Command::new(release.join("lineage-bench"))
            .arg("--agent")
            .arg(release.join("lineage-agent"))
            .arg("--lineagectl")
            .arg(release.join("lineagectl"))
            .arg("--out")
            .arg(workspace_root().join("bench/results"))
            .args(&args),
    )
}
