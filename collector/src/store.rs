//! Where verified evidence goes, through the `object_store` crate so that the local
//! filesystem (the embedded default) and S3-compatible buckets share one code path.
//!
//! Layout (documented in `docs/COLLECTOR.md`), relative to the store root:
//!
//! ```text
//! witness.pub                          the collector's witness public key(s)
//! <host>/segments/<20 digits>.seg      verified segments, byte-identical to the agent's
//! <host>/witness/<20 digits>.sig       64-byte Ed25519 witness signature per segment
//! <host>/quarantine/<20 digits>.seg    a rejected copy, never under segments/
//! <host>/quarantine/<20 digits>.finding.json
//! <host>/pinned.pub                    the agent key pinned on first use
//! <host>/state.json                    cursor, last head, last cosigned checkpoint
//! <host>/owner.json                    the configured agent bound to this host id
//! <host>/checkpoints/leaves            header digests of the stored segments
//! <host>/checkpoints/witness-<id>.note the newest checkpoint this collector cosigned
//! witness.vkey                         the C2SP verifier key of the cosignatures
//! ```
//!
//! `<host>/segments` is exactly an agent's `segments` directory, so `lineagectl verify
//! <root>/<host>` works on a filesystem store. Every object is written whole or not at all:
//! `object_store` puts are atomic per object (the local backend writes a temp file and renames
//! it); for the local backend the file and its directory are also fsynced, because an
//! acknowledged segment may be deleted on the agent.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use lineage_evidence::digest::HostId;
use lineage_evidence::store::file_name;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::config::{S3Config, StoreConfig};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed.
    #[error("object store: {0}")]
    Backend(#[from] object_store::Error),
    /// Creating or syncing the local directory failed.
    #[error("{path}: {source}")]
    Local {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A different object already holds this segment number: stored segments are immutable.
    #[error("{0}: a different segment with this number is already stored")]
    Conflict(String),
}

/// The collector's evidence store.
#[derive(Clone, Debug)]
pub struct EvidenceStore {
    inner: Arc<dyn ObjectStore>,
    prefix: Option<ObjPath>,
    /// Set for the filesystem backend: its root, for fsync.
    local_root: Option<PathBuf>,
}

/// Which object of a host.
#[derive(Debug, Clone, Copy)]
pub enum Object {
    /// `segments/<n>.seg`.
    Segment(u64),
    /// `witness/<n>.sig`.
    Witness(u64),
    /// `quarantine/<n>.seg`.
    Quarantined(u64),
    /// `quarantine/<n>.finding.json`.
    Finding(u64),
    /// `pinned.pub`.
    Pinned,
    /// `state.json`.
    State,
    /// `checkpoints/leaves`: header digests of the stored segments (docs/FORMAT.md §12.4).
    Leaves,
    /// `checkpoints/witness-<key id>.note`: the newest checkpoint this collector cosigned.
    Cosigned(u32),
    /// `owner.json`: the configured agent this host id is bound to.
    Owner,
}

impl Object {
    fn rel(self) -> String {
        match self {
            Object::Segment(n) => format!("segments/{}", file_name(n)),
            Object::Witness(n) => format!("witness/{n:020}.sig"),
            Object::Quarantined(n) => format!("quarantine/{}", file_name(n)),
            Object::Finding(n) => format!("quarantine/{n:020}.finding.json"),
            Object::Pinned => "pinned.pub".into(),
            Object::State => "state.json".into(),
            Object::Leaves => format!(
                "{}/{}",
                lineage_evidence::tlog::CHECKPOINTS_DIR,
                lineage_evidence::tlog::LEAVES_FILE
            ),
            Object::Cosigned(id) => format!(
                "{}/{}",
                lineage_evidence::tlog::CHECKPOINTS_DIR,
                lineage_evidence::tlog::witness_file(id)
            ),
            Object::Owner => "owner.json".into(),
        }
    }
}

impl EvidenceStore {
    /// Opens the configured backend.
    pub fn open(cfg: &StoreConfig) -> Result<Self, StoreError> {
        match cfg {
            StoreConfig::Fs { path } => {
                std::fs::create_dir_all(path).map_err(|source| StoreError::Local {
                    path: path.clone(),
                    source,
                })?;
                let root = std::fs::canonicalize(path).map_err(|source| StoreError::Local {
                    path: path.clone(),
                    source,
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&root)?
                    .with_automatic_cleanup(false);
                Ok(EvidenceStore {
                    inner: Arc::new(fs),
                    prefix: None,
                    local_root: Some(root),
                })
            }
            StoreConfig::S3(s3) => Self::open_s3(s3),
        }
    }

    fn open_s3(s3: &S3Config) -> Result<Self, StoreError> {
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket)
            .with_region(&s3.region)
            .with_allow_http(s3.allow_http);
        if let Some(e) = &s3.endpoint {
            b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
        }
        if let Some((id, secret)) = &s3.credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        Ok(EvidenceStore {
            inner: Arc::new(b.build()?),
            prefix: (!s3.prefix.is_empty()).then(|| ObjPath::from(s3.prefix.as_str())),
            local_root: None,
        })
    }

    fn path(&self, rel: &str) -> ObjPath {
        match &self.prefix {
            Some(p) => ObjPath::from(format!("{p}/{rel}")),
            None => ObjPath::from(rel),
        }
    }

    /// The object's key (for messages).
    pub fn key(&self, host: &HostId, o: Object) -> String {
        self.path(&format!("{host}/{}", o.rel())).to_string()
    }

    /// Reads an object; `None` when absent.
    pub async fn get(&self, host: &HostId, o: Object) -> Result<Option<Bytes>, StoreError> {
        self.get_rel(&format!("{host}/{}", o.rel())).await
    }

    async fn get_rel(&self, rel: &str) -> Result<Option<Bytes>, StoreError> {
        match self.inner.get(&self.path(rel)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes an object, replacing any previous version (state, quarantine, witness).
    pub async fn put(&self, host: &HostId, o: Object, data: Bytes) -> Result<(), StoreError> {
        self.put_rel(&format!("{host}/{}", o.rel()), data).await
    }

    async fn put_rel(&self, rel: &str, data: Bytes) -> Result<(), StoreError> {
        let path = self.path(rel);
        self.inner.put(&path, PutPayload::from(data)).await?;
        self.sync_local(rel)
    }

    /// Stores a verified segment. Segments are immutable: the identical bytes again are a
    /// no-op (a crash between storing and recording the cursor), different bytes are refused.
    pub async fn put_segment(&self, host: &HostId, n: u64, data: Bytes) -> Result<(), StoreError> {
        if let Some(old) = self.get(host, Object::Segment(n)).await? {
            return if old == data {
                Ok(())
            } else {
                Err(StoreError::Conflict(self.key(host, Object::Segment(n))))
            };
        }
        self.put(host, Object::Segment(n), data).await
    }

    /// Reads the root-level `witness.pub`.
    pub async fn get_witness_pub(&self) -> Result<Option<Bytes>, StoreError> {
        self.get_rel("witness.pub").await
    }

    /// Replaces the root-level `witness.pub`.
    pub async fn put_witness_pub(&self, data: Bytes) -> Result<(), StoreError> {
        self.put_rel("witness.pub", data).await
    }

    /// Replaces the root-level `witness.vkey` (the C2SP verifier key of the cosigner).
    pub async fn put_witness_vkey(&self, data: Bytes) -> Result<(), StoreError> {
        self.put_rel("witness.vkey", data).await
    }

    /// Makes a just-written local file and its directory durable.
    fn sync_local(&self, rel: &str) -> Result<(), StoreError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(rel);
        let sync = |p: &std::path::Path| {
            std::fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|source| StoreError::Local {
                    path: p.to_owned(),
                    source,
                })
        };
        sync(&file)?;
        if let Some(dir) = file.parent() {
            sync(dir)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fs_layout_and_immutability() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::open(&StoreConfig::Fs {
            path: dir.path().join("store"),
        })
        .unwrap();
        let host = HostId([0xab; 16]);
        store
            .put_segment(&host, 3, Bytes::from_static(b"seg"))
            .await
            .unwrap();
        store
            .put_segment(&host, 3, Bytes::from_static(b"seg"))
            .await
            .unwrap();
        assert!(matches!(
            store
                .put_segment(&host, 3, Bytes::from_static(b"other"))
                .await,
            Err(StoreError::Conflict(_))
        ));
        let p = dir
            .path()
            .join("store")
            .join(host.to_string())
            .join("segments/00000000000000000003.seg");
        assert_eq!(std::fs::read(p).unwrap(), b"seg");
        assert!(store.get(&host, Object::State).await.unwrap().is_none());
        store
            .put(&host, Object::Witness(3), Bytes::from_static(b"w"))
            .await
            .unwrap();
        assert!(dir
            .path()
            .join("store")
            .join(host.to_string())
            .join("witness/00000000000000000003.sig")
            .exists());
    }
}
