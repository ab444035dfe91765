//! `lineagectl`: the command line over `lineage-evidence` and the agent's gRPC API.
//!
//! `main` is lifecycle only: parse the command line, run one command, map its result to an exit
//! code. The commands live in their own modules; all format logic lives in the library.

mod actions;
mod cli;
mod clock;
mod connect;
mod enrol;
mod entries;
mod event;
mod exit;
mod keygen;
mod logdir;
mod logread;
mod prove;
mod segments;
mod status;
mod style;
mod tail;
mod tree;
mod verify;

use clap::Parser as _;

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result: anyhow::Result<i32> = match cli.command {
        cli::Command::Keygen(a) => keygen::run(&a),
        cli::Command::Enrol(a) => enrol::run(&a),
        cli::Command::Verify(a) => verify::run(&a),
        cli::Command::Head(a) => verify::head(&a),
        cli::Command::Prove(a) => prove::prove(&a),
        cli::Command::VerifyProof(a) => prove::verify_proof(&a),
        cli::Command::Entries(a) => entries::run(&a),
        cli::Command::Tail(a) => tail::run(&a).map_err(Into::into),
        cli::Command::Tree(a) => tree::run(&a).map_err(Into::into),
        cli::Command::Status(a) => status::run(&a).map_err(Into::into),
        cli::Command::Segments(a) => segments::run(&a).map_err(Into::into),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("lineagectl: error: {e:#}");
            std::process::exit(exit::USAGE);
        }
    }
}
