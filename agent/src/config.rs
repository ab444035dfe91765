//! Agent configuration: one TOML file, unknown keys rejected, validated into typed values before
//! anything touches the kernel. Flags override the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The documented defaults, exactly what `lineage-agent config print-default` prints. A unit
/// test keeps this text and `Config::default()` in agreement.
pub const DEFAULT_TOML: &str = r#"# Lineage agent configuration. Every key is optional; these are the defaults.

[capture]
# Kernel ring buffer size in bytes: a power of two, at least 64 KiB. Larger absorbs longer
# bursts before records are lost (a loss is always counted and reported, never silent).
# Range: 65536 to 1073741824 bytes (a power of two).
ring_buffer_bytes = 16777216
# How often the ring buffer is drained when no wakeup arrives, in milliseconds. Records are
# submitted without a wakeup each; the kernel wakes the agent early when the ring fills up.
# Range: 1 to 1000 milliseconds.
poll_interval_ms = 5
# How long a per-CPU sequence gap may stay open before it counts as loss (late records can
# arrive slightly out of order), in milliseconds.
# Range: 10 to 60000 milliseconds.
loss_grace_ms = 500
# How often sequence gaps are reconciled with the kernel's loss counters, in milliseconds.
# Range: 10 to 60000 milliseconds.
reconcile_interval_ms = 1000
# Entries queued between the capture thread and the writer thread (chain, journal, seal).
# When the writer falls this far behind, events are dropped, counted and declared on the
# chain (DROPPED, reason QUEUE_FULL); the capture thread never waits for the disk.
# Range: 1024 to 16777216 entries.
writer_queue = 65536

[kernel]
# Kernel type information used to find struct offsets.
btf_path = "/sys/kernel/btf/vmlinux"
# Where tracefs is (or will be) mounted; the agent mounts it when it is missing.
tracefs_path = "/sys/kernel/tracing"
# procfs, read once at start for the processes already running.
proc_path = "/proc"

[output]
# Print every event on stdout: "none", "json" (one object per line) or "text" (one line each).
print = "none"

[evidence]
# Where the signed chain lives (layout: docs/DATA_DIR.md). Created with mode 0700.
data_dir = "/var/lib/lineage"
# Identity key used only to enrol a data directory nobody enrolled (docs/DATA_DIR.md "Keys").
# By default a new identity is generated, used once and discarded; prefer `lineagectl enrol`.
# key_path = "/etc/lineage/identity.key"
# Source of the host id at first start (a random one is made when it is missing).
machine_id_path = "/etc/machine-id"
# Seal the open segment at least this often when it has entries, in milliseconds...
# Range: 100 to 3600000 milliseconds.
seal_interval_ms = 1000
# ...or as soon as it holds this many entries...
# Range: 1 to 10000000 entries.
seal_max_entries = 100000
# ...or this many bytes.
# Range: 4096 to 268435456 bytes.
seal_max_bytes = 16777216
# With nothing to record, seal a heartbeat segment this often, so silence is visible.
# Range: 100 to 3600000 milliseconds.
heartbeat_interval_ms = 10000
# "seal": segments are fsynced when sealed (entries in between survive an agent crash but not
# a power loss). "batch": also fsync the journal after every drained batch.
fsync = "seal"

[retention]
# Disk budget for sealed segments: the oldest acknowledged segments are deleted beyond it.
# Range: at least 4096 bytes.
max_bytes = 1073741824
# Hard cap: beyond it the oldest segments go even if no collector acknowledged them.
# Range: at least 4096 bytes, and at least max_bytes.
hard_max_bytes = 4294967296

[grpc]
# Unix socket for local clients (mode 0660: grant access with the file's group); "" disables.
socket = "/run/lineage/agent.sock"
# TCP address, e.g. "0.0.0.0:7443". Only with TLS and client certificates; "" disables.
listen = ""
tls_cert = ""
tls_key = ""
# CA that signs client certificates; clients without a valid certificate are refused.
tls_client_ca = ""
# Client certificate common names allowed to pull segments and to tail events ("*": any
# certificate the CA signed).
pull_clients = ["*"]
tail_clients = ["*"]
# Events queued for each Tail client, after its filter; a client further behind is told how
# many matching events it missed.
# Range: 1 to 1048576 events.
tail_buffer = 4096
# Bytes queued for each Tail client (the events' JSON and the fields filters look at).
# Range: 4096 to 1073741824 bytes.
tail_buffer_bytes = 262144
# Tail streams open at once; one more is refused (RESOURCE_EXHAUSTED). Tail memory is at most
# tail_max_streams × tail_buffer_bytes.
# Range: 1 to 4096 streams.
tail_max_streams = 32

[filter]
# File and network events to record (exec, fork and exit are always recorded).
file_ops = ["open", "unlink", "rename", "chmod", "chown", "link", "symlink", "mkdir", "rmdir",
    "mknod", "truncate", "setxattr", "removexattr", "utimes"]
net_ops = ["connect", "accept", "bind", "listen", "send"]
# Record an open only if its flags include one of these; [] records every open. Writes and
# creates only: ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC"].
open_flags = []
# Absolute path prefixes; the longest matching prefix decides. With include_paths set, a path
# under no include prefix is not recorded. An opened file is judged by its real path (the
# kernel's struct file), however it was spelled; calls that leave no fd (unlink, rename,
# chmod, ...) are judged on the name as given, so a symlinked or /proc/self/root spelling
# can escape a rule there (docs/COVERAGE.md).
include_paths = []
exclude_paths = []
# only_uid = 1000 / except_uid = 0, only_cgroup = <id> / except_cgroup = <id>
only_comms = []
except_comms = []
# Every suppressed event is counted per rule and recorded on the chain (FILTER entries); the
# policy itself is recorded at start and whenever SIGHUP reloads it.

[enforcement]
# "observe": record only. "enforce": deny what cannot be recorded (heartbeat older than the
# deadline, capture record not reservable) and what a deny rule names: execs are killed before
# the new image runs, connects refused with EPERM. "dry-run": record what enforce would deny,
# deny nothing. Every decision is an ENFORCEMENT entry (docs/ENFORCEMENT.md).
mode = "observe"
# The agent refreshes a kernel heartbeat only while draining, appending and sealing succeed;
# older than this, execs and connects are denied (except the allowlist).
# Range: 100 to 3600000 milliseconds.
heartbeat_deadline_ms = 2000
# The cgroup v2 mount the connect programs attach to.
cgroup_root = "/sys/fs/cgroup/unified"
# Only tasks under these cgroup v2 directories are subject; [] means every task. The agent
# itself and PID 1 never are.
scope_cgroups = []
# Never denied for liveness or unrecorded actions (deny rules still apply): so an operator
# can always get in. Images by the filename the kernel executed (prefix), uids, cgroup dirs.
allow_uids = []
allow_cgroups = []
allow_paths = []
# Deny rules, each with a unique non-zero id:
# [[enforcement.deny_exec]]  id = 100, path_prefix = "/tmp/", uid = 1001, cgroup = "/sys/fs/cgroup/unified/x"
# [[enforcement.deny_connect]]  id = 200, cidr = "10.0.0.0/8", port = 22  (port 0: any)
deny_exec = []
deny_connect = []

[metrics]
# Prometheus text endpoint. Plain HTTP, so loopback addresses only; "" disables it.
listen = "127.0.0.1:9464"
"#;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub capture: CaptureConfig,
    pub kernel: KernelConfig,
    pub output: OutputConfig,
    pub evidence: EvidenceConfig,
    pub retention: RetentionConfig,
    pub metrics: MetricsConfig,
    pub grpc: GrpcConfig,
    pub filter: crate::kernel::filter::FilterSettings,
    pub enforcement: crate::enforce::EnforcementSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub socket: String,
    pub listen: String,
    pub tls_cert: String,
    pub tls_key: String,
    pub tls_client_ca: String,
    pub pull_clients: Vec<String>,
    pub tail_clients: Vec<String>,
    pub tail_buffer: usize,
    pub tail_buffer_bytes: usize,
    pub tail_max_streams: usize,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            socket: "/run/lineage/agent.sock".into(),
            listen: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            tls_client_ca: String::new(),
            pull_clients: vec!["*".into()],
            tail_clients: vec!["*".into()],
            tail_buffer: 4096,
            tail_buffer_bytes: 256 << 10,
            tail_max_streams: 32,
        }
    }
}

/// A validated TCP listener: address and the TLS material it must use.
pub struct TlsListen {
    pub addr: std::net::SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

impl GrpcConfig {
    pub fn socket_path(&self) -> Option<PathBuf> {
        (!self.socket.is_empty()).then(|| PathBuf::from(&self.socket))
    }

    /// The TCP listener, if configured; TLS with client certificates is mandatory.
    pub fn tcp(&self) -> Result<Option<TlsListen>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let addr = self.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "grpc.listen",
            value: self.listen.clone(),
            reason: "not an IP:port address",
        })?;
        for (key, value) in [
            ("grpc.tls_cert", &self.tls_cert),
            ("grpc.tls_key", &self.tls_key),
            ("grpc.tls_client_ca", &self.tls_client_ca),
        ] {
            if value.is_empty() {
                return Err(ConfigError::Invalid {
                    key,
                    value: String::new(),
                    reason: "required when grpc.listen is set: TCP is only served with mutual TLS",
                });
            }
        }
        Ok(Some(TlsListen {
            addr,
            cert: self.tls_cert.clone().into(),
            key: self.tls_key.clone().into(),
            client_ca: self.tls_client_ca.clone().into(),
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    pub data_dir: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_path: Option<PathBuf>,
    pub machine_id_path: PathBuf,
    pub seal_interval_ms: u64,
    pub seal_max_entries: u64,
    pub seal_max_bytes: u64,
    pub heartbeat_interval_ms: u64,
    pub fsync: Fsync,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    Seal,
    Batch,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            data_dir: "/var/lib/lineage".into(),
            key_path: None,
            machine_id_path: "/etc/machine-id".into(),
            seal_interval_ms: 1000,
            seal_max_entries: 100_000,
            seal_max_bytes: 16 << 20,
            heartbeat_interval_ms: 10_000,
            fsync: Fsync::Seal,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    pub max_bytes: u64,
    pub hard_max_bytes: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_bytes: 1 << 30,
            hard_max_bytes: 4 << 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

impl MetricsConfig {
    /// The loopback address to listen on, or `None` when disabled (the rule is shared with
    /// the collector: `lineage_ops::listen`).
    pub fn address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        lineage_ops::loopback_address(&self.listen).map_err(|e| ConfigError::Invalid {
            key: "metrics.listen",
            value: self.listen.clone(),
            reason: e.reason(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    pub ring_buffer_bytes: u32,
    pub poll_interval_ms: u64,
    pub loss_grace_ms: u64,
    pub reconcile_interval_ms: u64,
    pub writer_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    pub btf_path: PathBuf,
    pub tracefs_path: PathBuf,
    pub proc_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Print {
    None,
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub print: Print,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            ring_buffer_bytes: 16 << 20,
            poll_interval_ms: 5,
            loss_grace_ms: 500,
            reconcile_interval_ms: 1000,
            writer_queue: 1 << 16,
        }
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            btf_path: "/sys/kernel/btf/vmlinux".into(),
            tracefs_path: "/sys/kernel/tracing".into(),
            proc_path: "/proc".into(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig { print: Print::None }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config: {0}")]
    Filter(String),
    #[error("config value {key} = {value} is out of range: must be {range}")]
    OutOfRange {
        key: &'static str,
        value: u64,
        range: Range,
    },
    #[error("config value {key} = {value}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        // toml's message names the offending key and line ("unknown field `x`, expected ...").
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim().replace('\n', " "),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let rb = self.capture.ring_buffer_bytes;
        if !rb.is_power_of_two() || rb < 64 * 1024 {
            return Err(ConfigError::Invalid {
                key: "capture.ring_buffer_bytes",
                value: rb.to_string(),
                reason: "must be a power of two of at least 65536",
            });
        }
        self.check_ranges()?;
        if self.retention.hard_max_bytes < self.retention.max_bytes {
            return Err(ConfigError::Invalid {
                key: "retention.hard_max_bytes",
                value: self.retention.hard_max_bytes.to_string(),
                reason: "must be at least retention.max_bytes",
            });
        }
        self.metrics.address()?;
        self.grpc.tcp()?;
        self.filter
            .compile()
            .map_err(|e| ConfigError::Filter(e.to_string()))?;
        Ok(())
    }

    /// Every duration and size with its accepted range, in config-file order. The same ranges
    /// are written next to each key in [`DEFAULT_TOML`] (a test keeps the two in step).
    pub fn ranges(&self) -> [(&'static str, u64, Range); 15] {
        let c = &self.capture;
        let e = &self.evidence;
        [
            (
                "capture.ring_buffer_bytes",
                c.ring_buffer_bytes.into(),
                Range(65_536, 1 << 30, "bytes"),
            ),
            (
                "capture.poll_interval_ms",
                c.poll_interval_ms,
                Range(1, 1000, "milliseconds"),
            ),
            (
                "capture.loss_grace_ms",
                c.loss_grace_ms,
                Range(10, 60_000, "milliseconds"),
            ),
            (
                "capture.reconcile_interval_ms",
                c.reconcile_interval_ms,
                Range(10, 60_000, "milliseconds"),
            ),
            (
                "capture.writer_queue",
                c.writer_queue as u64,
                Range(1024, 1 << 24, "entries"),
            ),
            (
                "evidence.seal_interval_ms",
                e.seal_interval_ms,
                Range(100, 3_600_000, "milliseconds"),
            ),
            (
                "evidence.seal_max_entries",
                e.seal_max_entries,
                Range(1, 10_000_000, "entries"),
            ),
            (
                "evidence.seal_max_bytes",
                e.seal_max_bytes,
                Range(4096, 256 << 20, "bytes"),
            ),
            (
                "evidence.heartbeat_interval_ms",
                e.heartbeat_interval_ms,
                Range(100, 3_600_000, "milliseconds"),
            ),
            (
                "retention.max_bytes",
                self.retention.max_bytes,
                Range(4096, u64::MAX, "bytes"),
            ),
            (
                "retention.hard_max_bytes",
                self.retention.hard_max_bytes,
                Range(4096, u64::MAX, "bytes"),
            ),
            (
                "grpc.tail_buffer",
                self.grpc.tail_buffer as u64,
                Range(1, 1 << 20, "events"),
            ),
            (
                "grpc.tail_buffer_bytes",
                self.grpc.tail_buffer_bytes as u64,
                Range(4096, 1 << 30, "bytes"),
            ),
            (
                "grpc.tail_max_streams",
                self.grpc.tail_max_streams as u64,
                Range(1, 4096, "streams"),
            ),
            (
                "enforcement.heartbeat_deadline_ms",
                self.enforcement.heartbeat_deadline_ms,
                Range(100, 3_600_000, "milliseconds"),
            ),
        ]
    }

    fn check_ranges(&self) -> Result<(), ConfigError> {
        for (key, value, range) in self.ranges() {
            if !(range.0..=range.1).contains(&value) {
                return Err(ConfigError::OutOfRange { key, value, range });
            }
        }
        Ok(())
    }
}

/// An inclusive range of accepted values and their unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range(pub u64, pub u64, pub &'static str);

impl std::fmt::Display for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.1 == u64::MAX {
            write!(f, "at least {} {}", self.0, self.2)
        } else {
            write!(f, "{} to {} {}", self.0, self.1, self.2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_defaults_match_code() {
        let parsed: Config = toml::from_str(DEFAULT_TOML).unwrap();
        assert_eq!(parsed, Config::default());
        parsed.validate().unwrap();
    }

    #[test]
    fn every_range_is_documented_next_to_its_key() {
        for (key, _, range) in Config::default().ranges() {
            let short = key.rsplit('.').next().unwrap();
            let at = DEFAULT_TOML
                .find(&format!("\n{short} = "))
                .unwrap_or_else(|| panic!("{key} missing from DEFAULT_TOML"));
            let comment = DEFAULT_TOML[..at].lines().last().unwrap();
            assert!(
                comment.starts_with(&format!("# Range: {range}")),
                "{key}: the line above it should say \"# Range: {range}\", it says {comment:?}"
            );
        }
    }

    #[test]
    fn out_of_range_values_name_the_key_and_the_range() {
        let mut c = Config::default();
        c.evidence.heartbeat_interval_ms = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "config value evidence.heartbeat_interval_ms = 0 is out of range: must be 100 to 3600000 milliseconds"
        );
        let mut c = Config::default();
        c.evidence.seal_interval_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("evidence.seal_interval_ms"));
        let mut c = Config::default();
        c.capture.loss_grace_ms = 10_000_000;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("capture.loss_grace_ms"));
        let mut c = Config::default();
        c.retention.max_bytes = 10;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 4096 bytes"));
    }

    #[test]
    fn unknown_key_is_named() {
        let err = toml::from_str::<Config>("[capture]\nring_bufer_bytes = 1\n").unwrap_err();
        assert!(err.to_string().contains("ring_bufer_bytes"), "{err}");
        let err = toml::from_str::<Config>("colour = 1\n").unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_values_rejected() {
        assert!(toml::from_str::<Config>("[capture]\nring_buffer_bytes = \"big\"\n").is_err());
        let mut c = Config::default();
        c.capture.ring_buffer_bytes = 100_000;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("capture.ring_buffer_bytes"));
    }
}
