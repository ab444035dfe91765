//! The agent's data directory (documented in `docs/DATA_DIR.md`):
//!
//! ```text
//! <data_dir>/            mode 0700
//!   host-id              32 hex digits; the chain's host id, fixed at first start
//!   keys/agent.pub       the identity public key, for verifiers (FORMAT.md §8.1)
//!   keys/seal.key        the one-time key that signs the next segment, mode 0600
//!   keys/seal.next       the key after it, only while a seal is in progress
//!   keys/enrolment       the identity's certificate of the first sealing key
//!   segments/*.seg       sealed segments, immutable (see docs/FORMAT.md)
//!   open.wal             entries appended since the last seal (see wal.rs)
//! ```

use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use crate::cause;
use lineage_evidence::{
    digest::HostId,
    keys::{KeyError, PublicKey, SecretKey},
    lock::{DirLock, LockError},
    sealkeys::{self, SealKeyError, SealKeys},
    segment::SegmentHeader,
};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data directory: {}: {}", .path.display(), cause::file_problem(.path, .source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {} is not writable by the agent: {}", .path.display(), cause::file_problem(.path, .source))]
    NotWritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data directory {0}")]
    InUse(LockError),
    #[error("{path}: not a valid host id (32 hex digits expected)")]
    BadHostId { path: PathBuf },
    #[error("signing key {}: {}", .path.display(), key_problem(.path, .source))]
    Key { path: PathBuf, source: KeyError },
    #[error("sealing keys: {0}")]
    SealKeys(#[from] SealKeyError),
}

/// A key error in words: file access problems get their cause.
fn key_problem(path: &Path, e: &KeyError) -> String {
    match e {
        KeyError::Io { source, .. } => cause::file_problem(path, source),
        other => other.to_string(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.into(),
        source,
    }
}

pub struct DataDir {
    pub root: PathBuf,
    /// Held for the agent's lifetime: a second agent on this directory is refused.
    _lock: DirLock,
}

/// The lock file in the data directory (docs/DATA_DIR.md).
const LOCK_FILE: &str = "agent.lock";

impl DataDir {
    /// Creates the directory (mode 0700) if needed and checks the agent can write to it.
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|source| DataDirError::NotWritable {
                path: root.into(),
                source,
            })?;
        // Before anything else is read or written: another agent may be sealing here.
        let lock = DirLock::acquire(root, LOCK_FILE).map_err(|e| match e {
            LockError::Io { source, .. } => DataDirError::NotWritable {
                path: root.into(),
                source,
            },
            in_use => DataDirError::InUse(in_use),
        })?;
        let probe = root.join(".write-test");
        fs::write(&probe, b"")
            .and_then(|()| fs::remove_file(&probe))
            .map_err(|source| DataDirError::NotWritable {
                path: root.into(),
                source,
            })?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root.join("keys"))
            .map_err(io(root))?;
        Ok(DataDir {
            root: root.into(),
            _lock: lock,
        })
    }

    pub fn wal_path(&self) -> PathBuf {
        self.root.join("open.wal")
    }

    pub fn public_key_path(&self) -> PathBuf {
        self.root.join("keys/agent.pub")
    }

    /// The host id fixed in the data directory; at first start taken from `/etc/machine-id`
    /// (or random when there is none) and written down, so the chain keeps its host.
    pub fn host_id(&self, machine_id: &Path) -> Result<HostId, DataDirError> {
        let path = self.root.join("host-id");
        match fs::read_to_string(&path) {
            Ok(text) => HostId::from_hex(text.trim()).map_err(|_| DataDirError::BadHostId { path }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = fs::read_to_string(machine_id)
                    .ok()
                    .and_then(|t| HostId::from_hex(t.trim()).ok())
                    .unwrap_or_else(|| HostId(rand::random()));
                fs::write(&path, format!("{}\n", id.to_hex())).map_err(io(&path))?;
                Ok(id)
            }
            Err(e) => Err(io(&path)(e)),
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The forward-secure sealing keys for a chain whose newest durable header is `last`
    /// (docs/DATA_DIR.md "Keys"). A data directory nobody enrolled (`lineagectl enrol`) is
    /// enrolled here with an identity key that is then dropped: `configured` (left in place:
    /// it is the operator's file), a version 1 `keys/agent.key` (erased once it has certified
    /// the first sealing key), or a new key that never touches the disk. Its public half goes
    /// to `keys/agent.pub`.
    pub fn seal_keys(
        &self,
        host: &HostId,
        last: Option<&SegmentHeader>,
        configured: Option<&Path>,
    ) -> Result<SealKeys, DataDirError> {
        let legacy = self.root.join("keys/agent.key");
        let mut erase_legacy = false;
        let keys = SealKeys::open(&self.keys_dir(), host, last, || {
            let identity = match configured {
                Some(path) => {
                    tracing::warn!(path = %path.display(), "self-enrolling with the configured identity key; while it stays on this host, root can re-sign the whole log: enrol with `lineagectl enrol` and keep the identity key elsewhere");
                    SecretKey::load(path)?
                }
                None if legacy.exists() => {
                    erase_legacy = true;
                    SecretKey::load(&legacy)?
                }
                None => SecretKey::generate(),
            };
            tracing::info!(identity = %identity.public().key_id(), "enrolled the chain for forward-secure sealing; the identity secret is not kept");
            Ok(identity)
        })?;
        if erase_legacy {
            sealkeys::erase_file(&legacy).map_err(io(&legacy))?;
        }
        if let Some(identity) = keys.identity() {
            if PublicKey::load_file(&self.public_key_path())
                .ok()
                .as_deref()
                != Some(&[identity])
            {
                self.export_public(&identity)?;
            }
        }
        Ok(keys)
    }

    fn export_public(&self, public: &PublicKey) -> Result<(), DataDirError> {
        let path = self.public_key_path();
        let _ = fs::remove_file(&path);
        public.save(&path).map_err(|source| DataDirError::Key {
            path: path.clone(),
            source,
        })?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(io(&path))?;
        Ok(())
    }
}
