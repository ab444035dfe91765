//! Verifying a log against its witnesses (docs/FORMAT.md §12.5): the newest checkpoint each
//! trusted witness cosigned must be covered by the log — the log holds at least that many
//! segments and the RFC 6962 root of their header digests is the cosigned root. A truncated,
//! rolled-back or forked log fails this with no head recorded by hand, because the witness
//! remembers the head for us.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::{origin, Checkpoint, Note, VerifierKey, SIG_COSIGNATURE_V1};
use crate::digest::{Digest, HostId};
use crate::rfc6962;
use crate::segment::SegmentHeader;
use crate::store::{SegmentStore, StoreError};
use crate::tlog::{self, TlogError};
use crate::verify::{Finding, FindingKind, Range};

/// Errors that leave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum WitnessedError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading the checkpoint directory failed.
    #[error(transparent)]
    Tlog(#[from] TlogError),
    /// A quorum larger than the witnesses given, or zero.
    #[error("quorum {quorum} is not between 1 and the {witnesses} witness keys given")]
    Quorum {
        /// Asked for.
        quorum: usize,
        /// Keys given.
        witnesses: usize,
    },
}

/// What the caller supplies.
#[derive(Debug, Clone)]
pub struct WitnessPolicy {
    /// Trusted witness (cosigner) keys.
    pub witnesses: Vec<VerifierKey>,
    /// How many of them must cover the log.
    pub quorum: usize,
    /// More cosigned checkpoints (files, or directories of `*.note`), e.g. a collector's.
    pub extra: Vec<PathBuf>,
}

/// One witness's verdict.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessView {
    /// Key name.
    pub name: String,
    /// Size of its newest valid cosigned checkpoint (None: none found).
    pub size: Option<u64>,
    /// When it cosigned that (seconds since the epoch).
    pub time: Option<u64>,
    /// Whether the log covers that checkpoint.
    pub covers: bool,
}

/// The witness part of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WitnessReport {
    /// Per witness.
    pub witnesses: Vec<WitnessView>,
    /// The quorum required.
    pub quorum: usize,
    /// Segments the log has.
    pub log_size: u64,
    /// Largest size covered by a quorum of witnesses (0 if none).
    pub witnessed_size: u64,
    /// Segments after `witnessed_size` (not yet cosigned by a quorum).
    pub behind: u64,
    /// Findings (TRUNCATED, FORK, MODIFIED, BAD_SIGNATURE, UNWITNESSED).
    pub findings: Vec<Finding>,
}

fn finding(
    kind: FindingKind,
    segments: Option<Range>,
    file: Option<&Path>,
    detail: String,
) -> Finding {
    Finding {
        kind,
        segments,
        entries: None,
        file: file.map(|p| p.display().to_string()),
        cpu: None,
        sequences: None,
        detail,
    }
}

/// The log's segment header digests in segment order, with `leaves` filling in the absent
/// ones; findings when `leaves` contradicts a present segment.
fn tree_digests(
    store: &SegmentStore,
    leaves_file: Vec<Digest>,
    findings: &mut Vec<Finding>,
) -> Result<(Vec<Digest>, BTreeMap<u64, SegmentHeader>), StoreError> {
    let mut headers = BTreeMap::new();
    for (n, path) in store.list()?.segments {
        let bytes = store.read_path(&path)?;
        // Only authentic headers count; the main verifier reports the others.
        let Some(h) = SegmentHeader::parse(&bytes)
            .ok()
            .filter(|h| h.segment_number == n)
            .filter(|h| {
                bytes
                    .get(h.len()..h.len() + 64)
                    .and_then(|s| <[u8; 64]>::try_from(s).ok())
                    .is_some_and(|s| h.check_signature(&s).is_ok())
            })
        else {
            continue;
        };
        headers.insert(n, h);
    }
    let end = headers
        .keys()
        .next_back()
        .map_or(0, |n| n.saturating_add(1))
        .max(leaves_file.len() as u64);
    let mut out = Vec::new();
    for n in 0..end {
        let from_file = leaves_file.get(n as usize).copied();
        match (headers.get(&n), from_file) {
            (Some(h), f) => {
                let d = h.digest();
                if f.is_some_and(|f| f != d) {
                    findings.push(finding(
                        FindingKind::Modified,
                        Some(Range::one(n)),
                        Some(Path::new(tlog::LEAVES_FILE)),
                        format!("checkpoints/leaves holds another header digest for segment {n}"),
                    ));
                }
                out.push(d);
            }
            (None, Some(f)) => out.push(f),
            // Unknown digest: the tree stops here (a later segment cannot be placed).
            (None, None) => break,
        }
    }
    Ok((out, headers))
}

/// Every note to consider: the log's `checkpoints/witness-*.note` and the extra paths.
fn gather(log_dir: &Path, extra: &[PathBuf]) -> Result<Vec<(PathBuf, Note)>, WitnessedError> {
    let mut out = Vec::new();
    let mut dirs = vec![tlog::dir_of(log_dir)];
    for p in extra {
        if p.is_dir() {
            dirs.push(p.clone());
            dirs.push(tlog::dir_of(p));
        } else {
            let bytes = std::fs::read(p).map_err(|source| TlogError::Io {
                path: p.clone(),
                source,
            })?;
            if let Ok(n) = Note::parse(&bytes) {
                out.push((p.clone(), n));
            }
        }
    }
    for d in dirs {
        for (p, n) in tlog::read_cosigned(&d)? {
            if let Ok(n) = n {
                out.push((p, n));
            }
        }
    }
    Ok(out)
}

/// Checks the log in `log_dir` (of host `host`) against the witnesses of `policy`.
pub fn check(
    log_dir: &Path,
    host: HostId,
    policy: &WitnessPolicy,
) -> Result<WitnessReport, WitnessedError> {
    let quorum = policy.quorum;
    if quorum == 0 || quorum > policy.witnesses.len() {
        return Err(WitnessedError::Quorum {
            quorum,
            witnesses: policy.witnesses.len(),
        });
    }
    let store = SegmentStore::open(log_dir)?;
    let mut findings = Vec::new();
    let leaves_file = tlog::read_leaves(&tlog::dir_of(log_dir))?;
    let (digests, headers) = tree_digests(&store, leaves_file, &mut findings)?;
    let leaves: Vec<Digest> = digests.iter().map(rfc6962::segment_leaf).collect();
    let log_size = headers
        .keys()
        .next_back()
        .map_or(0, |n| n.saturating_add(1));
    let notes = gather(log_dir, &policy.extra)?;
    let log_origin = origin(&host);

    let mut views = Vec::new();
    let mut covered_sizes = Vec::new();
    for w in &policy.witnesses {
        let mut best: Option<(Checkpoint, u64, &Path, &Note)> = None;
        for (path, note) in &notes {
            let Ok(cp) = Checkpoint::parse_body(&note.text) else {
                continue;
            };
            if cp.host != host {
                continue;
            }
            let times = match note.cosignatures_by(w) {
                None => {
                    findings.push(finding(
                        FindingKind::BadSignature,
                        None,
                        Some(path),
                        format!("a cosignature line of witness {} does not verify", w.name),
                    ));
                    continue;
                }
                Some(t) if t.is_empty() => continue,
                Some(t) => t.into_iter().max().expect("not empty"),
            };
            if best.is_none_or(|(b, _, _, _)| cp.size > b.size) {
                best = Some((cp, times, path, note));
            }
        }
        let Some((cp, time, path, note)) = best else {
            views.push(WitnessView {
                name: w.name.clone(),
                size: None,
                time: None,
                covers: false,
            });
            continue;
        };
        // The log's own signature, where the segment that fixes its key is present.
        if let Some(h) = cp.size.checked_sub(1).and_then(|n| headers.get(&n)) {
            if !note.verify_ed25519(&log_origin, &h.public_key) {
                findings.push(finding(
                    FindingKind::BadSignature,
                    Some(Range::one(cp.size - 1)),
                    Some(path),
                    format!(
                        "checkpoint of size {} cosigned by {} is not signed by the key of segment {}",
                        cp.size,
                        w.name,
                        cp.size - 1
                    ),
                ));
            }
        }
        // Segments up to size-1 must be in the log: present, or absent below a present one
        // (deleted under retention, or missing, which the main verifier reports). Digests
        // in `leaves` alone do not make a tail.
        let covers = if log_size < cp.size || (digests.len() as u64) < cp.size {
            let end = log_size.min(digests.len() as u64);
            findings.push(finding(
                FindingKind::Truncated,
                Some(Range::new(end, cp.size - 1)),
                Some(path),
                format!(
                    "witness {} cosigned {} segments at {time}, the log has {end}: segments {end}..={} are gone (truncated or rolled back)",
                    w.name,
                    cp.size,
                    cp.size - 1
                ),
            ));
            false
        } else if rfc6962::root(&leaves[..cp.size as usize]) != cp.root {
            // Find the first segment where the histories part, for the report.
            findings.push(finding(
                FindingKind::Fork,
                Some(Range::new(0, cp.size.saturating_sub(1))),
                Some(path),
                format!(
                    "witness {} cosigned another history of segments 0..{} at {time}: the log was rewritten, rolled back or shown differently to witnesses",
                    w.name, cp.size
                ),
            ));
            false
        } else {
            covered_sizes.push(cp.size);
            true
        };
        views.push(WitnessView {
            name: w.name.clone(),
            size: Some(cp.size),
            time: Some(time),
            covers,
        });
    }
    // The largest size at least `quorum` witnesses cover.
    covered_sizes.sort_unstable_by(|a, b| b.cmp(a));
    let witnessed_size = covered_sizes.get(quorum - 1).copied().unwrap_or(0);
    if covered_sizes.len() < quorum {
        let missing: Vec<&str> = views
            .iter()
            .filter(|v| !v.covers)
            .map(|v| v.name.as_str())
            .collect();
        findings.push(finding(
            FindingKind::Unwitnessed,
            None,
            None,
            format!(
                "{} of the {quorum} witnesses required cosigned a checkpoint this log covers (not: {})",
                covered_sizes.len(),
                missing.join(", ")
            ),
        ));
    }
    Ok(WitnessReport {
        witnesses: views,
        quorum,
        log_size,
        witnessed_size,
        behind: log_size.saturating_sub(witnessed_size),
        findings,
    })
}

/// A cosigned checkpoint and the inclusion path of one segment in it: what a standalone
/// proof carries (docs/FORMAT.md §10.2).
pub fn segment_inclusion(
    log_dir: &Path,
    segment: u64,
    note: &Note,
) -> Result<Option<Vec<Digest>>, WitnessedError> {
    let Ok(cp) = Checkpoint::parse_body(&note.text) else {
        return Ok(None);
    };
    if segment >= cp.size {
        return Ok(None);
    }
    let store = SegmentStore::open(log_dir)?;
    let mut ignored = Vec::new();
    let leaves_file = tlog::read_leaves(&tlog::dir_of(log_dir))?;
    let (digests, _) = tree_digests(&store, leaves_file, &mut ignored)?;
    if (digests.len() as u64) < cp.size {
        return Ok(None);
    }
    let leaves: Vec<Digest> = digests[..cp.size as usize]
        .iter()
        .map(rfc6962::segment_leaf)
        .collect();
    if rfc6962::root(&leaves) != cp.root {
        return Ok(None);
    }
    Ok(rfc6962::inclusion_path(&leaves, segment as usize))
}

/// Whether `key` is a cosigner key (type 0x04).
pub fn is_cosigner(key: &VerifierKey) -> bool {
    key.sig_type == SIG_COSIGNATURE_V1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainWriter;
    use crate::checkpoint::cosign;
    use crate::keys::SecretKey;
    use crate::tlog::{store_cosigned, CheckpointWriter};

    const HOST: HostId = HostId([4; 16]);

    fn witness(seed: u8, name: &str) -> (SecretKey, VerifierKey) {
        let k = SecretKey::from_seed([seed; 32]);
        let vk = VerifierKey {
            name: name.into(),
            sig_type: SIG_COSIGNATURE_V1,
            key: k.public(),
        };
        (k, vk)
    }

    /// A log of `n` segments whose events are tagged `tag`, with its checkpoint directory.
    fn log(dir: &Path, tag: &str, n: u64) -> Note {
        let key = SecretKey::from_seed([1; 32]);
        let store = SegmentStore::create(dir).unwrap();
        let mut cw = CheckpointWriter::open(dir, HOST, &store).unwrap();
        let mut chain = ChainWriter::new(HOST);
        let mut last = None;
        for i in 0..n {
            chain
                .append_event(1, format!("{tag}{i}").as_bytes())
                .unwrap();
            let s = chain.seal(i + 1, &key);
            store.write(&s).unwrap();
            last = Some(cw.append(&s.header, &key).unwrap());
        }
        last.unwrap()
    }

    fn cosigned(dir: &Path, mut note: Note, w: &SecretKey, name: &str) {
        note.signatures.push(cosign(&note.text, name, w, 100));
        store_cosigned(&tlog::dir_of(dir), &HOST, &note).unwrap();
    }

    fn kinds(r: &WitnessReport) -> Vec<FindingKind> {
        r.findings.iter().map(|f| f.kind).collect()
    }

    fn policy(ws: &[&VerifierKey], quorum: usize, extra: Vec<PathBuf>) -> WitnessPolicy {
        WitnessPolicy {
            witnesses: ws.iter().map(|w| (*w).clone()).collect(),
            quorum,
            extra,
        }
    }

    #[test]
    fn a_witnessed_log_passes_and_truncation_rollback_and_forks_are_found() {
        let d = tempfile::tempdir().unwrap();
        let (wk, w) = witness(7, "w1");
        let (_, w2) = witness(8, "w2");
        let note = log(d.path(), "a", 5);
        cosigned(d.path(), note, &wk, "w1");
        let r = check(d.path(), HOST, &policy(&[&w], 1, vec![])).unwrap();
        assert_eq!(kinds(&r), vec![]);
        assert_eq!((r.witnessed_size, r.behind), (5, 0));
        // Two witnesses required, one cosigned: UNWITNESSED.
        let r = check(d.path(), HOST, &policy(&[&w, &w2], 2, vec![])).unwrap();
        assert_eq!(kinds(&r), vec![FindingKind::Unwitnessed]);

        // Truncation: the newest segment and its digest are gone.
        let t = tempfile::tempdir().unwrap();
        copy_dir(d.path(), t.path());
        std::fs::remove_file(t.path().join("segments").join(crate::store::file_name(4))).unwrap();
        let leaves = t.path().join("checkpoints/leaves");
        let b = std::fs::read(&leaves).unwrap();
        std::fs::write(&leaves, &b[..b.len() - 32]).unwrap();
        let r = check(t.path(), HOST, &policy(&[&w], 1, vec![])).unwrap();
        assert_eq!(
            kinds(&r),
            vec![FindingKind::Truncated, FindingKind::Unwitnessed]
        );
        assert_eq!(r.findings[0].segments, Some(Range::one(4)));
        // The same with `leaves` left intact: digests alone do not stand in for segments.
        std::fs::write(&leaves, &b).unwrap();
        let r = check(t.path(), HOST, &policy(&[&w], 1, vec![])).unwrap();
        assert_eq!(
            kinds(&r),
            vec![FindingKind::Truncated, FindingKind::Unwitnessed]
        );

        // Another history of the same host, and the witness's note handed in from outside
        // (the log's own copy deleted): FORK.
        let f = tempfile::tempdir().unwrap();
        log(f.path(), "b", 6);
        let r = check(
            f.path(),
            HOST,
            &policy(&[&w], 1, vec![tlog::dir_of(d.path())]),
        )
        .unwrap();
        assert_eq!(kinds(&r), vec![FindingKind::Fork, FindingKind::Unwitnessed]);

        // A cosignature line that does not verify is reported.
        let mut bad = tlog::read_cosigned(&tlog::dir_of(d.path())).unwrap()[0]
            .1
            .as_ref()
            .unwrap()
            .clone();
        bad.signatures[1].sig[20] ^= 1;
        let p = d.path().join("bad.note");
        std::fs::write(&p, bad.to_text()).unwrap();
        let r = check(d.path(), HOST, &policy(&[&w], 1, vec![p])).unwrap();
        assert_eq!(kinds(&r), vec![FindingKind::BadSignature]);
    }

    #[test]
    fn inclusion_of_a_segment_in_a_cosigned_tree() {
        let d = tempfile::tempdir().unwrap();
        let note = log(d.path(), "a", 6);
        let cp = Checkpoint::parse_body(&note.text).unwrap();
        let store = SegmentStore::open(d.path()).unwrap();
        for n in 0..6 {
            let bytes = store.read(n).unwrap();
            let h = SegmentHeader::parse(&bytes).unwrap();
            let path = segment_inclusion(d.path(), n, &note).unwrap().unwrap();
            let leaf = rfc6962::segment_leaf(&h.digest());
            assert!(rfc6962::verify_inclusion(&leaf, n, 6, &path, &cp.root));
        }
        assert!(segment_inclusion(d.path(), 6, &note).unwrap().is_none());
    }

    fn copy_dir(from: &Path, to: &Path) {
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&dest).unwrap();
                copy_dir(&e.path(), &dest);
            } else {
                std::fs::copy(e.path(), dest).unwrap();
            }
        }
    }
}
