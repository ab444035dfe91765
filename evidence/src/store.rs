//! On-disk layout: one immutable file per sealed segment.
//!
//! `<dir>/segments/<segment number, 20 decimal digits>.seg`, holding exactly
//! [`SealedSegment::to_bytes`]. Files are written atomically — temp file
//! `.<number>.seg.tmp` in the same directory, `fsync`, `rename`, `fsync` of the directory — so
//! a crash leaves either the whole segment or none of it, never a torn tail. A file name is
//! only a hint: the verifier trusts the signed segment number inside, and reports a file
//! whose name disagrees with it.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::segment::{SealedSegment, MAX_SEGMENT_LEN};

/// Subdirectory holding the segment files.
pub const SEGMENTS_DIR: &str = "segments";
/// File name extension of a segment.
pub const SEGMENT_EXT: &str = "seg";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A different segment with this number is already stored; segments are immutable.
    #[error("{0}: a different segment with this number already exists")]
    Conflict(PathBuf),
    /// A file larger than any valid segment.
    #[error("{0}: larger than the segment size limit")]
    TooLarge(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The canonical file name of segment `n`.
pub fn file_name(n: u64) -> String {
    format!("{n:020}.{SEGMENT_EXT}")
}

/// Parses a canonical segment file name.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A directory of segment files.
#[derive(Debug, Clone)]
pub struct SegmentStore {
    dir: PathBuf,
}

/// What a directory listing found.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    /// Canonically named segment files, sorted by the number in their name.
    pub segments: Vec<(u64, PathBuf)>,
    /// Other files in the segments directory (reported, never read as segments).
    pub other: Vec<PathBuf>,
}

impl SegmentStore {
    /// Opens (creating if needed) the store under `root`, and removes temp files a crash
    /// left behind.
    pub fn create(root: &Path) -> Result<Self, StoreError> {
        let dir = root.join(SEGMENTS_DIR);
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        for e in fs::read_dir(&dir).map_err(io(&dir))? {
            let e = e.map_err(io(&dir))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".seg.tmp") {
                fs::remove_file(e.path()).map_err(io(&e.path()))?;
            }
        }
        Ok(SegmentStore { dir })
    }

    /// Opens an existing store for reading. `root` may be the store root or its `segments`
    /// directory itself.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        let nested = root.join(SEGMENTS_DIR);
        let dir = if nested.is_dir() {
            nested
        } else {
            root.to_owned()
        };
        fs::metadata(&dir).map_err(io(&dir))?;
        Ok(SegmentStore { dir })
    }

    /// The directory holding the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of segment `n`.
    pub fn path(&self, n: u64) -> PathBuf {
        self.dir.join(file_name(n))
    }

    /// Writes `seg` atomically and durably. Writing the identical segment again is a no-op
    /// (so a failed write can be retried); a different segment with the same number is refused.
    pub fn write(&self, seg: &SealedSegment) -> Result<PathBuf, StoreError> {
        let n = seg.header.segment_number;
        let path = self.path(n);
        let bytes = seg.to_bytes();
        if path.exists() {
            return if self.read_path(&path)? == bytes {
                Ok(path)
            } else {
                Err(StoreError::Conflict(path))
            };
        }
        let tmp = self.dir.join(format!(".{n:020}.seg.tmp"));
        {
            let mut f = File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(path)
    }

    /// Lists the directory.
    pub fn list(&self) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let e = e.map_err(io(&self.dir))?;
            let name = e.file_name();
            match name.to_str().and_then(parse_file_name) {
                Some(n) => out.segments.push((n, e.path())),
                None => out.other.push(e.path()),
            }
        }
        out.segments.sort();
        out.other.sort();
        Ok(out)
    }

    /// The highest segment number stored, if any.
    pub fn last_number(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.list()?.segments.last().map(|(n, _)| *n))
    }

    /// Reads segment `n`'s file.
    pub fn read(&self, n: u64) -> Result<Vec<u8>, StoreError> {
        self.read_path(&self.path(n))
    }

    /// Reads a file, refusing anything larger than a segment can be.
    pub fn read_path(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        read_bounded(path)
    }
}

/// Reads at most [`MAX_SEGMENT_LEN`] bytes from `path`, failing if there are more.
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, StoreError> {
    let f = File::open(path).map_err(io(path))?;
    // Refuse by size before reading, so a hostile file costs no memory.
    if f.metadata().map_err(io(path))?.len() > MAX_SEGMENT_LEN {
        return Err(StoreError::TooLarge(path.to_owned()));
    }
    let mut buf = Vec::new();
    f.take(MAX_SEGMENT_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io(path))?;
    if buf.len() as u64 > MAX_SEGMENT_LEN {
        return Err(StoreError::TooLarge(path.to_owned()));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::digest::HostId;
    use crate::entry::{AgentStop, StartReason, StopReason};
    use crate::keys::SecretKey;

    #[test]
    fn start_reason_follows_the_stored_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::create(dir.path()).unwrap();
        let host = HostId([1; 16]);
        let key = SecretKey::from_seed([1; 32]);
        let (mut w, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(reason, StartReason::FirstStart);
        w.append_event(1, b"a").unwrap();
        w.append_with(|b| {
            AgentStop {
                reason: StopReason::Requested,
                time_ns: 1,
            }
            .encode_into(b)
        })
        .unwrap();
        store.write(&w.seal(1, &key)).unwrap();
        store.write(&w.seal(2, &key)).unwrap(); // an empty seal after the stop
        let (mut w, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(reason, StartReason::Restart);
        assert_eq!(w.position().next_index, 2);
        w.append_event(1, b"b").unwrap();
        store.write(&w.seal(3, &key)).unwrap();
        let (_, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(reason, StartReason::RecoveredAfterCrash);
    }

    #[test]
    fn resume_works_after_the_oldest_segments_were_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::create(dir.path()).unwrap();
        let host = HostId([1; 16]);
        let key = SecretKey::from_seed([1; 32]);
        let mut w = ChainWriter::new(host);
        for s in 0..4 {
            w.append_event(1, b"a").unwrap();
            store.write(&w.seal(s, &key)).unwrap();
        }
        store.write(&w.seal(4, &key)).unwrap(); // empty seals at the end
        store.write(&w.seal(5, &key)).unwrap();
        for n in 0..3 {
            fs::remove_file(store.path(n)).unwrap();
        }
        let (r, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(reason, StartReason::RecoveredAfterCrash);
        assert_eq!(r.position(), w.position());
        assert_eq!(r.state().next_segment, 6);

        // Even when every remaining segment is an empty seal, the walk stops at the gap.
        fs::remove_file(store.path(3)).unwrap();
        let (r, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(reason, StartReason::RecoveredAfterCrash);
        assert_eq!(r.position(), w.position());
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(7), "00000000000000000007.seg");
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_file_name("7.seg"), None);
        assert_eq!(parse_file_name("0000000000000000000a.seg"), None);
        assert_eq!(parse_file_name("99999999999999999999.seg"), None);
    }

    #[test]
    fn write_is_idempotent_and_immutable_and_resume_continues() {
        let dir = tempfile::tempdir().unwrap();
        let store = SegmentStore::create(dir.path()).unwrap();
        fs::write(store.dir().join(".00000000000000000000.seg.tmp"), b"torn").unwrap();
        let store = SegmentStore::create(dir.path()).unwrap();
        assert!(
            store.list().unwrap().other.is_empty(),
            "temp files are cleaned up"
        );

        let key = SecretKey::from_seed([1; 32]);
        let host = HostId([1; 16]);
        let mut w = ChainWriter::new(host);
        w.append_event(1, b"a").unwrap();
        let s0 = w.seal(1, &key);
        store.write(&s0).unwrap();
        store.write(&s0).unwrap();
        let mut other = s0.clone();
        other.header.seal_time_ns = 2;
        assert!(matches!(store.write(&other), Err(StoreError::Conflict(_))));

        let (_, reason) = ChainWriter::resume_for_start(&store, host).unwrap();
        assert_eq!(
            reason,
            StartReason::RecoveredAfterCrash,
            "no AGENT_STOP before the end"
        );
        let mut r = ChainWriter::resume(&store, host).unwrap();
        assert_eq!(r.position(), w.position());
        let (i, _) = r.append_event(1, b"b").unwrap();
        assert_eq!(i, 1, "the index is never reset");
        assert!(ChainWriter::resume(&store, HostId([9; 16])).is_err());

        // A corrupt tail is refused rather than extended.
        let p = store.path(0);
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        assert!(matches!(
            ChainWriter::resume(&store, host),
            Err(crate::chain::ResumeError::CorruptTail { number: 0, .. })
        ));
    }
}
