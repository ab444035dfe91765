//! Reaching an agent: parsing `--agent`, connecting over its Unix socket or over TCP with
//! mutual TLS, and turning transport failures and gRPC status codes into one clear line.
//!
//! The agent serves TCP only with TLS and client certificates, so plain `http://` is refused
//! here rather than failing later with an obscure handshake error.

use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use lineage_proto::v1::agent_client::AgentClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::cli::AgentArgs;

/// The agent's default socket.
pub const DEFAULT_SOCKET: &str = "/run/lineage/agent.sock";
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub type Client = AgentClient<Channel>;

/// Where the agent is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A Unix socket path.
    Unix(PathBuf),
    /// `https://host:port`; `host` is the TLS server name unless `--domain` overrides it.
    Https { url: String, host: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("{0:?}: plain TCP is not offered by the agent; use https://HOST:PORT with --ca, --cert and --key")]
    PlainTcp(String),
    #[error("{0:?}: unknown scheme; use a socket path, unix:///PATH or https://HOST:PORT")]
    Scheme(String),
    #[error("{0:?}: no host")]
    NoHost(String),
    #[error("{0:?}: a unix:// target needs an absolute path (unix:///run/lineage/agent.sock)")]
    RelativeUnix(String),
    #[error("an empty --agent target")]
    Empty,
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetError::Empty);
        }
        if let Some(rest) = s.strip_prefix("unix://") {
            if !rest.starts_with('/') {
                return Err(TargetError::RelativeUnix(s.into()));
            }
            return Ok(Target::Unix(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("unix:") {
            return Ok(Target::Unix(rest.into()));
        }
        if let Some(rest) = s.strip_prefix("https://") {
            let authority = rest.split('/').next().unwrap_or_default();
            let host = if let Some(v6) = authority.strip_prefix('[') {
                v6.split(']').next().unwrap_or_default()
            } else {
                authority.split(':').next().unwrap_or_default()
            };
            if host.is_empty() {
                return Err(TargetError::NoHost(s.into()));
            }
            return Ok(Target::Https {
                url: s.into(),
                host: host.into(),
            });
        }
        if s.starts_with("http://") || s.starts_with("tcp://") || s.starts_with("grpc://") {
            return Err(TargetError::PlainTcp(s.into()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.contains('/') {
                return Err(TargetError::Scheme(s.into()));
            }
        }
        Ok(Target::Unix(s.into()))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Unix(p) => write!(f, "{}", p.display()),
            Target::Https { url, .. } => f.write_str(url),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no agent socket at {0}: is lineage-agent running? (--agent names another socket)")]
    SocketMissing(PathBuf),
    #[error("permission denied on the agent socket {0}: run as root or as a member of the socket's group")]
    SocketDenied(PathBuf),
    #[error("the agent is not running: nothing accepts connections on {0}")]
    NotRunning(PathBuf),
    #[error("{0} is not a socket")]
    NotASocket(PathBuf),
    #[error("cannot connect to the agent socket {path}: {source}")]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "https:// targets need --ca, --cert and --key (the agent requires a client certificate)"
    )]
    MissingTls,
    #[error("--ca, --cert, --key and --domain are for https:// targets; {0} is a Unix socket")]
    TlsForUnix(PathBuf),
    #[error("reading {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to {target}: {detail}")]
    Transport { target: String, detail: String },
}

/// A failed call: which call, to whom, and what the status code means here.
#[derive(Debug, thiserror::Error)]
#[error("{call} on {target}: {}", explain(.status))]
pub struct RpcError {
    pub call: &'static str,
    pub target: String,
    pub status: Status,
}

impl RpcError {
    pub fn new(call: &'static str, target: &Target, status: Status) -> Self {
        RpcError {
            call,
            target: target.to_string(),
            status,
        }
    }
}

/// One line for a gRPC status: what the code means for this API, then the agent's message.
pub fn explain(s: &Status) -> String {
    let what = match s.code() {
        Code::PermissionDenied => {
            "permission denied: this client certificate is not on the agent's allow-list for the call"
        }
        Code::Unauthenticated => "not authenticated: the agent requires a client certificate",
        Code::NotFound => "not found",
        Code::InvalidArgument => "invalid request",
        Code::Unavailable => "the agent is unavailable (stopped, or shutting down)",
        Code::DeadlineExceeded => "the agent did not answer in time",
        Code::Unimplemented => "the agent does not offer this call (an older agent?)",
        Code::DataLoss => "the agent's stored data is damaged",
        Code::ResourceExhausted => "the agent is out of resources",
        Code::Cancelled => "the call was cancelled",
        Code::Internal => "the agent failed internally",
        _ => "the call failed",
    };
    let msg = s.message().trim();
    if msg.is_empty() {
        format!("{what} ({:?})", s.code())
    } else {
        format!("{what}: {msg}")
    }
}

/// Parses `--agent` and connects, eagerly, so an absent agent is reported at once.
pub async fn connect(a: &AgentArgs) -> Result<(Client, Target), ConnectError> {
    let target = a.agent.clone();
    let channel = match &target {
        Target::Unix(path) => {
            if a.ca.is_some() || a.cert.is_some() || a.key.is_some() || a.domain.is_some() {
                return Err(ConnectError::TlsForUnix(path.clone()));
            }
            connect_unix(path).await?
        }
        Target::Https { url, host } => {
            let (Some(ca), Some(cert), Some(key)) = (&a.ca, &a.cert, &a.key) else {
                return Err(ConnectError::MissingTls);
            };
            let tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca)?))
                .identity(Identity::from_pem(read(cert)?, read(key)?))
                .domain_name(a.domain.clone().unwrap_or_else(|| host.clone()));
            let transport = |e: tonic::transport::Error| ConnectError::Transport {
                target: url.clone(),
                detail: error_chain(&e),
            };
            Endpoint::from_shared(url.clone())
                .map_err(transport)?
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_config(tls)
                .map_err(transport)?
                .connect()
                .await
                .map_err(transport)?
        }
    };
    Ok((
        AgentClient::new(channel).max_decoding_message_size(64 << 20),
        target,
    ))
}

fn read(p: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(p).map_err(|source| ConnectError::TlsFile {
        path: p.into(),
        source,
    })
}

async fn connect_unix(path: &Path) -> Result<Channel, ConnectError> {
    match std::fs::metadata(path) {
        Err(e) => return Err(classify(path, e)),
        Ok(m) if !m.file_type().is_socket() => return Err(ConnectError::NotASocket(path.into())),
        Ok(_) => {}
    }
    // Dial once ourselves: the io::Error says exactly why, which tonic's error would bury.
    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(path))
        .await
        .map_err(|_| ConnectError::Socket {
            path: path.into(),
            source: std::io::ErrorKind::TimedOut.into(),
        })?
        .map_err(|e| classify(path, e))?;
    let owned = path.to_owned();
    // The URI is required by the API but unused: the connector dials the socket.
    Endpoint::from_static("http://agent.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = owned.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| ConnectError::Transport {
            target: path.display().to_string(),
            detail: error_chain(&e),
        })
}

fn classify(path: &Path, e: std::io::Error) -> ConnectError {
    use std::io::ErrorKind::*;
    match e.kind() {
        NotFound => ConnectError::SocketMissing(path.into()),
        PermissionDenied => ConnectError::SocketDenied(path.into()),
        ConnectionRefused => ConnectError::NotRunning(path.into()),
        _ => ConnectError::Socket {
            path: path.into(),
            source: e,
        },
    }
}

/// `a: b: c` for an error and its sources, without repeats (tonic nests the same text).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let s = err.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// A single-threaded runtime: the CLI does one thing at a time.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Result<Target, TargetError> {
        s.parse()
    }

    #[test]
    fn targets_parse() {
        assert_eq!(
            t("/run/lineage/agent.sock"),
            Ok(Target::Unix("/run/lineage/agent.sock".into()))
        );
        assert_eq!(t("agent.sock"), Ok(Target::Unix("agent.sock".into())));
        assert_eq!(
            t("unix:///tmp/a.sock"),
            Ok(Target::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            t("unix:/tmp/a.sock"),
            Ok(Target::Unix("/tmp/a.sock".into()))
        );
        assert_eq!(
            t("unix://tmp/a.sock"),
            Err(TargetError::RelativeUnix("unix://tmp/a.sock".into()))
        );
        assert_eq!(
            t("https://agent-1.example:7443"),
            Ok(Target::Https {
                url: "https://agent-1.example:7443".into(),
                host: "agent-1.example".into()
            })
        );
        assert_eq!(
            t("https://[::1]:7443"),
            Ok(Target::Https {
                url: "https://[::1]:7443".into(),
                host: "::1".into()
            })
        );
        assert!(matches!(t("http://h:1"), Err(TargetError::PlainTcp(_))));
        assert!(matches!(t("tcp://h:1"), Err(TargetError::PlainTcp(_))));
        assert!(matches!(t("ftp://h"), Err(TargetError::Scheme(_))));
        assert!(matches!(t("https://:7443"), Err(TargetError::NoHost(_))));
        assert_eq!(t(" "), Err(TargetError::Empty));
        // A relative path that happens to contain "://" after a slash is still a path.
        assert_eq!(t("./a://b"), Ok(Target::Unix("./a://b".into())));
    }

    #[test]
    fn status_codes_explain_themselves() {
        let m = explain(&Status::permission_denied("client \"x\" may not Tail"));
        assert!(m.starts_with("permission denied"), "{m}");
        assert!(m.ends_with("client \"x\" may not Tail"), "{m}");
        assert!(explain(&Status::unauthenticated("")).contains("client certificate"));
        assert_eq!(
            explain(&Status::not_found("no image a-1-2")),
            "not found: no image a-1-2"
        );
        let e = RpcError::new(
            "GetLineage",
            &Target::Unix("/s".into()),
            Status::unavailable(""),
        );
        assert_eq!(
            e.to_string(),
            "GetLineage on /s: the agent is unavailable (stopped, or shutting down) (Unavailable)"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn socket_errors_name_the_socket() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("none.sock");
        let e = connect_unix(&missing).await.unwrap_err();
        assert!(matches!(e, ConnectError::SocketMissing(_)), "{e}");
        assert!(e.to_string().contains(&missing.display().to_string()));

        let file = tmp.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = connect_unix(&file).await.unwrap_err();
        assert!(matches!(e, ConnectError::NotASocket(_)), "{e}");

        // A socket nobody listens on any more: bound, then the listener dropped.
        let stale = tmp.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let e = connect_unix(&stale).await.unwrap_err();
        assert!(matches!(e, ConnectError::NotRunning(_)), "{e}");
    }
}
