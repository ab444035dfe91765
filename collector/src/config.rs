//! The collector's configuration: one TOML file, read into [`FileConfig`] (which mirrors the
//! file and rejects unknown keys), then validated into [`Config`], the typed runtime
//! configuration everything else uses. Validation happens before anything connects or writes,
//! and every error names the offending key (`agents[1].endpoint`, `store.bucket`, ...), so a
//! typo is reported at startup instead of as a confusing runtime failure.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The default configuration, printed by `lineage-collector config print-default`. Every default
/// the code applies is spelled out here.
pub const DEFAULT_CONFIG: &str = r#"# lineage-collector configuration.

[collector]
# Stable name sent to agents with AckSegments (letters, digits, '-', '_', '.').
name = "collector"
# The collector's own Ed25519 witness key; generated (mode 0600) if the file is missing.
key_path = "/var/lib/lineage-collector/witness.key"
# An agent that sends no new segment for this long is reported silent (agents seal a
# heartbeat segment every 10 s by default). Range: 1 to 86400 seconds.
heartbeat_timeout_secs = 60
# Status of every agent (cursor, silence, findings), rewritten every second as JSON.
status_path = "/var/lib/lineage-collector/status.json"
# Largest gRPC message accepted from an agent (one segment, as stored). Larger ones are refused
# before they are buffered. Agents seal at 16 MiB by default (evidence.seal_max_bytes), so a
# segment is at most that plus one entry. Range: 65536 to 1 GiB + 1 KiB (the format's limit).
max_message_bytes = 33554432
# Bytes of rejected segment copies kept under <host>/quarantine/ per host; beyond it only the
# finding is written (the copy is dropped and the drop is logged). Range: 0 to 1 TiB.
quarantine_max_bytes = 67108864
# Prometheus endpoint (/metrics, /healthz, /readyz). Plain HTTP, so loopback addresses only;
# "" disables it. Series: docs/OPERATIONS.md.
metrics_listen = "127.0.0.1:9465"

[store]
# "fs": a local directory (the default); "s3": an S3-compatible bucket.
kind = "fs"
path = "/var/lib/lineage-collector/store"
# For kind = "s3":
# bucket = "lineage"
# endpoint = "https://s3.example.com"   # omit for AWS
# region = "us-east-1"
# access_key_id = "..."                  # omit both to use the AWS_* environment variables
# secret_access_key = "..."
# allow_http = false
# prefix = ""                            # key prefix inside the bucket

# One table per agent.
[[agents]]
name = "local"
# "unix:///path/agent.sock", or "https://host:port" with ca_cert, client_cert and client_key
# (mutual TLS; plain TCP is refused).
endpoint = "unix:///run/lineage/agent.sock"
# ca_cert = "/etc/lineage/ca.pem"
# client_cert = "/etc/lineage/collector.pem"
# client_key = "/etc/lineage/collector.key"
# tls_domain = "agent.example.com"       # defaults to the endpoint's host
# Pinned agent keys (lineage-ed25519-public-v1 lines). Without it the first key seen is pinned
# (trust on first use) and later keys are accepted only through a KEY_ROTATION entry.
# trusted_keys = "/etc/lineage/web-1.pub"
# Pinned host id (32 hex digits, the agent's <data_dir>/host-id). Without it the host id is
# bound to this agent on first use; another agent announcing it later is a HOST_CONFLICT.
# host_id = "00112233445566778899aabbccddeeff"
"#;

/// Configuration errors; each names the key concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Not valid TOML, or a key that does not exist / has the wrong type.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        source: Box<toml::de::Error>,
    },
    /// A value that parses but is not acceptable.
    #[error("{key}: {why}")]
    Invalid {
        /// The key, e.g. `agents[0].endpoint`.
        key: String,
        /// What is wrong.
        why: String,
    },
}

fn invalid(key: impl Into<String>, why: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        why: why.into(),
    }
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `[collector]`.
    pub collector: CollectorSection,
    /// `[store]`.
    pub store: StoreSection,
    /// `[[agents]]`.
    #[serde(default)]
    pub agents: Vec<AgentSection>,
}

/// `[collector]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorSection {
    /// AckSegments name.
    pub name: String,
    /// Witness key file.
    pub key_path: PathBuf,
    /// Silence threshold.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout_secs: u64,
    /// Status file.
    pub status_path: Option<PathBuf>,
    /// Largest message from an agent.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: u64,
    /// Quarantine budget per host.
    #[serde(default = "default_quarantine")]
    pub quarantine_max_bytes: u64,
    /// Metrics listen address (loopback), "" to disable.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: String,
}

fn default_metrics_listen() -> String {
    "127.0.0.1:9465".into()
}

fn default_heartbeat_timeout() -> u64 {
    60
}

/// Default `max_message_bytes`: 32 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 32 << 20;
/// Default `quarantine_max_bytes`: 64 MiB.
pub const DEFAULT_QUARANTINE: u64 = 64 << 20;
/// Largest `heartbeat_timeout_secs`: a day.
pub const MAX_HEARTBEAT_TIMEOUT: u64 = 86_400;
/// Largest `quarantine_max_bytes`: 1 TiB.
pub const MAX_QUARANTINE: u64 = 1 << 40;
/// Smallest `max_message_bytes` (a segment header and a few entries).
pub const MIN_MAX_MESSAGE: u64 = 64 << 10;

fn default_max_message() -> u64 {
    DEFAULT_MAX_MESSAGE
}

fn default_quarantine() -> u64 {
    DEFAULT_QUARANTINE
}

/// Store kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// Local directory.
    Fs,
    /// S3-compatible bucket.
    S3,
}

/// `[store]`, flat so that a key used with the wrong kind gets a clear error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// Which backend.
    pub kind: StoreKind,
    /// fs: root directory.
    pub path: Option<PathBuf>,
    /// s3: bucket.
    pub bucket: Option<String>,
    /// s3: endpoint URL.
    pub endpoint: Option<String>,
    /// s3: region.
    pub region: Option<String>,
    /// s3: access key id.
    pub access_key_id: Option<String>,
    /// s3: secret.
    pub secret_access_key: Option<String>,
    /// s3: allow plain http endpoints.
    pub allow_http: Option<bool>,
    /// s3: key prefix.
    pub prefix: Option<String>,
}

/// `[[agents]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// Display and log name.
    pub name: String,
    /// `unix://...` or `https://...`.
    pub endpoint: String,
    /// TLS: CA bundle that signed the agent's certificate.
    pub ca_cert: Option<PathBuf>,
    /// TLS: the collector's client certificate.
    pub client_cert: Option<PathBuf>,
    /// TLS: its key.
    pub client_key: Option<PathBuf>,
    /// TLS: server name to verify, when it differs from the endpoint's host.
    pub tls_domain: Option<String>,
    /// Pinned agent keys.
    pub trusted_keys: Option<PathBuf>,
    /// Pinned host id (32 hex digits).
    pub host_id: Option<String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// AckSegments name.
    pub name: String,
    /// Witness key file.
    pub key_path: PathBuf,
    /// Silence threshold.
    pub heartbeat_timeout: Duration,
    /// Status file, if any.
    pub status_path: Option<PathBuf>,
    /// Largest message from an agent.
    pub max_message_bytes: usize,
    /// Quarantine budget per host.
    pub quarantine_max_bytes: u64,
    /// Metrics endpoint address, if enabled.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Where segments go.
    pub store: StoreConfig,
    /// The agents to pull from.
    pub agents: Vec<AgentConfig>,
}

/// A validated store choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A local directory.
    Fs {
        /// Root directory.
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// S3 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Bucket.
    pub bucket: String,
    /// Endpoint URL (None: AWS).
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Credentials (None: from the environment).
    pub credentials: Option<(String, String)>,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
    /// Key prefix ("" for none).
    pub prefix: String,
}

/// How to reach an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// TCP with mutual TLS.
    Tls {
        /// `https://host:port`.
        url: String,
        /// CA bundle file.
        ca_cert: PathBuf,
        /// Client certificate file.
        client_cert: PathBuf,
        /// Client key file.
        client_key: PathBuf,
        /// Server name override.
        domain: Option<String>,
    },
}

/// One validated agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Name.
    pub name: String,
    /// Where.
    pub endpoint: Endpoint,
    /// Pinned keys file.
    pub trusted_keys: Option<PathBuf>,
    /// Pinned host id.
    pub host_id: Option<lineage_evidence::digest::HostId>,
}

fn valid_name(s: &str) -> bool {
    // The agent's rule for AckSegments names.
    (1..=64).contains(&s.len())
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let file: FileConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            source: Box::new(e),
        })?;
        file.validate()
    }
}

impl FileConfig {
    /// Checks every value and builds the runtime configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let c = self.collector;
        if !valid_name(&c.name) {
            return Err(invalid(
                "collector.name",
                "must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
            ));
        }
        if !(1..=MAX_HEARTBEAT_TIMEOUT).contains(&c.heartbeat_timeout_secs) {
            return Err(invalid(
                "collector.heartbeat_timeout_secs",
                format!(
                    "{} is out of range: must be 1 to {MAX_HEARTBEAT_TIMEOUT} seconds",
                    c.heartbeat_timeout_secs
                ),
            ));
        }
        if c.quarantine_max_bytes > MAX_QUARANTINE {
            return Err(invalid(
                "collector.quarantine_max_bytes",
                format!(
                    "{} is out of range: must be 0 to {MAX_QUARANTINE} bytes",
                    c.quarantine_max_bytes
                ),
            ));
        }
        let max_message = lineage_evidence::segment::MAX_SEGMENT_LEN + 1024;
        if !(MIN_MAX_MESSAGE..=max_message).contains(&c.max_message_bytes) {
            return Err(invalid(
                "collector.max_message_bytes",
                format!(
                    "{} is out of range: must be {MIN_MAX_MESSAGE} to {max_message} bytes",
                    c.max_message_bytes
                ),
            ));
        }
        if c.key_path.as_os_str().is_empty() {
            return Err(invalid("collector.key_path", "must not be empty"));
        }
        let metrics_listen = lineage_ops::loopback_address(&c.metrics_listen).map_err(|e| {
            invalid(
                "collector.metrics_listen",
                format!("{:?}: {e}", c.metrics_listen),
            )
        })?;
        let store = self.store.validate()?;
        if self.agents.is_empty() {
            return Err(invalid(
                "agents",
                "at least one [[agents]] table is required",
            ));
        }
        let mut names = BTreeSet::new();
        let mut agents = Vec::new();
        for (i, a) in self.agents.into_iter().enumerate() {
            let key = |k: &str| format!("agents[{i}].{k}");
            if !valid_name(&a.name) {
                return Err(invalid(
                    key("name"),
                    "must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'",
                ));
            }
            if !names.insert(a.name.clone()) {
                return Err(invalid(
                    key("name"),
                    format!("{:?} is used by an earlier agent", a.name),
                ));
            }
            let endpoint = if let Some(path) = a.endpoint.strip_prefix("unix://") {
                if !path.starts_with('/') {
                    return Err(invalid(
                        key("endpoint"),
                        "unix:// needs an absolute path (unix:///run/lineage/agent.sock)",
                    ));
                }
                for k in ["ca_cert", "client_cert", "client_key", "tls_domain"] {
                    let set = match k {
                        "ca_cert" => a.ca_cert.is_some(),
                        "client_cert" => a.client_cert.is_some(),
                        "client_key" => a.client_key.is_some(),
                        _ => a.tls_domain.is_some(),
                    };
                    if set {
                        return Err(invalid(key(k), "only used with an https:// endpoint"));
                    }
                }
                Endpoint::Unix(PathBuf::from(path))
            } else if let Some(rest) = a.endpoint.strip_prefix("https://") {
                if rest.is_empty() || rest.contains('/') && !rest.ends_with('/') {
                    return Err(invalid(key("endpoint"), "expected https://host:port"));
                }
                let need = |v: Option<PathBuf>, k: &str| {
                    v.ok_or_else(|| {
                        invalid(
                            key(k),
                            "required with an https:// endpoint (mutual TLS: ca_cert, \
                             client_cert and client_key)",
                        )
                    })
                };
                Endpoint::Tls {
                    url: a.endpoint.clone(),
                    ca_cert: need(a.ca_cert, "ca_cert")?,
                    client_cert: need(a.client_cert, "client_cert")?,
                    client_key: need(a.client_key, "client_key")?,
                    domain: a.tls_domain,
                }
            } else {
                return Err(invalid(
                    key("endpoint"),
                    format!(
                        "{:?}: expected unix:///path or https://host:port (plain TCP is not \
                         allowed)",
                        a.endpoint
                    ),
                ));
            };
            let host_id = a
                .host_id
                .map(|h| {
                    lineage_evidence::digest::HostId::from_hex(&h)
                        .ok()
                        .filter(|_| h.trim().len() == 32)
                        .ok_or_else(|| invalid(key("host_id"), "must be 32 hex digits"))
                })
                .transpose()?;
            agents.push(AgentConfig {
                name: a.name,
                endpoint,
                trusted_keys: a.trusted_keys,
                host_id,
            });
        }
        Ok(Config {
            name: c.name,
            key_path: c.key_path,
            heartbeat_timeout: Duration::from_secs(c.heartbeat_timeout_secs),
            status_path: c.status_path,
            max_message_bytes: usize::try_from(c.max_message_bytes).unwrap_or(usize::MAX),
            quarantine_max_bytes: c.quarantine_max_bytes,
            metrics_listen,
            store,
            agents,
        })
    }
}

impl StoreSection {
    fn validate(self) -> Result<StoreConfig, ConfigError> {
        let s3_keys = [
            ("bucket", self.bucket.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("region", self.region.is_some()),
            ("access_key_id", self.access_key_id.is_some()),
            ("secret_access_key", self.secret_access_key.is_some()),
            ("allow_http", self.allow_http.is_some()),
            ("prefix", self.prefix.is_some()),
        ];
        match self.kind {
            StoreKind::Fs => {
                if let Some((k, _)) = s3_keys.iter().find(|(_, set)| *set) {
                    return Err(invalid(
                        format!("store.{k}"),
                        "only used with store.kind = \"s3\"",
                    ));
                }
                let path = self
                    .path
                    .ok_or_else(|| invalid("store.path", "required with store.kind = \"fs\""))?;
                Ok(StoreConfig::Fs { path })
            }
            StoreKind::S3 => {
                if self.path.is_some() {
                    return Err(invalid("store.path", "only used with store.kind = \"fs\""));
                }
                let bucket = self
                    .bucket
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| invalid("store.bucket", "required with store.kind = \"s3\""))?;
                let allow_http = self.allow_http.unwrap_or(false);
                if let Some(e) = &self.endpoint {
                    if e.starts_with("http://") && !allow_http {
                        return Err(invalid(
                            "store.endpoint",
                            "is http://; set store.allow_http = true to allow unencrypted S3",
                        ));
                    }
                    if !e.starts_with("http://") && !e.starts_with("https://") {
                        return Err(invalid("store.endpoint", "must be an http(s):// URL"));
                    }
                }
                let credentials = match (self.access_key_id, self.secret_access_key) {
                    (Some(a), Some(s)) => Some((a, s)),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(invalid(
                            "store.secret_access_key",
                            "required when store.access_key_id is set",
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(invalid(
                            "store.access_key_id",
                            "required when store.secret_access_key is set",
                        ))
                    }
                };
                let prefix = self.prefix.unwrap_or_default();
                if prefix.starts_with('/') || prefix.contains("..") {
                    return Err(invalid(
                        "store.prefix",
                        "must be a relative key prefix without '..'",
                    ));
                }
                Ok(StoreConfig::S3(S3Config {
                    bucket,
                    endpoint: self.endpoint,
                    region: self.region.unwrap_or_else(|| "us-east-1".into()),
                    credentials,
                    allow_http,
                    prefix: prefix.trim_end_matches('/').to_owned(),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text).unwrap_err().to_string()
    }

    const BASE: &str = "[collector]\nname = \"c1\"\nkey_path = \"/k\"\n";

    #[test]
    fn the_default_config_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG).unwrap();
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(60));
        assert_eq!(
            c.store,
            StoreConfig::Fs {
                path: "/var/lib/lineage-collector/store".into()
            }
        );
        assert_eq!(
            c.agents[0].endpoint,
            Endpoint::Unix("/run/lineage/agent.sock".into())
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let e = err(&format!(
            "{BASE}bogus = 1\n[store]\nkind = \"fs\"\npath = \"/s\"\n"
        ));
        assert!(e.contains("bogus"), "{e}");
        let e = err(&format!(
            "{BASE}[store]\nkind = \"fs\"\npath = \"/s\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\nendpont = \"x\"\n"
        ));
        assert!(e.contains("endpont"), "{e}");
        let e = err(&format!("{BASE}[store]\nkind = \"ftp\"\n"));
        assert!(e.contains("ftp"), "{e}");
    }

    #[test]
    fn invalid_values_name_their_key() {
        let store = "[store]\nkind = \"fs\"\npath = \"/s\"\n";
        let cases = [
            (
                format!("{BASE}{store}[[agents]]\nname = \"a\"\nendpoint = \"tcp://h:1\"\n"),
                "agents[0].endpoint",
            ),
            (
                format!("{BASE}{store}[[agents]]\nname = \"a\"\nendpoint = \"https://h:1\"\nca_cert = \"/ca\"\n"),
                "agents[0].client_cert",
            ),
            (
                format!("{BASE}{store}[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///b\"\n"),
                "agents[1].name",
            ),
            (
                format!("{BASE}{store}[[agents]]\nname = \"a b\"\nendpoint = \"unix:///a\"\n"),
                "agents[0].name",
            ),
            (
                format!("{BASE}{store}[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\nca_cert = \"/x\"\n"),
                "agents[0].ca_cert",
            ),
            (format!("{BASE}{store}"), "agents"),
            (
                format!("{BASE}[store]\nkind = \"fs\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "store.path",
            ),
            (
                format!("{BASE}[store]\nkind = \"fs\"\npath = \"/s\"\nbucket = \"b\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "store.bucket",
            ),
            (
                format!("{BASE}[store]\nkind = \"s3\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "store.bucket",
            ),
            (
                format!("{BASE}[store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "store.endpoint",
            ),
            (
                format!("{BASE}[store]\nkind = \"s3\"\nbucket = \"b\"\naccess_key_id = \"x\"\n[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "store.secret_access_key",
            ),
            (
                format!("[collector]\nname = \"c\"\nkey_path = \"/k\"\nheartbeat_timeout_secs = 0\n{store}[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "collector.heartbeat_timeout_secs",
            ),
            (
                format!("[collector]\nname = \"c\"\nkey_path = \"/k\"\nmetrics_listen = \"0.0.0.0:9465\"\n{store}[[agents]]\nname = \"a\"\nendpoint = \"unix:///a\"\n"),
                "collector.metrics_listen",
            ),
        ];
        for (text, key) in cases {
            let e = err(&text);
            assert!(e.starts_with(&format!("{key}:")), "{key}: got {e}");
        }
    }

    #[test]
    fn s3_and_tls_parse() {
        let c = Config::parse(&format!(
            "{BASE}[store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true\naccess_key_id = \"a\"\nsecret_access_key = \"s\"\n\
             [[agents]]\nname = \"a\"\nendpoint = \"https://h:7443\"\nca_cert = \"/ca\"\nclient_cert = \"/c\"\nclient_key = \"/k\"\n"
        ))
        .unwrap();
        let StoreConfig::S3(s3) = c.store else {
            panic!("s3 expected")
        };
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.allow_http);
        assert!(matches!(c.agents[0].endpoint, Endpoint::Tls { .. }));
    }
}
