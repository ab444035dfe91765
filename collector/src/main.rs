//! `lineage-collector`: lifecycle only — parse the command line, load and validate the
//! configuration, run, and drain on SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use lineage_collector::cli::{Cli, Command, ConfigCommand};
use lineage_collector::config::{Config, DEFAULT_CONFIG};
use tokio::signal::unix::{signal, SignalKind};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::PrintDefault,
        } => {
            print!("{DEFAULT_CONFIG}");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { config },
        } => {
            Config::load(&config)?;
            println!("{}: ok", config.display());
            Ok(())
        }
        Command::Run { config } => {
            lineage_ops::logging::init(cli.log_format.parse()?)?;
            let cfg = Config::load(&config)?;
            // One TLS implementation (ring) for both gRPC and S3.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
                let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
                let mut app = tokio::spawn(lineage_collector::app::run(cfg, stopped));
                tokio::select! {
                    r = &mut app => {
                        // Only a startup failure ends the collector without a signal.
                        r.context("collector task")??;
                        return anyhow::Ok(());
                    }
                    _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!("SIGINT: stopping"),
                }
                let _ = stop.send(true);
                app.await.context("collector task")??;
                anyhow::Ok(())
            })
        }
    }
}
