//! A log's checkpoint directory, `<dir>/checkpoints/`, beside `<dir>/segments/`:
//!
//! - `leaves`: the header digest of every segment ever sealed, 32 bytes each in segment
//!   order (append-only; it outlives segments deleted by retention, so the tree can still be
//!   proven after the oldest segments are gone);
//! - `latest.note`: the newest checkpoint, signed by the agent (written after `leaves`);
//! - `witness-<8 hex key id>.note`: the newest checkpoint that witness cosigned, as the
//!   witness returned it (the agent's signature line plus the witness's cosignature).
//!
//! Nothing here is trusted by a verifier: `leaves` must agree with the segments present and
//! with the cosigned roots, and notes are checked against keys the verifier is given. The
//! agent writes `leaves` and `latest.note` (one writer); the gRPC side only reads them and
//! writes witness notes, each file replaced atomically (temp file, fsync, rename).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, Note, NoteError, MAX_NOTE_LEN};
use crate::digest::{Digest, HostId};
use crate::keys::SecretKey;
use crate::rfc6962;
use crate::segment::SegmentHeader;
use crate::store::{SegmentStore, StoreError};

/// Subdirectory of the checkpoint files.
pub const CHECKPOINTS_DIR: &str = "checkpoints";
/// The header-digest file.
pub const LEAVES_FILE: &str = "leaves";
/// The newest agent-signed checkpoint.
pub const LATEST_FILE: &str = "latest.note";

/// Checkpoint directory errors.
#[derive(Debug, thiserror::Error)]
pub enum TlogError {
    /// I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the segments failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A segment present cannot be placed in the tree: an older one is missing from both
    /// `leaves` and `segments/`.
    #[error("segment {0} is present but the header digests before it are unknown")]
    Unplaceable(u64),
    /// A note or checkpoint is malformed.
    #[error("{path}: {source}")]
    Note {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: NoteError,
    },
    /// No checkpoint has been published yet.
    #[error("no checkpoint published yet")]
    Empty,
    /// The requested old size is larger than the tree.
    #[error("old size {old} is larger than the tree ({size} segments)")]
    OldTooLarge {
        /// Requested.
        old: u64,
        /// The tree's size.
        size: u64,
    },
    /// A cosigned checkpoint that is not one of this log's checkpoints.
    #[error("not a checkpoint of this log: {0}")]
    Foreign(&'static str),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlogError + '_ {
    move |source| TlogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The checkpoint directory of the log rooted at `log_dir`.
pub fn dir_of(log_dir: &Path) -> PathBuf {
    log_dir.join(CHECKPOINTS_DIR)
}

/// Replaces `path` with `bytes` atomically and durably.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TlogError> {
    let dir = path.parent().expect("files live in a directory");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().expect("a file").to_string_lossy()
    ));
    {
        let mut f = File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Reads a small text file (a note), refusing anything larger than a note can be.
fn read_note(path: &Path) -> Result<Option<Note>, TlogError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    let mut buf = Vec::new();
    f.take(MAX_NOTE_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    Note::parse(&buf)
        .map(Some)
        .map_err(|source| TlogError::Note {
            path: path.to_owned(),
            source,
        })
}

/// The header at the start of a segment file, if it parses.
fn read_header(path: &Path) -> Result<Option<SegmentHeader>, TlogError> {
    let mut f = File::open(path).map_err(io(path))?;
    // Version 1 and 2 headers differ in length; the header says which it is.
    match SegmentHeader::read_from(&mut f) {
        Ok(h) => Ok(h.ok()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Reads `leaves` (a torn trailing partial digest is ignored).
pub fn read_leaves(dir: &Path) -> Result<Vec<Digest>, TlogError> {
    let path = dir.join(LEAVES_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(&path)(e)),
    };
    Ok(bytes
        .chunks_exact(32)
        .map(|c| Digest(c.try_into().expect("32 bytes")))
        .collect())
}

/// The agent's side: keeps `leaves` in step with the sealed segments and publishes a signed
/// checkpoint at every seal.
#[derive(Debug)]
pub struct CheckpointWriter {
    dir: PathBuf,
    host: HostId,
    /// Header digests of segments 0..len.
    digests: Vec<Digest>,
    /// RFC 6962 leaf hashes of the same.
    leaves: Vec<Digest>,
}

impl CheckpointWriter {
    /// Opens the checkpoint directory of `log_dir` and brings `leaves` in step with the
    /// segments present: a digest that disagrees with a present segment is replaced from that
    /// segment on (the segments are the log; a witness then judges the history), and newer
    /// segments are appended.
    pub fn open(log_dir: &Path, host: HostId, store: &SegmentStore) -> Result<Self, TlogError> {
        let dir = dir_of(log_dir);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut digests = read_leaves(&dir)?;
        let mut rewrite = false;
        for (n, path) in store.list()?.segments {
            // Only the header is needed: read its 248 bytes, not the whole segment.
            let Some(h) = read_header(&path)?.filter(|h| h.segment_number == n) else {
                continue;
            };
            let d = h.digest();
            let n = usize::try_from(n).map_err(|_| TlogError::Unplaceable(n))?;
            match n.cmp(&digests.len()) {
                std::cmp::Ordering::Less if digests[n] == d => {}
                std::cmp::Ordering::Less => {
                    digests.truncate(n);
                    digests.push(d);
                    rewrite = true;
                }
                std::cmp::Ordering::Equal => {
                    digests.push(d);
                    rewrite = true;
                }
                std::cmp::Ordering::Greater => return Err(TlogError::Unplaceable(n as u64)),
            }
        }
        let w = CheckpointWriter {
            leaves: digests.iter().map(rfc6962::segment_leaf).collect(),
            dir,
            host,
            digests,
        };
        if rewrite {
            let bytes: Vec<u8> = w.digests.iter().flat_map(|d| d.0).collect();
            write_atomic(&w.dir.join(LEAVES_FILE), &bytes)?;
        }
        Ok(w)
    }

    /// Segments in the tree.
    pub fn size(&self) -> u64 {
        self.digests.len() as u64
    }

    /// The checkpoint of the current tree.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            host: self.host,
            size: self.size(),
            root: rfc6962::root(&self.leaves),
        }
    }

    /// Adds the segment just sealed (which must be segment `size()`), then signs and writes
    /// the new checkpoint with `key` (the key that signed that segment).
    pub fn append(&mut self, header: &SegmentHeader, key: &SecretKey) -> Result<Note, TlogError> {
        if header.segment_number != self.size() {
            return Err(TlogError::Unplaceable(header.segment_number));
        }
        let d = header.digest();
        let path = self.dir.join(LEAVES_FILE);
        // Trim a torn tail first so the file stays a whole number of digests.
        let mut f = OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        f.set_len(self.size() * 32).map_err(io(&path))?;
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::End(0)).map_err(io(&path))?;
        f.write_all(&d.0).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))?;
        self.digests.push(d);
        self.leaves.push(rfc6962::segment_leaf(&d));
        let note = self.checkpoint().sign(key);
        write_atomic(&self.dir.join(LATEST_FILE), note.to_text().as_bytes())?;
        Ok(note)
    }
}

/// A published tree as the reader side sees it: the newest signed checkpoint and the leaf
/// hashes it covers.
#[derive(Debug, Clone)]
pub struct Published {
    /// The agent-signed note.
    pub note: Note,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
    /// RFC 6962 leaf hashes of segments `0..checkpoint.size`.
    pub leaves: Vec<Digest>,
}

/// Reads `latest.note` and the leaves it covers, checking that they produce its root.
pub fn read_published(dir: &Path) -> Result<Published, TlogError> {
    let path = dir.join(LATEST_FILE);
    let note = read_note(&path)?.ok_or(TlogError::Empty)?;
    let checkpoint = Checkpoint::parse_body(&note.text).map_err(|source| TlogError::Note {
        path: path.clone(),
        source,
    })?;
    let digests = read_leaves(dir)?;
    let size = usize::try_from(checkpoint.size).unwrap_or(usize::MAX);
    if digests.len() < size {
        return Err(TlogError::Foreign(
            "leaves is shorter than the latest checkpoint",
        ));
    }
    let leaves: Vec<Digest> = digests[..size].iter().map(rfc6962::segment_leaf).collect();
    if rfc6962::root(&leaves) != checkpoint.root {
        return Err(TlogError::Foreign("leaves do not produce the latest root"));
    }
    Ok(Published {
        note,
        checkpoint,
        leaves,
    })
}

impl Published {
    /// The C2SP tlog-witness `add-checkpoint` request body from `old` to this checkpoint:
    /// `old <n>\n`, one base64 consistency-proof hash per line, an empty line, the note.
    pub fn add_checkpoint_body(&self, old: u64) -> Result<String, TlogError> {
        use base64::Engine as _;
        let size = self.checkpoint.size;
        if old > size {
            return Err(TlogError::OldTooLarge { old, size });
        }
        let proof = if old == 0 {
            Vec::new()
        } else {
            rfc6962::consistency_proof(&self.leaves, old as usize).expect("0 < old <= size")
        };
        let mut s = format!("old {old}\n");
        for h in proof {
            s.push_str(&base64::engine::general_purpose::STANDARD.encode(h.0));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.note.to_text());
        Ok(s)
    }
}

/// File name of a witness's newest cosigned checkpoint.
pub fn witness_file(key_id: u32) -> String {
    format!("witness-{key_id:08x}.note")
}

/// Stores a witness's newest cosigned checkpoint (as `witness-<key id>.note` for each
/// cosignature line it carries other than the log's own). The note must be a checkpoint of
/// `host`; its signatures are for verifiers to judge.
pub fn store_cosigned(dir: &Path, host: &HostId, note: &Note) -> Result<usize, TlogError> {
    let cp = Checkpoint::parse_body(&note.text).map_err(|source| TlogError::Note {
        path: dir.to_owned(),
        source,
    })?;
    if cp.host != *host {
        return Err(TlogError::Foreign("another host's origin"));
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    let origin = crate::checkpoint::origin(host);
    let mut stored = 0;
    for s in note.signatures.iter().filter(|s| s.name != origin) {
        write_atomic(&dir.join(witness_file(s.key_id)), note.to_text().as_bytes())?;
        stored += 1;
    }
    if stored == 0 {
        return Err(TlogError::Foreign("no cosignature line"));
    }
    Ok(stored)
}

/// The largest checkpoint size any stored witness note names (signatures not checked: for
/// metrics, not for verdicts).
pub fn newest_cosigned_size(dir: &Path) -> Result<Option<u64>, TlogError> {
    Ok(read_cosigned(dir)?
        .into_iter()
        .filter_map(|(_, n)| n.ok())
        .filter_map(|n| Checkpoint::parse_body(&n.text).ok())
        .map(|c| c.size)
        .max())
}

/// A stored witness note and whether it parses.
pub type CosignedFile = (PathBuf, Result<Note, TlogError>);

/// Every `witness-*.note` in `dir` (unparsable ones are reported as errors in place).
pub fn read_cosigned(dir: &Path) -> Result<Vec<CosignedFile>, TlogError> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in rd {
        let e = e.map_err(io(dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("witness-") && name.ends_with(".note") {
            let p = e.path();
            let r = read_note(&p).and_then(|n| n.ok_or(TlogError::Empty));
            out.push((p, r));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::checkpoint::{cosign, origin};

    const HOST: HostId = HostId([9; 16]);

    fn seal_n(dir: &Path, w: &mut ChainWriter, key: &SecretKey, n: u64) -> Vec<SegmentHeader> {
        let store = SegmentStore::create(dir).unwrap();
        (0..n)
            .map(|i| {
                w.append_event(1, format!("e{i}").as_bytes()).unwrap();
                let s = w.seal(i + 1, key);
                store.write(&s).unwrap();
                s.header
            })
            .collect()
    }

    #[test]
    fn leaves_follow_the_segments_and_proofs_verify() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([1; 32]);
        let mut chain = ChainWriter::new(HOST);
        let headers = seal_n(d.path(), &mut chain, &key, 3);
        let store = SegmentStore::open(d.path()).unwrap();
        // Opening catches up with segments sealed before the checkpoint directory existed.
        let mut cw = CheckpointWriter::open(d.path(), HOST, &store).unwrap();
        assert_eq!(cw.size(), 3);
        let first = cw.checkpoint();
        chain.append_event(1, b"more").unwrap();
        let s = chain.seal(9, &key);
        store.write(&s).unwrap();
        let note = cw.append(&s.header, &key).unwrap();
        assert!(note.verify_ed25519(&origin(&HOST), &key.public()));
        let cdir = dir_of(d.path());
        let p = read_published(&cdir).unwrap();
        assert_eq!(p.checkpoint.size, 4);
        let leaves: Vec<Digest> = headers
            .iter()
            .chain([&s.header])
            .map(|h| rfc6962::segment_leaf(&h.digest()))
            .collect();
        assert_eq!(p.checkpoint.root, rfc6962::root(&leaves));
        // The witness request carries a proof from the old size that verifies.
        let body = p.add_checkpoint_body(3).unwrap();
        let (head, note_text) = body.split_once("\n\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("old 3"));
        use base64::Engine as _;
        let proof: Vec<Digest> = lines
            .map(|l| {
                Digest(
                    base64::engine::general_purpose::STANDARD
                        .decode(l)
                        .unwrap()
                        .try_into()
                        .unwrap(),
                )
            })
            .collect();
        assert!(rfc6962::verify_consistency(
            3,
            4,
            &first.root,
            &p.checkpoint.root,
            &proof
        ));
        assert_eq!(Note::parse(note_text.as_bytes()).unwrap(), p.note);
        assert!(matches!(
            p.add_checkpoint_body(5),
            Err(TlogError::OldTooLarge { .. })
        ));
        // Reopening with a rewritten segment 1 replaces the digests from there on.
        drop(cw);
        let cw = CheckpointWriter::open(d.path(), HOST, &store).unwrap();
        assert_eq!(cw.checkpoint(), p.checkpoint);
    }

    #[test]
    fn cosigned_notes_are_kept_per_witness() {
        let d = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([1; 32]);
        let w = SecretKey::from_seed([2; 32]);
        let cp = Checkpoint {
            host: HOST,
            size: 1,
            root: Digest([1; 32]),
        };
        let mut note = cp.sign(&key);
        note.signatures.push(cosign(&note.text, "w1", &w, 5));
        assert_eq!(store_cosigned(d.path(), &HOST, &note).unwrap(), 1);
        let all = read_cosigned(d.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.as_ref().unwrap(), &note);
        assert!(store_cosigned(d.path(), &HostId([1; 16]), &note).is_err());
        assert!(store_cosigned(d.path(), &HOST, &cp.sign(&key)).is_err());
    }
}
