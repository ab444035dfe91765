//! Command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Pulls signed segments from Lineage agents, verifies, countersigns and stores them.
#[derive(Debug, Parser)]
#[command(name = "lineage-collector", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines on stderr as "text" (colour only on a terminal) or "json" (one object per
    /// line). The level comes from LINEAGE_LOG (default info); an invalid value is an error.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the collector until SIGTERM or SIGINT.
    Run {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
    /// Configuration helpers.
    Config {
        /// Which.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the default configuration, with every key documented.
    PrintDefault,
    /// Validate a configuration file and exit.
    Check {
        /// The configuration file (TOML).
        #[arg(long)]
        config: PathBuf,
    },
}
