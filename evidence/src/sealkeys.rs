//! Forward-secure sealing keys on disk (FORMAT.md §8.1).
//!
//! In format version 2 every segment is signed by its own one-time key, and each header
//! commits to the public half of the key that will sign the next segment. The first key of a
//! chain (or of a re-enrolment) is certified by the host's *identity key* in an ENROLMENT
//! entry; the identity key itself never needs to be on the host. After a segment is durable
//! the key that signed it is erased from memory and disk, so whoever copies the data directory
//! and memory at time T holds only the key for the next segment: they can extend the log,
//! never re-sign a segment sealed before T.
//!
//! Files in the key directory (mode 0600, written with fsync of the file and the directory):
//! - `seal.key`: the secret key that signs the next segment.
//! - `seal.next`: exists only while a seal is in progress: the key after that. It is durable
//!   before the header committing to it is written (crash safety).
//! - `enrolment`: the identity's certificate for the first key of the current enrolment
//!   (`lineage-enrolment-v1 <hex of the 128-byte ENROLMENT body>`), public information.
//!
//! Order of a seal: [`SealKeys::prepare`] (create and persist `seal.next`), sign the header
//! with [`SealKeys::current`] committing to the prepared key, write the segment durably, then
//! [`SealKeys::commit`] (erase `seal.key`, rename `seal.next` over it). A crash at any point
//! leaves a state [`SealKeys::open`] resolves from the last durable header without ever using
//! a key a durable header no longer names.
//!
//! Limits of erasure: the old key file is overwritten with zeros, fsynced and unlinked, and
//! the in-memory key is zeroised on drop (ed25519-dalek's `ZeroizeOnDrop`). A journaling or
//! copy-on-write filesystem (btrfs, ZFS, ext4 with `data=journal`), SSD wear levelling, block
//! device or VM snapshots, swap and backups may still hold old copies: erasure protects
//! against someone who reads the live filesystem and memory later, not against one who
//! already had raw copies of the disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::digest::HostId;
use crate::entry::Enrolment;
use crate::keys::{KeyError, PublicKey, SecretKey};
use crate::segment::SegmentHeader;

/// The current key file.
pub const SEAL_KEY: &str = "seal.key";
/// The next key, during a seal.
pub const SEAL_NEXT: &str = "seal.next";
/// The identity's certificate of the first key of the current enrolment.
pub const ENROLMENT_FILE: &str = "enrolment";
/// Label of the certificate line.
pub const ENROLMENT_LABEL: &str = "lineage-enrolment-v1";

/// Errors of the sealing key store.
#[derive(Debug, thiserror::Error)]
pub enum SealKeyError {
    /// A key file could not be read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Other file I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The certificate file does not parse or does not verify.
    #[error("{0}: not a valid enrolment certificate for this host")]
    BadEnrolment(PathBuf),
    /// The key the last durable header committed to is gone.
    #[error(
        "segment {segment} commits to sealing key {key}, which is not in {dir}: the chain cannot \
         be continued under its key chain; enrol again (`lineagectl enrol`)"
    )]
    MissingCommittedKey {
        /// The last durable segment.
        segment: u64,
        /// The key id it committed to.
        key: crate::keys::KeyId,
        /// The key directory.
        dir: PathBuf,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SealKeyError + '_ {
    move |source| SealKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Overwrites a file with zeros, fsyncs it, unlinks it and fsyncs its directory. A missing
/// file is fine. See the module docs for what this cannot guarantee.
pub fn erase_file(path: &Path) -> io::Result<()> {
    let mut f = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len() as usize;
    f.write_all(&vec![0u8; len])?;
    f.sync_all()?;
    drop(f);
    fs::remove_file(path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(d) => File::open(if d.as_os_str().is_empty() {
            Path::new(".")
        } else {
            d
        })?
        .sync_all(),
        None => Ok(()),
    }
}

/// Writes `key` to `path` (mode 0600) through a temporary file, durably: the file and its
/// directory are fsynced before this returns.
fn save_durably(key: &SecretKey, path: &Path) -> Result<(), SealKeyError> {
    let tmp = path.with_extension("tmp");
    erase_file(&tmp).map_err(io_err(&tmp))?;
    key.save(&tmp)?;
    fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(path).map_err(io_err(path))
}

fn load_if_present(path: &Path) -> Result<Option<SecretKey>, SealKeyError> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(SecretKey::load(path)?))
}

/// Reads the certificate file, if there is one, checking it verifies for `host`.
pub fn read_enrolment(dir: &Path, host: &HostId) -> Result<Option<Enrolment>, SealKeyError> {
    let path = dir.join(ENROLMENT_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let bad = || SealKeyError::BadEnrolment(path.clone());
    let mut parts = text.split_whitespace();
    if parts.next() != Some(ENROLMENT_LABEL) {
        return Err(bad());
    }
    let body = hex::decode(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    let e = Enrolment::parse_body(&body).map_err(|_| bad())?;
    if !e.verify(host) {
        return Err(bad());
    }
    Ok(Some(e))
}

/// Enrols a chain: creates its first sealing key and the identity's certificate for it in
/// `dir`, replacing any previous sealing keys (which are erased). The identity key is only
/// used here and is not stored. Returns the certificate.
pub fn enrol(dir: &Path, host: &HostId, identity: &SecretKey) -> Result<Enrolment, SealKeyError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let first = SecretKey::generate();
    let cert = Enrolment::sign(host, identity, &first.public());
    let next = dir.join(SEAL_NEXT);
    erase_file(&next).map_err(io_err(&next))?;
    let key_path = dir.join(SEAL_KEY);
    erase_file(&key_path).map_err(io_err(&key_path))?;
    save_durably(&first, &key_path)?;
    let cert_path = dir.join(ENROLMENT_FILE);
    let tmp = cert_path.with_extension("tmp");
    let mut body = Vec::new();
    cert.encode_body_into(&mut body);
    fs::write(&tmp, format!("{ENROLMENT_LABEL} {}\n", hex::encode(body)))
        .and_then(|()| File::open(&tmp)?.sync_all())
        .and_then(|()| fs::rename(&tmp, &cert_path))
        .and_then(|()| sync_dir(&cert_path))
        .map_err(io_err(&cert_path))?;
    Ok(cert)
}

/// The sealing key state of a running writer. See the module docs.
#[derive(Debug)]
pub struct SealKeys {
    dir: PathBuf,
    identity: Option<PublicKey>,
    current: SecretKey,
    next: Option<SecretKey>,
    pending_enrolment: Option<Enrolment>,
}

impl SealKeys {
    /// Resolves the key state in `dir` for a chain whose newest durable segment header is
    /// `last` (`None` for a new chain). Without usable keys the chain is enrolled with
    /// `identity()` (self-enrolment). Never returns a key whose segment is already durable.
    pub fn open(
        dir: &Path,
        host: &HostId,
        last: Option<&SegmentHeader>,
        identity: impl FnOnce() -> Result<SecretKey, SealKeyError>,
    ) -> Result<Self, SealKeyError> {
        let key_path = dir.join(SEAL_KEY);
        let next_path = dir.join(SEAL_NEXT);
        let current = load_if_present(&key_path)?;
        let next = load_if_present(&next_path)?;
        let cert = read_enrolment(dir, host)?;
        let enrolled = |k: &Option<SecretKey>| {
            cert.filter(|c| k.as_ref().is_some_and(|k| k.public() == c.epoch_public))
        };
        let committed = last.and_then(|h| h.seal.map(|s| (h.segment_number, s.next_public_key)));
        let certified = cert.map(|c| c.identity_public);
        let open = |current, pending_enrolment: Option<Enrolment>| -> Result<Self, SealKeyError> {
            Ok(SealKeys {
                dir: dir.to_owned(),
                identity: pending_enrolment.map(|c| c.identity_public).or(certified),
                current,
                next: None,
                pending_enrolment,
            })
        };
        if let Some((segment, p)) = committed {
            if let Some(n) = next.filter(|n| n.public() == p) {
                // The segment committing to `seal.next` is durable: finish that commit.
                erase_file(&key_path).map_err(io_err(&key_path))?;
                fs::rename(&next_path, &key_path).map_err(io_err(&key_path))?;
                sync_dir(&key_path).map_err(io_err(&key_path))?;
                return open(n, None);
            }
            erase_file(&next_path).map_err(io_err(&next_path))?;
            if let Some(pending) = enrolled(&current) {
                // Enrolled again (`lineagectl enrol`) while stopped.
                return open(current.expect("checked"), Some(pending));
            }
            return match current.filter(|k| k.public() == p) {
                Some(k) => open(k, None),
                None => Err(SealKeyError::MissingCommittedKey {
                    segment,
                    key: p.key_id(),
                    dir: dir.to_owned(),
                }),
            };
        }
        erase_file(&next_path).map_err(io_err(&next_path))?;
        if let Some(pending) = enrolled(&current) {
            return open(current.expect("checked"), Some(pending));
        }
        let id = identity()?;
        let cert = enrol(dir, host, &id)?;
        let current = SecretKey::load(&key_path)?;
        open(current, Some(cert))
    }

    /// The identity key of the newest enrolment in the key directory (what verifiers trust).
    pub fn identity(&self) -> Option<PublicKey> {
        self.identity
    }

    /// The key that signs the next segment.
    pub fn current(&self) -> &SecretKey {
        &self.current
    }

    /// The certificate to record (as an ENROLMENT entry) in the next segment, once.
    pub fn take_enrolment(&mut self) -> Option<Enrolment> {
        self.pending_enrolment.take()
    }

    /// Creates the key after [`SealKeys::current`] and makes it durable (`seal.next`); returns
    /// its public half for the header to commit to. Calling it again before
    /// [`SealKeys::commit`] returns the same key.
    pub fn prepare(&mut self) -> Result<PublicKey, SealKeyError> {
        if let Some(n) = &self.next {
            return Ok(n.public());
        }
        let next = SecretKey::generate();
        save_durably(&next, &self.dir.join(SEAL_NEXT))?;
        let public = next.public();
        self.next = Some(next);
        Ok(public)
    }

    /// Call once the segment signed by [`SealKeys::current`] is durable: erases that key from
    /// disk and memory and makes the prepared key current.
    pub fn commit(&mut self) -> Result<(), SealKeyError> {
        let Some(next) = self.next.take() else {
            return Ok(());
        };
        let key_path = self.dir.join(SEAL_KEY);
        let next_path = self.dir.join(SEAL_NEXT);
        // Dropping the old key zeroises it in memory.
        self.current = next;
        erase_file(&key_path).map_err(io_err(&key_path))?;
        fs::rename(&next_path, &key_path).map_err(io_err(&key_path))?;
        sync_dir(&key_path).map_err(io_err(&key_path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::digest::Digest;

    const HOST: HostId = HostId([3; 16]);

    #[test]
    fn keys_evolve_and_old_ones_are_erased() {
        let dir = tempfile::tempdir().unwrap();
        let identity = SecretKey::from_seed([9; 32]);
        let mut keys = SealKeys::open(dir.path(), &HOST, None, || {
            Ok(SecretKey::from_seed([9; 32]))
        })
        .unwrap();
        let cert = keys.take_enrolment().unwrap();
        assert_eq!(cert.identity_public, identity.public());
        assert_eq!(cert.epoch_public, keys.current().public());
        let mut w = ChainWriter::new(HOST);
        let mut seen = Vec::new();
        let mut last = None;
        for _ in 0..3 {
            let old_file = fs::read(dir.path().join(SEAL_KEY)).unwrap();
            let next = keys.prepare().unwrap();
            let seg = w.seal_forward(1, keys.current(), &next, Digest::ZERO);
            keys.commit().unwrap();
            seen.push(seg.header.public_key);
            assert_eq!(keys.current().public(), next);
            // The old key is nowhere in the directory.
            for e in fs::read_dir(dir.path()).unwrap() {
                assert_ne!(fs::read(e.unwrap().path()).unwrap(), old_file);
            }
            last = Some(seg.header);
        }
        assert!(!dir.path().join(SEAL_NEXT).exists());
        // Reopening continues with the committed key and no pending enrolment.
        let mut again =
            SealKeys::open(dir.path(), &HOST, last.as_ref(), || unreachable!()).unwrap();
        assert_eq!(
            Some(again.current().public()),
            last.unwrap().seal.map(|s| s.next_public_key)
        );
        assert!(again.take_enrolment().is_none());
    }

    #[test]
    fn crash_recovery_never_reuses_a_key_of_a_durable_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys =
            SealKeys::open(dir.path(), &HOST, None, || Ok(SecretKey::generate())).unwrap();
        let mut w = ChainWriter::new(HOST);
        let k0 = keys.current().public();
        let next = keys.prepare().unwrap();
        let seg = w.seal_forward(1, keys.current(), &next, Digest::ZERO);
        // Crash after the segment was durable, before commit: reopening finishes the commit.
        drop(keys);
        let keys = SealKeys::open(dir.path(), &HOST, Some(&seg.header), || unreachable!()).unwrap();
        assert_eq!(keys.current().public(), next);
        assert_ne!(keys.current().public(), k0);
        assert!(!dir.path().join(SEAL_NEXT).exists());

        // Crash after prepare, before the segment was durable: the committed key stays
        // current and the orphan next key is erased.
        let mut keys = keys;
        let orphan = keys.prepare().unwrap();
        drop(keys);
        let keys = SealKeys::open(dir.path(), &HOST, Some(&seg.header), || unreachable!()).unwrap();
        assert_eq!(keys.current().public(), next);
        assert_ne!(keys.current().public(), orphan);
        assert!(!dir.path().join(SEAL_NEXT).exists());

        // The committed key is gone: refuse rather than sign with anything else.
        erase_file(&dir.path().join(SEAL_KEY)).unwrap();
        assert!(matches!(
            SealKeys::open(dir.path(), &HOST, Some(&seg.header), || unreachable!()),
            Err(SealKeyError::MissingCommittedKey { .. })
        ));
    }

    #[test]
    fn erase_overwrites_then_unlinks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        fs::write(&p, b"secret").unwrap();
        erase_file(&p).unwrap();
        assert!(!p.exists());
        erase_file(&p).unwrap();
    }
}
