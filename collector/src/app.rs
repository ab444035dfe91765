//! Building the collector from a validated [`Config`] and running it: the witness key, the
//! store, one [`AgentTask`] per agent and the status board. Kept apart from `main.rs` so that
//! tests drive exactly what the binary runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use lineage_evidence::checkpoint::{VerifierKey, SIG_COSIGNATURE_V1};
use lineage_evidence::keys::{KeyError, PublicKey};
use lineage_evidence::lock::{DirLock, LockError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{Config, StoreConfig};
use crate::puller::{endpoint_text, AgentTask, Shared};
use crate::status::{AgentStatus, StatusBoard};
use crate::store::{EvidenceStore, StoreError};
use crate::witness::{self, WitnessError};

/// Startup errors.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The witness key.
    #[error("{0}")]
    Witness(#[from] WitnessError),
    /// The store.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Another collector uses this store.
    #[error("store {0}")]
    Lock(#[from] LockError),
    /// An agent's trusted_keys file.
    #[error("agent {agent}: trusted_keys {path}: {source}")]
    TrustedKeys {
        /// Agent name.
        agent: String,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: KeyError,
    },
}

/// How long tasks get to finish after shutdown is signalled.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Publishes the witness key at `<root>/witness.pub`, keeping earlier witness keys (one per
/// line) so that older witness signatures stay checkable.
async fn publish_witness_key(store: &EvidenceStore, key: &PublicKey) -> Result<(), StoreError> {
    let line = format!("{}  key-id={}\n", key.to_line(), key.key_id());
    let old = store.get_witness_pub().await?;
    let text = match &old {
        Some(b) => String::from_utf8_lossy(b).into_owned(),
        None => String::new(),
    };
    if PublicKey::parse_text(&text).is_ok_and(|ks| ks.contains(key)) {
        return Ok(());
    }
    if old.is_some() {
        warn!(
            "the witness key changed; appending {} to witness.pub",
            key.key_id()
        );
    }
    store
        .put_witness_pub(Bytes::from(format!("{text}{line}")))
        .await
}

/// One collector per store: its per-host state (cursors, last headers) lives in the store, and
/// two collectors advancing it at once would race. A directory store is locked in place; an
/// S3 store by a lock file beside the witness key, which only excludes a second collector on
/// the same machine (docs/COLLECTOR.md).
fn lock_store(cfg: &Config) -> Result<DirLock, LockError> {
    match &cfg.store {
        StoreConfig::Fs { path } => DirLock::acquire(path, ".collector.lock"),
        StoreConfig::S3(s3) => {
            let name: String = format!("{}-{}", s3.bucket, s3.prefix)
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            let dir = cfg
                .key_path
                .parent()
                .unwrap_or_else(|| std::path::Path::new("."));
            DirLock::acquire(dir, &format!(".collector-s3-{name}.lock"))
        }
    }
}

/// Runs the collector until `shutdown` turns true, then drains.
pub async fn run(cfg: Config, shutdown: watch::Receiver<bool>) -> Result<(), AppError> {
    let (key, created) = witness::load_or_generate(&cfg.key_path)?;
    if created {
        info!(
            "generated witness key {} at {}",
            key.public().key_id(),
            cfg.key_path.display()
        );
    }
    let store = EvidenceStore::open(&cfg.store)?;
    // Held until run returns (the collector's lifetime).
    let _lock = lock_store(&cfg)?;
    publish_witness_key(&store, &key.public()).await?;
    let vkey = VerifierKey {
        name: cfg.name.clone(),
        sig_type: SIG_COSIGNATURE_V1,
        key: key.public(),
    };
    store
        .put_witness_vkey(Bytes::from(format!("{vkey}\n")))
        .await?;
    info!("cosigning checkpoints as {vkey}");
    let witness_key_id = key.public().key_id().to_string();
    let shared = Arc::new(Shared {
        store,
        witness: key,
        collector_name: cfg.name.clone(),
        vkey,
        max_message_bytes: cfg.max_message_bytes,
        quarantine_max_bytes: cfg.quarantine_max_bytes,
        claims: tokio::sync::Mutex::new(()),
    });
    let mut tasks = Vec::new();
    let mut statuses = Vec::new();
    for a in &cfg.agents {
        let trusted = match &a.trusted_keys {
            Some(p) => PublicKey::load_file(p).map_err(|source| AppError::TrustedKeys {
                agent: a.name.clone(),
                path: p.clone(),
                source,
            })?,
            None => Vec::new(),
        };
        let status = AgentStatus::new(&a.name, &endpoint_text(&a.endpoint));
        statuses.push(status.clone());
        let task = AgentTask {
            cfg: a.clone(),
            trusted,
            shared: shared.clone(),
            status,
        };
        tasks.push(tokio::spawn(task.run(shutdown.clone())));
    }
    let metrics = match cfg.metrics_listen {
        Some(addr) => {
            // The board refreshes every second; three missed refreshes mean it is stuck.
            let endpoint = lineage_ops::Endpoint::new(Duration::from_secs(3));
            match lineage_ops::serve(addr, endpoint.clone()).await {
                Ok(_) => Some(endpoint),
                // Someone else on the port must not stop collection: metrics are a convenience.
                Err(e) => {
                    warn!("metrics endpoint on {addr} not started: {e}; collecting without it");
                    None
                }
            }
        }
        None => None,
    };
    let board = StatusBoard {
        collector: cfg.name.clone(),
        witness_key_id,
        agents: statuses,
        path: cfg.status_path.clone(),
        heartbeat_timeout: cfg.heartbeat_timeout,
        metrics,
        store_dir: match &cfg.store {
            StoreConfig::Fs { path } => Some(path.clone()),
            StoreConfig::S3(_) => None,
        },
    };
    tasks.push(tokio::spawn(board.run(shutdown.clone())));
    info!(
        "collector {} pulling from {} agent(s)",
        cfg.name,
        cfg.agents.len()
    );
    let mut wait = shutdown.clone();
    let _ = wait.wait_for(|stop| *stop).await;
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        warn!("tasks did not stop within {DRAIN_TIMEOUT:?}");
    }
    info!("collector stopped");
    Ok(())
}
