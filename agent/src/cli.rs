//! Command line: `run` and `config`. Flags override the config file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Print;

#[derive(Parser, Debug)]
#[command(
    name = "lineage-agent",
    version,
    about = "Lineage agent: verifiable execution lineage for this host"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr as "text" (colour only on a terminal) or "json" (one object per
    /// line). The level comes from LINEAGE_LOG (default info); an invalid value is an error.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the kernel programs and capture until SIGINT/SIGTERM.
    Run(RunArgs),
    /// List the kernel hooks the agent attaches (program and tracepoint), one per line.
    Probes,
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// TOML config file (see `lineage-agent config print-default`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print every event on stdout (overrides output.print).
    #[arg(long, value_enum)]
    pub print: Option<Print>,
    /// Kernel ring buffer size in bytes (overrides capture.ring_buffer_bytes).
    #[arg(long)]
    pub ring_buffer_bytes: Option<u32>,
    /// Evidence data directory (overrides evidence.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Metrics listen address, loopback only; "" disables (overrides metrics.listen).
    #[arg(long)]
    pub metrics_listen: Option<String>,
    /// gRPC Unix socket path; "" disables it (overrides grpc.socket).
    #[arg(long)]
    pub grpc_socket: Option<String>,
    /// Enforcement mode (overrides enforcement.mode).
    #[arg(long, value_enum)]
    pub mode: Option<crate::enforce::Mode>,
    /// Stop by itself after this many seconds (for demos and tests).
    #[arg(long)]
    pub duration_secs: Option<u64>,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the default configuration, documented.
    PrintDefault,
    /// Load and validate a config file, then print the effective configuration.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
}
