//! `cargo xtask`: the two commands a new user needs (`run`, `test`) and the setup they rely on.

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
    /// Every test: unit tests, then the kernel integration tests (needs root).
    Test,
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::Run { args } => run(args),
        Task::Test => test(),
    }
}

fn build_release() -> Result<()> {
    cargo(&[
        "build",
        "--release",
        "-p",
        "lineage-agent",
        "-p",
        "lineagectl",
    ])
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
    cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "agent-ebpf",
        "--exclude",
        "lineage-tests",
    ])?;
    eprintln!("xtask: kernel integration tests (root, one at a time)");
    let agent = workspace_root().join("target/release/lineage-agent");
    std::env::set_var("LINEAGE_AGENT", &agent);
    cargo(&[
        "test",
        "--release",
        "-p",
        "lineage-tests",
        "--",
        "--test-threads=1",
    ])?;
    eprintln!("xtask: all tests passed");
    Ok(())
}
