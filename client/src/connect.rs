//! Connecting, eagerly, so an absent agent is reported at once and with its cause: over a Unix
//! socket (the agent's default, protected by file permissions) or over TCP with mutual TLS.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lineage_proto::v1::agent_client::AgentClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::Target;

/// The agent's default socket.
pub const DEFAULT_SOCKET: &str = "/run/lineage/agent.sock";
/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest answer accepted. Segments arrive in ≤ 1 MiB chunks; this leaves room for large
/// lineage answers without letting a hostile server make us allocate without bound.
const MAX_MESSAGE: usize = 16 << 20;

pub type Client = AgentClient<Channel>;

/// Client certificate material for an `https://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// TLS server name, when it differs from the URL's host.
    pub domain: Option<String>,
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
        "https:// targets need a CA, a client certificate and its key (the agent requires a client certificate)"
    )]
    MissingTls,
    #[error("TLS files are for https:// targets; {0} is a Unix socket")]
    TlsForUnix(PathBuf),
    #[error("reading {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot connect to {target}: {detail}")]
    Transport { target: String, detail: String },
}

/// Connects to `target`; `tls` is required for `https://` and refused for a socket.
pub async fn connect(target: &Target, tls: Option<&Tls>) -> Result<Client, ConnectError> {
    let channel = match target {
        Target::Unix(path) => {
            if tls.is_some() {
                return Err(ConnectError::TlsForUnix(path.clone()));
            }
            connect_unix(path).await?
        }
        Target::Https { url, host } => {
            let tls = tls.ok_or(ConnectError::MissingTls)?;
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
                .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
                .domain_name(tls.domain.clone().unwrap_or_else(|| host.clone()));
            let transport = |e: tonic::transport::Error| ConnectError::Transport {
                target: url.clone(),
                detail: error_chain(&e),
            };
            Endpoint::from_shared(url.clone())
                .map_err(transport)?
                .connect_timeout(CONNECT_TIMEOUT)
                .tls_config(config)
                .map_err(transport)?
                .connect()
                .await
                .map_err(transport)?
        }
    };
    Ok(AgentClient::new(channel).max_decoding_message_size(MAX_MESSAGE))
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test(flavor = "current_thread")]
    async fn tls_goes_with_https_only() {
        let e = connect(
            &Target::Unix("/nonexistent.sock".into()),
            Some(&Tls {
                ca: "a".into(),
                cert: "b".into(),
                key: "c".into(),
                domain: None,
            }),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ConnectError::TlsForUnix(_)), "{e}");
        let https: Target = "https://agent:7443".parse().unwrap();
        let e = connect(&https, None).await.unwrap_err();
        assert!(matches!(e, ConnectError::MissingTls), "{e}");
    }
}
