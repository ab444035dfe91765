//! Command-line definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use lineage_evidence::verify::KnownHead;

/// Verify Lineage evidence logs, prove single entries, and watch and query live agents.
///
/// Log commands (verify, head, prove, entries, tree --store) take one host's log: an agent
/// data directory or a collector host directory (<store>/<host id hex>), both holding
/// `segments/`. Given a collector store root, they refuse and list its host directories.
///
/// Agent commands (tail, tree, status, segments) connect with --agent: a Unix socket path or
/// unix:///PATH (default /run/lineage/agent.sock), or https://HOST:PORT with --ca, --cert and
/// --key (mutual TLS).
///
/// Exit codes: 0 ok, 1 integrity failure, 2 completeness failure, 3 declared loss only,
/// 4 usage or I/O error (and any failure to reach or query an agent).
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
    /// Enrol an agent's data directory under an identity key kept off the host.
    ///
    /// Creates the first forward-secure sealing key in <DATA_DIR>/keys/seal.key and the
    /// identity's certificate of it in <DATA_DIR>/keys/enrolment, and writes the identity's
    /// public key to <DATA_DIR>/keys/agent.pub. The identity secret is read, used once and
    /// not copied; keep it elsewhere and verify with `lineagectl verify --key <identity>.pub`.
    /// Run it while the agent is stopped; the agent records the certificate (an ENROLMENT
    /// entry) in the next segment it seals (docs/FORMAT.md §8.1).
    #[command(verbatim_doc_comment)]
    Enrol(EnrolArgs),
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
    /// {"index":N,"segment":S,"kind":"EVENT","schema":1,"event":{...payload...}} for events:
    /// a schema 1 payload as the JSON object it is, a schema 2 payload (protobuf Event) in the
    /// canonical protobuf JSON mapping (docs/EVENTS.md); other schemas, or a payload that does
    /// not decode: "payload_hex" instead of "event". {"index":N,"segment":S,"kind":"LOSS",
    /// ...fields} for the other kinds.
    #[command(verbatim_doc_comment)]
    Entries(EntriesArgs),
    /// Follow an agent's live events, one compact line each (or JSON with --json).
    ///
    /// Each line: local time, host, the process chain (up to three ancestors, oldest first,
    /// then the process: `bash(1200) → python3(1300) → curl(1310)`), the event kind and its
    /// details. Names of processes that started before the tail are asked of the agent;
    /// unknown ones show as `?(tgid)`. Colour only on a terminal and when NO_COLOR is unset.
    /// Missed events (this client read too slowly) are reported on stderr.
    /// Runs until Ctrl-C, the agent ends the stream, or --count events were printed.
    Tail(TailArgs),
    /// Show a process image's ancestry and descendants as a tree, with their recent events.
    ///
    /// From a live agent (GetLineage), or with --store DIR from a log on disk (an agent data
    /// directory or a collector host directory), rebuilt from the chain's exec, snapshot,
    /// fork and exit events. EXEC_ID is `<boot>-<tgid>-<start ns>` as in the events.
    Tree(TreeArgs),
    /// Show an agent's identity, versions, chain head and probe status.
    Status(StatusArgs),
    /// List the sealed segments an agent holds.
    Segments(SegmentsArgs),
}

/// How to reach an agent.
#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// The agent: a Unix socket path, unix:///PATH, or https://HOST:PORT (mutual TLS).
    #[arg(long, value_name = "TARGET", default_value = crate::connect::DEFAULT_SOCKET)]
    pub agent: crate::connect::Target,
    /// CA certificate (PEM) that signed the agent's server certificate (https only).
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// This client's certificate (PEM; its common name must be on the agent's allow-list).
    #[arg(long, value_name = "PEM")]
    pub cert: Option<PathBuf>,
    /// This client's private key (PEM).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// TLS server name to expect, when it differs from the host in the URL.
    #[arg(long, value_name = "NAME")]
    pub domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    #[command(flatten)]
    pub conn: AgentArgs,
    /// Print each event's JSON object exactly as received, one per line (for jq).
    #[arg(long)]
    pub json: bool,
    /// Only events of this kind (exec, exec_failed, fork, exit, snapshot, loss, or any kind
    /// the agent emits). Repeatable.
    #[arg(long, value_name = "KIND", value_parser = parse_event_kind)]
    pub kind: Vec<String>,
    /// Only events of this image and its descendants.
    #[arg(long, value_name = "EXEC_ID")]
    pub subtree: Option<String>,
    /// Only processes whose binary path or comm contains PATTERN.
    #[arg(long, value_name = "PATTERN")]
    pub binary: Option<String>,
    /// Only processes of this real uid.
    #[arg(long, value_name = "N")]
    pub uid: Option<u32>,
    /// Only processes in this cgroup (id as in the events' cgroup_id).
    #[arg(long, value_name = "ID")]
    pub cgroup: Option<u64>,
    /// Only processes of this container (the container id or a prefix of it, as in the
    /// events' `container.id`).
    #[arg(long, value_name = "ID")]
    pub container: Option<String>,
    /// Exit after printing N events.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
}

#[derive(Debug, Args)]
pub struct TreeArgs {
    /// The image: `<boot>-<tgid>-<start ns>`, as in the events' exec_id.
    pub exec_id: String,
    #[command(flatten)]
    pub conn: AgentArgs,
    /// Read the log in DIR instead of asking an agent (agent data dir or collector host dir).
    #[arg(long, value_name = "DIR", conflicts_with = "agent")]
    pub store: Option<PathBuf>,
    /// Events shown per image (the newest ones); 0 shows none.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub events: usize,
    /// One JSON object: ancestors (root first) and the node with nested children.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub conn: AgentArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SegmentsArgs {
    #[command(flatten)]
    pub conn: AgentArgs,
    /// First segment number.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub from: u64,
    /// Last segment number (inclusive).
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// One JSON object per segment, one per line.
    #[arg(long)]
    pub json: bool,
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

#[derive(Debug, Args)]
pub struct EnrolArgs {
    /// The identity's secret key file (from `lineagectl keygen`).
    #[arg(long, value_name = "FILE")]
    pub identity_key: PathBuf,
    /// The agent's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The host id (32 hex digits); default: <DATA_DIR>/host-id, which must then exist.
    #[arg(long, value_name = "HEX")]
    pub host_id: Option<String>,
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
    #[command(flatten)]
    pub witness: WitnessArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Holding the log to what its witnesses cosigned (docs/FORMAT.md §12.5).
#[derive(Debug, Args)]
pub struct WitnessArgs {
    /// A witness's C2SP verifier key (`<name>+<key id>+<base64 key>`), or a file holding one
    /// (a collector writes its own to `<store>/witness.vkey`). Repeatable. The newest
    /// checkpoint each one cosigned must be covered by the log: truncation, rollback and
    /// forks are found with no head kept by hand.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must cover the log (default: all of them).
    #[arg(long, value_name = "N", requires = "witnesses")]
    pub quorum: Option<usize>,
    /// More cosigned checkpoints to hold the log to: a `.note` file, a `checkpoints/`
    /// directory or a collector's host directory. Repeatable.
    #[arg(long = "cosigned", value_name = "PATH", requires = "witnesses")]
    pub cosigned: Vec<PathBuf>,
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
    /// More cosigned checkpoints to choose from (a `.note` file or a directory), besides the
    /// log's own `checkpoints/witness-*.note`. The newest one covering the entry's segment is
    /// put in the proof, with the segment's RFC 6962 inclusion path, so that the proof stands
    /// alone with the witness's key (`verify-proof --witness`).
    #[arg(long = "cosigned", value_name = "PATH")]
    pub cosigned: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyProofArgs {
    /// The proof file.
    pub file: PathBuf,
    /// The public key that must have signed the segment: a key file or 64 hex characters.
    /// Required for a proof without a cosigned checkpoint.
    #[arg(long, required_unless_present = "witnesses")]
    pub key: Option<String>,
    /// A witness's C2SP verifier key (or a file holding one) whose cosignature on the proof's
    /// checkpoint is trusted. Repeatable.
    #[arg(long = "witness", value_name = "VKEY")]
    pub witnesses: Vec<String>,
    /// How many of the --witness keys must have cosigned (default: all of them).
    #[arg(long, value_name = "N", requires = "witnesses")]
    pub quorum: Option<usize>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

fn parse_head(s: &str) -> Result<KnownHead, String> {
    s.parse()
        .map_err(|e: lineage_evidence::verify::KnownHeadSyntax| e.to_string())
}

/// An event kind: a lowercase word (newer agents add kinds; the agent does the matching).
fn parse_event_kind(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not an event kind (exec, exec_failed, fork, exit, snapshot, loss, ...)"
        ))
    }
}
