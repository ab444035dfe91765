//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lineage_evidence::verify::KnownHead;

/// Verify Lineage evidence logs and prove single entries.
///
/// Exit codes: 0 ok, 1 integrity failure, 2 completeness failure, 3 declared loss only,
/// 4 usage or I/O error.
#[derive(Debug, Parser)]
#[command(name = "lineagectl", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an Ed25519 signing key: <OUT>.key (mode 0600) and <OUT>.pub.
    Keygen(KeygenArgs),
    /// Verify every signature, link, Merkle root and the continuity of a log directory.
    Verify(VerifyArgs),
    /// Print where a log ends, in the forms `verify --head` accepts.
    Head(HeadArgs),
    /// Write a standalone inclusion proof for one entry.
    Prove(ProveArgs),
    /// Check a proof written by `prove` without the rest of the log.
    VerifyProof(VerifyProofArgs),
    /// Print the entries of a log directory in index order. Does NOT verify anything.
    ///
    /// Reads the segment files of <DIR> (the agent's data directory holding `segments/`, or
    /// the segments directory itself), in chain index order, and prints one line per entry:
    /// index, segment, kind and the decoded fields. Nothing is checked: no signature, link,
    /// Merkle root or gap. Run `lineagectl verify` to know whether the log can be trusted.
    /// Files that cannot be read or parsed are skipped with a warning on stderr.
    ///
    /// With --json, one JSON object per line:
    /// {"index":N,"segment":S,"kind":"EVENT","schema":1,"event":{...payload...}} for events
    /// (other schemas, or a payload that is not JSON: "payload_hex" instead of "event"), and
    /// {"index":N,"segment":S,"kind":"LOSS",...fields} for the other kinds.
    #[command(verbatim_doc_comment)]
    Entries(EntriesArgs),
}

#[derive(Debug, Args)]
pub struct EntriesArgs {
    /// The log directory (holding `segments/`, or the segments directory itself).
    pub dir: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Only entries of this kind: EVENT, LOSS, AGENT_START, AGENT_STOP, HEARTBEAT,
    /// KEY_ROTATION, RETENTION, DROPPED (any case) or a kind number. Repeatable.
    #[arg(long, value_name = "KIND", value_parser = crate::entries::parse_kind)]
    pub kind: Vec<u16>,
    /// First chain index to print.
    #[arg(long, value_name = "INDEX")]
    pub from: Option<u64>,
    /// Last chain index to print (inclusive).
    #[arg(long, value_name = "INDEX")]
    pub to: Option<u64>,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix of the key files to create (refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct TrustArgs {
    /// A trusted public key: a key file or 64 hex characters. Repeatable.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
    /// A file of trusted public keys, one `lineage-ed25519-public-v1 <hex>` line each.
    #[arg(long = "trusted-keys", value_name = "FILE")]
    pub trusted_keys: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The log directory (holding `segments/`, or the segments directory itself).
    pub dir: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// A head recorded earlier, to detect tail truncation:
    /// `segment:<number>:<header digest>` or `entry:<index>:<link>` (see `lineagectl head`).
    #[arg(long, value_name = "HEAD", value_parser = parse_head)]
    pub head: Option<KnownHead>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// The log directory.
    pub dir: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ProveArgs {
    /// Chain index of the entry.
    #[arg(long)]
    pub entry: u64,
    /// The log directory.
    pub dir: PathBuf,
    /// Where to write the proof (default: entry-<N>.proof in the current directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The proof file.
    pub file: PathBuf,
    /// The public key that must have signed the segment: a key file or 64 hex characters.
    #[arg(long)]
    pub key: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_head(s: &str) -> Result<KnownHead, String> {
    s.parse()
        .map_err(|e: lineage_evidence::verify::KnownHeadSyntax| e.to_string())
}
