//! Reading a log directory's entries in chain index order, without verifying anything.
//!
//! Shared by `entries` (which prints every entry) and `tree --store` (which rebuilds process
//! images from EVENT entries), so both skip the same unusable files with the same warnings.
//! This is a reader, not a verifier: it must never panic on hostile files, and a file it
//! cannot use is skipped with a warning on stderr rather than failing the whole listing.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use lineage_evidence::segment::{SegmentHeader, SegmentView};
use lineage_evidence::store::{read_bounded, SegmentStore, StoreError};

use crate::logdir::{self, LogDirError};

#[derive(Debug, thiserror::Error)]
pub enum LogReadError {
    #[error("--from {from} is after --to {to}")]
    Range { from: u64, to: u64 },
    #[error(transparent)]
    LogDir(#[from] LogDirError),
    #[error("opening {path}: {source}")]
    Open { path: PathBuf, source: StoreError },
    #[error("listing {path}: {source}")]
    List { path: PathBuf, source: StoreError },
}

/// Prints a warning about a skipped file (or an empty log) on stderr.
pub fn warn(what: impl std::fmt::Display) {
    eprintln!("lineagectl: warning: {what}");
}

/// Reads just the header of a segment file.
fn read_header(path: &Path) -> Result<SegmentHeader, String> {
    File::open(path)
        .and_then(|mut f| SegmentHeader::read_from(&mut f))
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The entries of a log directory with chain index in `from..=to`, in index order: calls `f`
/// with (index, segment number, entry bytes) until it returns an error.
///
/// Headers are read first so the order is the chain's even if file names lie, and segments
/// outside the range are never read in full. A second file for one segment number, or a
/// segment repeating entries already delivered, is skipped with a warning.
pub fn for_each_entry<E: From<LogReadError>>(
    dir: &Path,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, u64, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    if from > to {
        return Err(LogReadError::Range { from, to }.into());
    }
    logdir::require_single_log(dir).map_err(LogReadError::from)?;
    let store = SegmentStore::open(dir).map_err(|source| LogReadError::Open {
        path: dir.into(),
        source,
    })?;
    let listing = store.list().map_err(|source| LogReadError::List {
        path: dir.into(),
        source,
    })?;
    if listing.segments.is_empty() {
        warn(format_args!(
            "no segment files in {}",
            store.dir().display()
        ));
    }

    let mut headers = Vec::new();
    for (_, path) in &listing.segments {
        match read_header(path) {
            Ok(h) => headers.push((h, path.clone())),
            Err(e) => warn(format_args!("skipping {}: {e}", path.display())),
        }
    }
    headers.sort_by_key(|(h, _)| (h.first_index, h.segment_number));

    let mut delivered_to = 0u64; // entries below this index were delivered already
    let mut seen = BTreeSet::new();
    for (h, path) in headers {
        if !seen.insert(h.segment_number) {
            warn(format_args!(
                "skipping {}: a second file for segment {}",
                path.display(),
                h.segment_number
            ));
            continue;
        }
        let end = h.first_index.saturating_add(h.entry_count);
        if h.entry_count > 0 && h.first_index < delivered_to {
            warn(format_args!(
                "skipping {}: segment {} repeats entries from index {} that were printed already",
                path.display(),
                h.segment_number,
                h.first_index
            ));
            continue;
        }
        if h.entry_count == 0 || end <= from || h.first_index > to {
            continue;
        }
        let bytes = match read_bounded(path.as_path()) {
            Ok(b) => b,
            Err(e) => {
                warn(format_args!("skipping {}: {e}", path.display()));
                continue;
            }
        };
        let view = match SegmentView::parse(&bytes) {
            Ok(v) => v,
            Err(e) => {
                warn(format_args!("skipping {}: {e}", path.display()));
                continue;
            }
        };
        let seg = view.header.segment_number;
        delivered_to = delivered_to.max(end);
        for (i, e) in view.entries().enumerate() {
            let index = view.header.first_index.saturating_add(i as u64);
            if index < from {
                continue;
            }
            if index > to {
                break;
            }
            f(index, seg, e)?;
        }
    }
    Ok(())
}

/// The kind number of entry bytes (framing guarantees 4 bytes; this does not rely on it).
pub fn raw_kind(e: &[u8]) -> Option<u16> {
    Some(u16::from_le_bytes([*e.first()?, *e.get(1)?]))
}
