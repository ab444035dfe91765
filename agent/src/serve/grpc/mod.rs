//! The agent's gRPC API (`proto/lineage/v1/agent.proto`).
//!
//! The capture loop owns all mutable state; the server only reads what the loop publishes
//! (the chain head through a watch channel, live events through a broadcast channel, segment
//! files on disk) and asks the loop for lineage through a request channel. No lock is shared
//! with the hot path, and a slow client can only lose its own events.
//!
//! Transport: a Unix socket (mode 0660; file permissions grant access) by default; TCP only
//! with TLS and client certificates, where each certificate's common name is checked against
//! the pull and tail allow-lists.

mod access;
mod service;
mod tail;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use lineage_evidence::{digest::Digest, keys::PublicKey};
use lineage_proto::v1::{agent_server::AgentServer, LineageResponse};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use access::Access;
pub use tail::LiveEvent;

use crate::{config::GrpcConfig, kernel::probes::ProbeStatus};

/// What never changes while the agent runs.
pub struct StaticInfo {
    pub host_id: [u8; 16],
    pub boot_id: String,
    pub hostname: String,
    pub signing_key: PublicKey,
    pub agent_version: String,
    pub kernel_version: String,
    pub probes: Vec<ProbeStatus>,
}

/// Where the chain stands, published by the capture loop after every seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    pub next_index: u64,
    pub head_link: Digest,
    pub last_segment: Option<(u64, Digest)>,
}

/// A lineage question for the capture loop, which owns the process table.
pub struct LineageQuery {
    pub exec_id: String,
    pub reply: oneshot::Sender<Option<LineageResponse>>,
}

pub struct Shared {
    pub info: StaticInfo,
    pub data_dir: PathBuf,
    pub head: watch::Receiver<Head>,
    pub events: broadcast::Sender<Arc<LiveEvent>>,
    pub lineage: mpsc::Sender<LineageQuery>,
}

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC socket {}: {}", .path.display(), crate::cause::file_problem(.path, .source))]
    Socket {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gRPC socket {}: another process is serving on it (is another agent running?)", .0.display())]
    SocketInUse(PathBuf),
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("gRPC TCP listener on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

fn read_pem(path: &Path) -> Result<Vec<u8>, GrpcError> {
    std::fs::read(path).map_err(|source| GrpcError::TlsFile {
        path: path.into(),
        source,
    })
}

async fn health(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<AgentServer<service::AgentService>>()
        .await;
    service
}

/// Binds the configured listeners and serves them in background tasks.
pub async fn serve(config: &GrpcConfig, shared: Arc<Shared>) -> Result<(), GrpcError> {
    if let Some(path) = config.socket_path() {
        let sock_err = |source| GrpcError::Socket {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sock_err)?;
        }
        // A socket left by a previous run would make bind fail.
        if std::fs::symlink_metadata(&path).is_ok() {
            // Only a dead one: taking over a live agent's socket would hide that agent.
            if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                return Err(GrpcError::SocketInUse(path));
            }
            std::fs::remove_file(&path).map_err(sock_err)?;
        }
        let listener = tokio::net::UnixListener::bind(&path).map_err(sock_err)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
            .map_err(sock_err)?;
        let svc = service::AgentService::new(shared.clone(), Access::Local);
        let health = health().await;
        tracing::info!(path = %path.display(), "gRPC listening on a Unix socket (mode 0660)");
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            if let Err(e) = Server::builder()
                .add_service(health)
                .add_service(AgentServer::new(svc))
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "gRPC Unix socket server stopped");
            }
        });
    }
    if let Some(tls) = config.tcp()? {
        let identity = Identity::from_pem(read_pem(&tls.cert)?, read_pem(&tls.key)?);
        let tls_config = ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read_pem(&tls.client_ca)?));
        let listener = tokio::net::TcpListener::bind(tls.addr)
            .await
            .map_err(|source| GrpcError::Listen {
                addr: tls.addr.to_string(),
                source,
            })?;
        let access = Access::Certificates {
            pull: config.pull_clients.clone(),
            tail: config.tail_clients.clone(),
        };
        let svc = service::AgentService::new(shared.clone(), access);
        let health = health().await;
        tracing::info!(addr = %tls.addr, "gRPC listening on TCP with mutual TLS");
        let server = Server::builder()
            .tls_config(tls_config)
            .map_err(|e| GrpcError::Listen {
                addr: tls.addr.to_string(),
                source: std::io::Error::other(e),
            })?;
        let mut server = server;
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = server
                .add_service(health)
                .add_service(AgentServer::new(svc))
                .serve_with_incoming(incoming)
                .await
            {
                tracing::error!(error = %e, "gRPC TCP server stopped");
            }
        });
    }
    Ok(())
}
