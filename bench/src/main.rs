//! `lineage-bench`: the benchmark suite for issue 7 (`cargo xtask bench`).
//!
//! Sections: pipeline capacity without the kernel, a paced sweep of exec/openat/connect storms
//! checked against the chain (kernel to disk, loss), the same storms unpaced with no agent,
//! with Lineage and with auditd (overhead), exec → Tail and exec → sealed latency, and the
//! agent's CPU and memory. Results go to `--out` as `latest.md` / `latest.json` plus a
//! timestamped copy. Method and how to read the numbers: `docs/BENCHMARKS.md`.
//!
//! `lineage-bench gen ...` is the workload generator the suite starts as a child process.

mod agent;
mod auditd;
mod bpfstats;
mod chain;
mod children;
mod gen;
mod latency;
mod pipeline;
mod report;
mod stats;
mod suite;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lineage-bench",
    version,
    about = "Lineage benchmark suite (run as root)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    suite: suite::SuiteArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one workload generator and print its counts as JSON (used by the suite).
    #[command(hide = true)]
    Gen(gen::GenArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Cmd::Gen(args)) => {
            let r = gen::run(&args)?;
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        None => {
            children::guard();
            let out = cli.suite.out.clone();
            let mut s = suite::Suite::new(cli.suite)?;
            let results = s.run()?;
            let (md, json) = report::write(&results, &out)?;
            println!("{}", report::markdown(&results));
            eprintln!("wrote {} and {}", md.display(), json.display());
            Ok(())
        }
    }
}
