//! The agent's gRPC API (`proto/lineage/v1/agent.proto`), on a tokio runtime of its own.
//!
//! The capture and writer threads own all mutable state; the server only reads what they
//! publish (the chain head and recorder state through watch channels, live events through
//! per-client queues, segment files on disk) and asks the capture thread for lineage through a
//! bounded request channel it serves between drains. No lock is shared with the hot path, and
//! a slow client can only lose its own events.
//!
//! Transport: a Unix socket (mode 0660; file permissions grant access) by default; TCP only
//! with TLS and client certificates, where each certificate's common name is checked against
//! the pull and tail allow-lists. On stop every stream ends with UNAVAILABLE and the socket
//! file is removed.

mod access;
mod service;
pub mod tail;

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use lineage_evidence::keys::PublicKey;
use lineage_proto::v1::{agent_server::AgentServer, LineageNode, LineageResponse};
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinHandle,
};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;

pub use access::Access;
pub use service::{CHUNK, FIRST_SEGMENT_KEY};
pub use tail::{LiveEvent, TailHub};

use crate::{
    capture::lineage::{Image, ProcessTable},
    config::GrpcConfig,
    kernel::probes::ProbeStatus,
    record::writer::{Head, RecorderStats},
};

/// How long stopping waits for streams to end before closing connections anyway.
const STOP_GRACE: Duration = Duration::from_secs(3);

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

/// A lineage question for the capture thread, which owns the process table.
pub struct LineageQuery {
    pub exec_id: String,
    pub reply: oneshot::Sender<Option<LineageResponse>>,
}

pub struct Shared {
    pub info: StaticInfo,
    pub data_dir: PathBuf,
    pub head: watch::Receiver<Head>,
    pub tail: TailHub,
    pub lineage: mpsc::Sender<LineageQuery>,
    /// True once the agent is stopping: streams end with UNAVAILABLE.
    pub shutdown: watch::Receiver<bool>,
}

/// The answer to a lineage question, built on the capture thread from its process table.
pub fn lineage_answer(exec_id: &str, table: &ProcessTable) -> Option<LineageResponse> {
    let node = |img: &Image| LineageNode {
        exec_id: img.exec_id.to_string(),
        parent_exec_id: img.parent_exec_id.as_deref().unwrap_or_default().to_owned(),
        tgid: img.tgid,
        binary: img.binary.clone(),
        argv: img.argv.clone(),
        comm: img.comm.clone(),
        running: table.is_running(img),
        events_json: img.recent_events.iter().map(|e| e.to_string()).collect(),
    };
    table.lineage(exec_id).map(|l| LineageResponse {
        ancestors: l.ancestors.into_iter().map(node).collect(),
        node: Some(node(l.node)),
        descendants: l.descendants.into_iter().map(node).collect(),
    })
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

/// The running servers; [`Serving::stop`] ends them.
pub struct Serving {
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
    shutdown: watch::Sender<bool>,
    health: HealthReporter,
}

/// `grpc.health.v1` follows the recorder: NOT_SERVING while it refuses new entries (a sealed
/// segment waits for disk space), SERVING otherwise. Reported for "" and "lineage.v1.Agent".
async fn set_health(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        tonic_health::ServingStatus::Serving
    } else {
        tonic_health::ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(
            <AgentServer<service::AgentService> as tonic::server::NamedService>::NAME,
            status,
        )
        .await;
}

/// Binds the configured listeners and serves them in background tasks of the current runtime.
pub async fn serve(
    config: &GrpcConfig,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    mut recorder: watch::Receiver<RecorderStats>,
) -> Result<Serving, GrpcError> {
    let (reporter, health) = tonic_health::server::health_reporter();
    set_health(&reporter, !recorder.borrow().degraded).await;
    let mut tasks = Vec::new();
    {
        let reporter = reporter.clone();
        let mut stop = shared.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = recorder.changed() => if changed.is_err() { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
                let serving = !recorder.borrow_and_update().degraded;
                set_health(&reporter, serving).await;
            }
        }));
    }
    let mut socket = None;
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
        socket = Some(path.clone());
        let svc = service::AgentService::new(shared.clone(), Access::Local);
        let health = health.clone();
        let mut stop = shared.shutdown.clone();
        tracing::info!(path = %path.display(), "gRPC listening on a Unix socket (mode 0660)");
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            if let Err(e) = Server::builder()
                .add_service(health)
                .add_service(AgentServer::new(svc))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::error!(error = %e, "gRPC Unix socket server stopped");
            }
        }));
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
        tracing::info!(addr = %tls.addr, "gRPC listening on TCP with mutual TLS");
        let mut server =
            Server::builder()
                .tls_config(tls_config)
                .map_err(|e| GrpcError::Listen {
                    addr: tls.addr.to_string(),
                    source: std::io::Error::other(e),
                })?;
        let health = health.clone();
        let mut stop = shared.shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = server
                .add_service(health)
                .add_service(AgentServer::new(svc))
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::error!(error = %e, "gRPC TCP server stopped");
            }
        }));
    }
    Ok(Serving {
        tasks,
        socket,
        shutdown,
        health: reporter,
    })
}

impl Serving {
    /// Ends every stream with UNAVAILABLE, stops accepting, and removes the socket file.
    pub async fn stop(self) {
        set_health(&self.health, false).await;
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
                // A client that never reads keeps its connection open: close it anyway.
                abort.abort();
            }
        }
        if let Some(path) = self.socket {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(error = %e, path = %path.display(), "removing the gRPC socket failed");
            }
        }
    }
}
