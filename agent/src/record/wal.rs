//! The open segment's journal: entries appended since the last seal, so a crash loses at most
//! what the OS had not written yet, and recovery can prove what it keeps.
//!
//! Record: `index (u64 LE) || len (u32 LE) || entry bytes || link (32 bytes)`, where `link` is
//! the chain link after this entry. Recovery replays records through the chain writer and keeps
//! a record only if its recomputed link equals the stored one; the first record that is
//! incomplete, out of order or does not match ends the journal, and everything after it is
//! discarded (only a torn tail can be there, since records are only ever appended).
//! The journal is truncated once its entries are in a durable sealed segment.

use std::{
    fs::{File, OpenOptions},
    io::{BufWriter, Read, Seek, SeekFrom, Write},
    path::Path,
};

use lineage_evidence::{
    chain::ChainWriter,
    digest::{leaf_hash, link_hash, Digest},
    entry::MAX_ENTRY_LEN,
};

const RECORD_OVERHEAD: usize = 8 + 4 + 32;

pub struct Wal {
    out: BufWriter<File>,
}

/// What recovery found in the journal.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Records re-appended to the chain.
    pub recovered: u64,
    /// Records skipped because a sealed segment already holds them.
    pub already_sealed: u64,
    /// Trailing bytes discarded (torn or inconsistent tail).
    pub discarded_bytes: u64,
}

impl Wal {
    /// Opens (creating if needed) for appending at the end.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Wal {
            out: BufWriter::with_capacity(1 << 16, file),
        })
    }

    pub fn append(&mut self, index: u64, entry: &[u8], link: &Digest) -> std::io::Result<()> {
        self.out.write_all(&index.to_le_bytes())?;
        self.out.write_all(&(entry.len() as u32).to_le_bytes())?;
        self.out.write_all(entry)?;
        self.out.write_all(&link.0)
    }

    /// Hands buffered records to the OS (survives the agent being killed, not a power loss).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Empties the journal once its entries are sealed durably.
    pub fn reset(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let file = self.out.get_mut();
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        Ok(())
    }

    /// Replays the journal at `path` into `writer`, which continues from the last sealed
    /// segment. Returns what was kept; the file is left untouched (the caller seals and resets).
    pub fn replay(path: &Path, writer: &mut ChainWriter) -> std::io::Result<Replay> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replay::default()),
            Err(e) => return Err(e),
        }
        let mut replay = Replay::default();
        let mut at = 0usize;
        while bytes.len() - at >= RECORD_OVERHEAD {
            let index = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let len =
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().expect("4 bytes")) as usize;
            if len > MAX_ENTRY_LEN || bytes.len() - at < RECORD_OVERHEAD + len {
                break;
            }
            let entry = &bytes[at + 12..at + 12 + len];
            let stored: [u8; 32] = bytes[at + 12 + len..at + RECORD_OVERHEAD + len]
                .try_into()
                .expect("32 bytes");
            let next = writer.position().next_index;
            if index < next {
                replay.already_sealed += 1;
            } else if index == next {
                // Check before appending: a record whose link does not follow is not ours.
                let expected = link_hash(&writer.position().head, index, &leaf_hash(entry));
                if expected.0 != stored || writer.append(entry).is_err() {
                    break;
                }
                replay.recovered += 1;
            } else {
                break;
            }
            at += RECORD_OVERHEAD + len;
        }
        replay.discarded_bytes = (bytes.len() - at) as u64;
        Ok(replay)
    }
}

#[cfg(test)]
mod tests {
    use lineage_evidence::digest::HostId;

    use super::*;

    fn journal(dir: &Path, entries: &[&[u8]]) -> (std::path::PathBuf, ChainWriter) {
        let path = dir.join("open.wal");
        let mut writer = ChainWriter::new(HostId([7; 16]));
        let mut wal = Wal::open(&path).unwrap();
        for e in entries {
            let (index, link) = writer.append_event(1, e).unwrap();
            let bytes = lineage_evidence::entry::Event {
                schema: 1,
                payload: e,
            }
            .encode();
            wal.append(index, &bytes, &link).unwrap();
        }
        wal.flush().unwrap();
        (path, writer)
    }

    #[test]
    fn replays_complete_records_and_drops_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, original) = journal(dir.path(), &[b"a", b"bb", b"ccc"]);
        // Tear the last record in half.
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let mut writer = ChainWriter::new(HostId([7; 16]));
        let replay = Wal::replay(&path, &mut writer).unwrap();
        assert_eq!(replay.recovered, 2);
        assert!(replay.discarded_bytes > 0);
        assert_eq!(writer.position().next_index, 2);
        assert_ne!(writer.position().head, original.position().head);
    }

    #[test]
    fn a_modified_record_ends_the_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = journal(dir.path(), &[b"first", b"second"]);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12 + 6] ^= 1; // inside the first entry's payload
        std::fs::write(&path, &bytes).unwrap();
        let mut writer = ChainWriter::new(HostId([7; 16]));
        let replay = Wal::replay(&path, &mut writer).unwrap();
        assert_eq!(replay.recovered, 0);
        assert_eq!(replay.discarded_bytes, bytes.len() as u64);
    }

    #[test]
    fn records_already_sealed_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (path, original) = journal(dir.path(), &[b"x", b"y"]);
        let mut writer = ChainWriter::from_state(*original.state());
        let replay = Wal::replay(&path, &mut writer).unwrap();
        assert_eq!(
            (
                replay.recovered,
                replay.already_sealed,
                replay.discarded_bytes
            ),
            (0, 2, 0)
        );
    }
}
