//! `lineage-agent`: lifecycle only — parse, load and validate config, run, stop on a signal.

use std::{process::ExitCode, time::Duration};

use clap::Parser;

use lineage_agent::{
    cli::{Cli, Command, ConfigCommand, RunArgs},
    config::{self, Config, DEFAULT_TOML},
    kernel::{filter, probes},
    runtime,
};

fn effective_config(args: &RunArgs) -> Result<Config, config::ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(print) = args.print {
        config.output.print = print;
    }
    if let Some(bytes) = args.ring_buffer_bytes {
        config.capture.ring_buffer_bytes = bytes;
    }
    if let Some(dir) = &args.data_dir {
        config.evidence.data_dir = dir.clone();
    }
    if let Some(socket) = &args.grpc_socket {
        config.grpc.socket = socket.clone();
    }
    if let Some(listen) = &args.metrics_listen {
        config.metrics.listen = listen.clone();
    }
    if let Some(mode) = args.mode {
        config.enforcement.mode = mode;
    }
    config.validate()?;
    Ok(config)
}

/// sysexits.h: a configuration error. The systemd unit does not restart on it
/// (`RestartPreventExitStatus=78`): retrying cannot fix a bad config file.
const EX_CONFIG: u8 = 78;

fn is_config_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.is::<config::ConfigError>()
            || matches!(
                c.downcast_ref::<filter::FilterError>(),
                Some(filter::FilterError::Invalid { .. })
            )
    })
}

/// The error and its causes, skipping a cause whose text the message already includes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = cli.log_format.parse().and_then(lineage_ops::logging::init);
    if let Err(e) = logging {
        eprintln!("lineage-agent: error: {e}");
        return ExitCode::from(EX_CONFIG);
    }
    let result = match cli.command {
        Command::Probes => {
            for p in probes::all_probes() {
                println!(
                    "{} {}{}",
                    p.program,
                    p.hook,
                    if p.required { " required" } else { "" }
                );
            }
            Ok(())
        }
        Command::Config(ConfigCommand::PrintDefault) => {
            print!("{DEFAULT_TOML}");
            Ok(())
        }
        Command::Config(ConfigCommand::Check { config }) => Config::load(&config)
            .and_then(|c| c.validate().map(|()| c))
            .map(|c| print!("{}", toml::to_string(&c).unwrap_or_default()))
            .map_err(anyhow::Error::from),
        Command::Run(args) => match effective_config(&args) {
            Err(e) => Err(e.into()),
            Ok(config) => runtime::run(
                config,
                args.config.clone(),
                args.duration_secs.map(Duration::from_secs),
            ),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lineage-agent: error: {}", error_chain(&e));
            if is_config_error(&e) {
                ExitCode::from(EX_CONFIG)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
