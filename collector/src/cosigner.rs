//! The collector as a C2SP `tlog-witness`: it checks an agent's checkpoint against the last
//! one it cosigned for that host and returns a timestamped `cosignature/v1`.
//!
//! The agent answers `GetCheckpoint(old_size)` with the body of a tlog-witness
//! `add-checkpoint` request (old size line, consistency proof lines, empty line, checkpoint);
//! the transport is reversed (the collector pulls) but the bytes and the checks are the
//! specification's. Each refusal maps to the status a tlog-witness returns and to a finding:
//!
//! | refusal | tlog-witness status | finding |
//! |---|---|---|
//! | malformed body or checkpoint, wrong origin | 400 | MALFORMED |
//! | not signed by the key of the newest segment | 403 | BAD_SIGNATURE |
//! | old size is not the last cosigned size | 409 | ROLLBACK |
//! | smaller than the tree already cosigned | 409 | ROLLBACK |
//! | consistency proof fails, same size with another root, or the root is not that of the segments the collector stored | 422 (409) | FORK |
//!
//! Beyond the specification the collector also requires the root to be the RFC 6962 root of
//! the header digests of the segments it verified and stored, so a cosignature always covers
//! exactly the history this collector holds.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lineage_evidence::checkpoint::{cosign, origin, Checkpoint, Note};
use lineage_evidence::digest::{Digest, HostId};
use lineage_evidence::keys::{PublicKey, SecretKey};
use lineage_evidence::merkle::MAX_PATH_LEN;
use lineage_evidence::rfc6962;
use lineage_evidence::verify::FindingKind;

/// The last checkpoint cosigned for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witnessed {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Digest,
}

/// A parsed `add-checkpoint` body.
#[derive(Debug, Clone)]
pub struct AddCheckpoint {
    /// The old size the proof starts from.
    pub old: u64,
    /// Consistency proof.
    pub proof: Vec<Digest>,
    /// The signed note.
    pub note: Note,
    /// Its checkpoint.
    pub checkpoint: Checkpoint,
}

/// Why a checkpoint is not cosigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400.
    #[error("malformed add-checkpoint: {0}")]
    Malformed(String),
    /// 403.
    #[error("the checkpoint is not signed by the key of segment {0}")]
    Unsigned(u64),
    /// 409: the agent proved from another old size.
    #[error("the proof starts at size {got}, the last cosigned size is {want}")]
    OldSize {
        /// What the agent used.
        got: u64,
        /// What this witness cosigned last.
        want: u64,
    },
    /// 409: the agent's tree is smaller than what was already cosigned or stored.
    #[error("the agent's tree has {size} segments, but this collector holds {held}: rolled back or truncated")]
    Behind {
        /// The agent's size.
        size: u64,
        /// What this collector holds.
        held: u64,
    },
    /// 422: inconsistent with the last cosigned checkpoint, or with the stored segments.
    #[error("inconsistent with {0}")]
    Inconsistent(&'static str),
}

impl Refusal {
    /// The finding it is reported as.
    pub fn finding(&self) -> FindingKind {
        match self {
            Refusal::Malformed(_) => FindingKind::Malformed,
            Refusal::Unsigned(_) => FindingKind::BadSignature,
            Refusal::OldSize { .. } | Refusal::Behind { .. } => FindingKind::Rollback,
            Refusal::Inconsistent(_) => FindingKind::Fork,
        }
    }

    /// The tlog-witness HTTP status the same refusal has.
    pub fn http_status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) => 400,
            Refusal::Unsigned(_) => 403,
            Refusal::OldSize { .. } | Refusal::Behind { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

/// Parses an `add-checkpoint` body for `host`.
pub fn parse(text: &str, host: &HostId) -> Result<AddCheckpoint, Refusal> {
    let bad = |s: &str| Refusal::Malformed(s.to_owned());
    let (head, note_text) = text
        .split_once("\n\n")
        .ok_or_else(|| bad("no empty line before the checkpoint"))?;
    let mut lines = head.split('\n');
    let old = lines
        .next()
        .and_then(|l| l.strip_prefix("old "))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .filter(|d| d.len() == 1 || !d.starts_with('0'))
        .and_then(|d| d.parse::<u64>().ok())
        .ok_or_else(|| bad("the first line is not `old <size>`"))?;
    let proof = lines
        .map(|l| {
            B64.decode(l)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .map(Digest)
                .ok_or_else(|| bad("a proof line is not a base64 hash"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if proof.len() > 63.min(MAX_PATH_LEN) {
        return Err(bad("more than 63 proof lines"));
    }
    if old == 0 && !proof.is_empty() {
        return Err(bad("a proof from size 0 must be empty"));
    }
    let note = Note::parse(note_text.as_bytes()).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let checkpoint =
        Checkpoint::parse_body(&note.text).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if checkpoint.host != *host {
        return Err(bad("the checkpoint's origin is another host"));
    }
    if old > checkpoint.size {
        return Err(bad("the old size is larger than the checkpoint"));
    }
    Ok(AddCheckpoint {
        old,
        proof,
        note,
        checkpoint,
    })
}

/// What the checkpoint is judged against.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    /// The last checkpoint cosigned for this host.
    pub last: Option<Witnessed>,
    /// Segments stored (the cursor).
    pub stored: u64,
    /// Header digests of segments `0..stored`, when the collector holds all of them.
    pub digests: Option<&'a [Digest]>,
    /// The key that signed segment `checkpoint size - 1`, when the collector holds it.
    pub signer: Option<PublicKey>,
}

/// What to do with a checkpoint that passed the checks so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Cosign it.
    Cosign,
    /// Consistent, but it covers segments not stored yet: cosign once they are.
    Later,
}

/// The tlog-witness checks.
pub fn judge(req: &AddCheckpoint, j: &Judge<'_>) -> Result<Verdict, Refusal> {
    let cp = &req.checkpoint;
    let (want_old, old_root) = j.last.map_or((0, None), |w| (w.size, Some(w.root)));
    if req.old != want_old {
        return Err(Refusal::OldSize {
            got: req.old,
            want: want_old,
        });
    }
    if cp.size < want_old {
        return Err(Refusal::Behind {
            size: cp.size,
            held: want_old,
        });
    }
    if let Some(old_root) = old_root {
        if !rfc6962::verify_consistency(want_old, cp.size, &old_root, &cp.root, &req.proof) {
            return Err(Refusal::Inconsistent(
                "the checkpoint this collector cosigned last",
            ));
        }
    }
    if cp.size > j.stored {
        return Ok(Verdict::Later);
    }
    // A checkpoint a little behind the segments stored (sealed, not yet published) is
    // cosigned too: it must then be the tree of a prefix of what is stored.
    let signer = j
        .signer
        .ok_or(Refusal::Unsigned(cp.size.saturating_sub(1)))?;
    if !req.note.verify_ed25519(&origin(&cp.host), &signer) {
        return Err(Refusal::Unsigned(cp.size.saturating_sub(1)));
    }
    if let Some(d) = j.digests {
        let leaves: Vec<Digest> = d[..cp.size as usize]
            .iter()
            .map(rfc6962::segment_leaf)
            .collect();
        if rfc6962::root(&leaves) != cp.root {
            return Err(Refusal::Inconsistent("the segments this collector stored"));
        }
    }
    Ok(Verdict::Cosign)
}

/// The note with this witness's cosignature added (other lines kept).
pub fn cosigned(note: &Note, name: &str, key: &SecretKey, now_secs: u64) -> Note {
    let mut n = note.clone();
    let line = cosign(&n.text, name, key, now_secs);
    n.signatures.retain(|s| s.name != name);
    n.signatures.push(line);
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_evidence::checkpoint::{VerifierKey, SIG_COSIGNATURE_V1};

    const HOST: HostId = HostId([3; 16]);

    fn digests(tag: u8, n: usize) -> Vec<Digest> {
        (0..n).map(|i| Digest([tag ^ i as u8; 32])).collect()
    }

    fn request(d: &[Digest], old: u64, key: &SecretKey) -> String {
        let leaves: Vec<Digest> = d.iter().map(rfc6962::segment_leaf).collect();
        let cp = Checkpoint {
            host: HOST,
            size: d.len() as u64,
            root: rfc6962::root(&leaves),
        };
        let mut s = format!("old {old}\n");
        if old > 0 {
            for h in rfc6962::consistency_proof(&leaves, old as usize).unwrap() {
                s.push_str(&B64.encode(h.0));
                s.push('\n');
            }
        }
        s.push('\n');
        s.push_str(&cp.sign(key).to_text());
        s
    }

    fn witnessed(d: &[Digest]) -> Witnessed {
        let leaves: Vec<Digest> = d.iter().map(rfc6962::segment_leaf).collect();
        Witnessed {
            size: d.len() as u64,
            root: rfc6962::root(&leaves),
        }
    }

    #[test]
    fn consistent_growth_is_cosigned_with_a_verifiable_time() {
        let key = SecretKey::from_seed([1; 32]);
        let w = SecretKey::from_seed([2; 32]);
        let d = digests(0, 9);
        let req = parse(&request(&d, 5, &key), &HOST).unwrap();
        let j = Judge {
            last: Some(witnessed(&d[..5])),
            stored: 9,
            digests: Some(&d),
            signer: Some(key.public()),
        };
        assert_eq!(judge(&req, &j).unwrap(), Verdict::Cosign);
        // Ahead of the segments stored: consistent, cosigned later.
        let behind = Judge {
            stored: 7,
            digests: Some(&d[..7]),
            ..j
        };
        assert_eq!(judge(&req, &behind).unwrap(), Verdict::Later);
        let n = cosigned(&req.note, "c1", &w, 1234);
        let vk = VerifierKey {
            name: "c1".into(),
            sig_type: SIG_COSIGNATURE_V1,
            key: w.public(),
        };
        assert_eq!(n.cosignatures_by(&vk), Some(vec![1234]));
        assert!(n.verify_ed25519(&origin(&HOST), &key.public()));
    }

    #[test]
    fn rollback_forks_and_wrong_signers_are_refused() {
        let key = SecretKey::from_seed([1; 32]);
        let other = SecretKey::from_seed([9; 32]);
        let d = digests(0, 9);
        let base = Judge {
            last: Some(witnessed(&d[..5])),
            stored: 9,
            digests: Some(&d),
            signer: Some(key.public()),
        };
        // A shorter tree than the one cosigned (rolled back): 409 / ROLLBACK.
        let r = judge(&parse(&request(&d[..4], 0, &key), &HOST).unwrap(), &base).unwrap_err();
        assert_eq!(r.finding(), FindingKind::Rollback);
        let r = judge(&parse(&request(&d[..4], 4, &key), &HOST).unwrap(), &base).unwrap_err();
        assert_eq!(r.finding(), FindingKind::Rollback);
        let short = Judge {
            last: Some(witnessed(&d[..3])),
            ..base
        };
        // A checkpoint a little behind the segments stored is the tree of a stored prefix.
        let r = judge(&parse(&request(&d[..4], 3, &key), &HOST).unwrap(), &short);
        assert_eq!(r, Ok(Verdict::Cosign));
        let r = judge(&parse(&request(&d[..2], 0, &key), &HOST).unwrap(), &short).unwrap_err();
        assert_eq!((r.finding(), r.http_status()), (FindingKind::Rollback, 409));
        // Another history after segment 2: 422 / FORK.
        let mut forked = d.clone();
        forked[2] = Digest([0xee; 32]);
        let r = judge(&parse(&request(&forked, 5, &key), &HOST).unwrap(), &base).unwrap_err();
        assert_eq!((r.finding(), r.http_status()), (FindingKind::Fork, 422));
        // Consistent with the last cosigned tree but not with what the collector stored.
        let mut tail = d.clone();
        tail[8] = Digest([0xdd; 32]);
        let r = judge(&parse(&request(&tail, 5, &key), &HOST).unwrap(), &base).unwrap_err();
        assert_eq!(r.finding(), FindingKind::Fork);
        // Signed by another key: 403 / BAD_SIGNATURE.
        let r = judge(&parse(&request(&d, 5, &other), &HOST).unwrap(), &base).unwrap_err();
        assert_eq!(r.http_status(), 403);
        // Malformed: another host, a bad old line.
        assert!(parse(&request(&d, 5, &key), &HostId([4; 16])).is_err());
        assert!(parse(&request(&d, 5, &key).replacen("old 5", "old 05", 1), &HOST).is_err());
    }
}
