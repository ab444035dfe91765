//! Incremental verification of one pulled segment against the stored chain.
//!
//! The collector never re-implements the format: each pulled file is handed to the evidence
//! library's [`Verifier`] together with the last *stored* segment (already verified), with the
//! key in effect as the only trusted key. The library then checks framing, signature, every
//! link and the Merkle root, entry decoding, continuity with the previous segment
//! (previous-header digest, first index, start link), the genesis rules for segment 0, and the
//! key. Only findings about the new segment count: the previous one is there to anchor it, and
//! the absent older segments are not its fault.
//!
//! What the library cannot know, because it sees two files and not the collector's history,
//! is added here: the segment must carry the number the collector asked for and the host the
//! agent announced, and the key in effect for the *next* segment follows the valid
//! KEY_ROTATION entries of this one (format version 1) or the key its header commits to
//! (format version 2, forward-secure sealing).

use lineage_evidence::digest::{Digest, HostId};
use lineage_evidence::entry::Entry;
use lineage_evidence::keys::PublicKey;
use lineage_evidence::segment::{SegmentHeader, SegmentView};
use lineage_evidence::store::file_name;
use lineage_evidence::verify::{Finding, FindingKind, Outcome, Range, Verifier, VerifyOptions};

/// What the new segment is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The host the agent announced.
    pub host: HostId,
    /// The last stored segment (number and exact bytes), if any.
    pub prev: Option<(u64, &'a [u8])>,
    /// The key that must sign this segment; `None` before the first segment (trust on first
    /// use unless `trusted` is set).
    pub key_in_effect: Option<PublicKey>,
    /// Keys pinned by configuration.
    pub trusted: &'a [PublicKey],
}

/// An accepted segment.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// Its (authentic) header.
    pub header: SegmentHeader,
    /// Its header digest.
    pub digest: Digest,
    /// The key that must sign the next segment.
    pub next_key: PublicKey,
    /// The highest segment number a RETENTION entry in it declares deleted.
    pub retention_up_to: Option<u64>,
    /// Findings that do not make it invalid (declared or unexplained loss it records).
    pub notes: Vec<Finding>,
}

/// A rejected segment: the findings about it, worst first.
#[derive(Debug, Clone)]
pub struct Rejected {
    /// At least one finding.
    pub findings: Vec<Finding>,
}

impl Rejected {
    /// The finding kind that decided the rejection.
    pub fn kind(&self) -> FindingKind {
        self.findings[0].kind
    }
}

/// A finding about segment `n`.
pub fn finding(kind: FindingKind, n: u64, detail: String) -> Finding {
    Finding {
        kind,
        segments: Some(Range::one(n)),
        entries: None,
        file: Some(file_name(n)),
        cpu: None,
        sequences: None,
        detail,
    }
}

/// Verifies `bytes`, served as segment `number`, in `ctx`.
pub fn check_segment(ctx: &Context<'_>, number: u64, bytes: &[u8]) -> Result<Accepted, Rejected> {
    let reject = |f: Finding| Err(Rejected { findings: vec![f] });
    // The number and host are checked first: a segment from another place in the chain (or
    // another chain) must not be judged as if it belonged here.
    if let Ok(v) = SegmentView::parse(bytes) {
        let h = &v.header;
        if h.segment_number != number {
            return reject(finding(
                FindingKind::Reordered,
                number,
                format!(
                    "the agent served signed segment {} as segment {number}",
                    h.segment_number
                ),
            ));
        }
        if h.host_id != ctx.host {
            return reject(finding(
                FindingKind::Fork,
                number,
                format!(
                    "segment of host {}, the agent is host {}",
                    h.host_id, ctx.host
                ),
            ));
        }
    }

    // Pinned keys are only the starting anchor: once a key is in effect, it alone may sign
    // (a retired key must not be accepted because it was pinned once).
    let trusted: Vec<PublicKey> = match ctx.key_in_effect {
        Some(k) => vec![k],
        None => ctx.trusted.to_vec(),
    };
    let mut v = Verifier::new(VerifyOptions {
        trusted_keys: trusted,
        known_head: None,
    });
    if let Some((n, prev)) = ctx.prev {
        v.add_file(&file_name(n), Some(n), prev);
    }
    v.add_file(&file_name(number), Some(number), bytes);
    let report = v.finish();
    let (mut bad, notes): (Vec<Finding>, Vec<Finding>) = report
        .findings
        .into_iter()
        .filter(|f| f.segments.is_some_and(|r| r.contains(number)))
        .partition(|f| f.kind.outcome() == Outcome::IntegrityFailure);
    if !bad.is_empty() {
        bad.sort_by_key(|f| f.kind);
        return Err(Rejected { findings: bad });
    }

    // Accepted by the library, so it parses and its signature and entries check out.
    let view = SegmentView::parse(bytes).expect("the verifier accepted it");
    let header = view.header;
    // Format version 2: the header names the next segment's one-time key.
    let mut next_key = header.seal.map_or(header.public_key, |s| s.next_public_key);
    let mut retention_up_to = None;
    for (i, e) in view.entries().enumerate() {
        let index = header.first_index + i as u64;
        match Entry::parse(e) {
            // Only the first valid rotation of a segment counts (FORMAT.md §9.2).
            Ok(Entry::KeyRotation(r))
                if header.seal.is_none()
                    && next_key == header.public_key
                    && r.old_public == header.public_key
                    && r.new_public != header.public_key
                    && r.verify(&header.host_id, index) =>
            {
                next_key = r.new_public;
            }
            Ok(Entry::Retention(r)) => {
                retention_up_to = retention_up_to.max(Some(r.last_deleted_segment));
            }
            _ => {}
        }
    }
    Ok(Accepted {
        digest: header.digest(),
        header,
        next_key,
        retention_up_to,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_evidence::chain::ChainWriter;
    use lineage_evidence::keys::SecretKey;

    const HOST: HostId = HostId([5; 16]);

    fn chain(n: u64, key: &SecretKey) -> Vec<Vec<u8>> {
        let mut w = ChainWriter::new(HOST);
        (0..n)
            .map(|s| {
                w.append_event(1, format!("event {s}").as_bytes()).unwrap();
                w.seal(s + 1, key).to_bytes()
            })
            .collect()
    }

    fn ctx<'a>(prev: Option<(u64, &'a [u8])>, key: Option<PublicKey>) -> Context<'a> {
        Context {
            host: HOST,
            prev,
            key_in_effect: key,
            trusted: &[],
        }
    }

    #[test]
    fn a_good_chain_is_accepted_one_by_one() {
        let key = SecretKey::from_seed([1; 32]);
        let segs = chain(3, &key);
        let a = check_segment(&ctx(None, None), 0, &segs[0]).unwrap();
        assert_eq!(a.next_key, key.public());
        let b = check_segment(&ctx(Some((0, &segs[0])), Some(key.public())), 1, &segs[1]).unwrap();
        assert_eq!(b.header.first_index, 1);
        check_segment(&ctx(Some((1, &segs[1])), Some(key.public())), 2, &segs[2]).unwrap();
    }

    #[test]
    fn a_modified_segment_is_modified() {
        let key = SecretKey::from_seed([1; 32]);
        let mut segs = chain(2, &key);
        let last = segs[1].len() - 1;
        segs[1][last] ^= 0x40;
        let r =
            check_segment(&ctx(Some((0, &segs[0])), Some(key.public())), 1, &segs[1]).unwrap_err();
        assert_eq!(r.kind(), FindingKind::Modified);
        let r = check_segment(&ctx(None, None), 1, b"not a segment").unwrap_err();
        assert_eq!(r.kind(), FindingKind::Modified);
    }

    #[test]
    fn a_foreign_key_is_unknown() {
        let key = SecretKey::from_seed([1; 32]);
        let other = SecretKey::from_seed([2; 32]);
        let segs = chain(2, &key);
        // The same chain position re-signed by another key.
        let mut w = ChainWriter::new(HOST);
        w.append_event(1, b"event 0").unwrap();
        let _ = w.seal(1, &key);
        w.append_event(1, b"event 1").unwrap();
        let forged = w.seal(2, &other).to_bytes();
        let r =
            check_segment(&ctx(Some((0, &segs[0])), Some(key.public())), 1, &forged).unwrap_err();
        assert_eq!(r.kind(), FindingKind::UnknownKey);
        // Pinned by configuration: the first segment must already use a pinned key.
        let pinned = [other.public()];
        let c = Context {
            trusted: &pinned,
            ..ctx(None, None)
        };
        assert_eq!(
            check_segment(&c, 0, &segs[0]).unwrap_err().kind(),
            FindingKind::UnknownKey
        );
    }

    #[test]
    fn a_rotation_moves_the_key_in_effect() {
        let k1 = SecretKey::from_seed([1; 32]);
        let k2 = SecretKey::from_seed([2; 32]);
        let mut w = ChainWriter::new(HOST);
        w.append_key_rotation(&k1, &k2.public()).unwrap();
        let s0 = w.seal(1, &k1).to_bytes();
        w.append_event(1, b"x").unwrap();
        let s1 = w.seal(2, &k2).to_bytes();
        let a = check_segment(&ctx(None, Some(k1.public())), 0, &s0).unwrap();
        assert_eq!(a.next_key, k2.public());
        check_segment(&ctx(Some((0, &s0)), Some(k2.public())), 1, &s1).unwrap();
        // The retired key may not sign after the rotation.
        let mut w2 = ChainWriter::new(HOST);
        w2.append_key_rotation(&k1, &k2.public()).unwrap();
        let _ = w2.seal(1, &k1);
        w2.append_event(1, b"x").unwrap();
        let s1_old = w2.seal(2, &k1).to_bytes();
        assert_eq!(
            check_segment(&ctx(Some((0, &s0)), Some(k2.public())), 1, &s1_old)
                .unwrap_err()
                .kind(),
            FindingKind::UnknownKey
        );
    }

    /// Issue 13: with `trusted_keys` pinning the old key, a segment the retired key signed
    /// after the rotation was accepted and reset the key in effect to the retired key.
    #[test]
    fn a_pinned_key_retired_by_rotation_is_refused() {
        let k1 = SecretKey::from_seed([1; 32]);
        let k2 = SecretKey::from_seed([2; 32]);
        let mut w = ChainWriter::new(HOST);
        w.append_key_rotation(&k1, &k2.public()).unwrap();
        let s0 = w.seal(1, &k1).to_bytes();
        w.append_event(1, b"x").unwrap();
        let s1_old = w.seal(2, &k1).to_bytes();
        let pinned = [k1.public()];
        let first = Context {
            trusted: &pinned,
            ..ctx(None, None)
        };
        let a = check_segment(&first, 0, &s0).unwrap();
        assert_eq!(a.next_key, k2.public());
        let after = Context {
            trusted: &pinned,
            ..ctx(Some((0, &s0)), Some(a.next_key))
        };
        let r = check_segment(&after, 1, &s1_old).unwrap_err();
        assert_eq!(r.kind(), FindingKind::UnknownKey, "{:?}", r.findings);
        // Also when segments in between are absent (the rotation is not in the previous one).
        let mut w = ChainWriter::new(HOST);
        w.append_key_rotation(&k1, &k2.public()).unwrap();
        let _ = w.seal(1, &k1);
        w.append_event(1, b"y").unwrap();
        let s1 = w.seal(2, &k2).to_bytes();
        let _ = w.seal(3, &k2);
        w.append_event(1, b"z").unwrap();
        let s3_old = w.seal(4, &k1).to_bytes();
        let gap = Context {
            trusted: &pinned,
            ..ctx(Some((1, &s1)), Some(k2.public()))
        };
        let r = check_segment(&gap, 3, &s3_old).unwrap_err();
        assert_eq!(r.kind(), FindingKind::UnknownKey, "{:?}", r.findings);
    }

    /// Forward-secure (format version 2) segments: the key in effect is the one each header
    /// commits to; the key that signed the previous segment may not sign again.
    #[test]
    fn forward_secure_segments_follow_the_committed_key() {
        use lineage_evidence::digest::Digest;
        let identity = SecretKey::from_seed([9; 32]);
        let k: Vec<SecretKey> = (1..=3).map(|i| SecretKey::from_seed([i; 32])).collect();
        let mut w = ChainWriter::new(HOST);
        let cert = lineage_evidence::entry::Enrolment::sign(&HOST, &identity, &k[0].public());
        w.append_with(|b| cert.encode_into(b)).unwrap();
        let s0 = w
            .seal_forward(1, &k[0], &k[1].public(), Digest::ZERO)
            .to_bytes();
        let mut w_bad = ChainWriter::from_state(*w.state());
        w.append_event(1, b"x").unwrap();
        let s1 = w
            .seal_forward(2, &k[1], &k[2].public(), Digest::ZERO)
            .to_bytes();
        let pinned = [identity.public()];
        let first = Context {
            trusted: &pinned,
            ..ctx(None, None)
        };
        let a = check_segment(&first, 0, &s0).unwrap();
        assert_eq!(a.next_key, k[1].public());
        let b = check_segment(&ctx(Some((0, &s0)), Some(a.next_key)), 1, &s1).unwrap();
        assert_eq!(b.next_key, k[2].public());
        // Segment 1 signed again by segment 0's key (which root might have kept).
        w_bad.append_event(1, b"x").unwrap();
        let forged = w_bad
            .seal_forward(2, &k[0], &k[2].public(), Digest::ZERO)
            .to_bytes();
        let r = check_segment(&ctx(Some((0, &s0)), Some(a.next_key)), 1, &forged).unwrap_err();
        assert_eq!(r.kind(), FindingKind::UnknownKey, "{:?}", r.findings);
    }

    #[test]
    fn a_segment_that_does_not_continue_is_a_fork_and_a_misnumbered_one_reordered() {
        let key = SecretKey::from_seed([1; 32]);
        let segs = chain(3, &key);
        let other = {
            let mut w = ChainWriter::new(HOST);
            w.append_event(1, b"different").unwrap();
            let _ = w.seal(1, &key);
            w.append_event(1, b"y").unwrap();
            w.seal(2, &key).to_bytes()
        };
        let c = ctx(Some((0, &segs[0])), Some(key.public()));
        assert_eq!(
            check_segment(&c, 1, &other).unwrap_err().kind(),
            FindingKind::Fork
        );
        assert_eq!(
            check_segment(&c, 1, &segs[2]).unwrap_err().kind(),
            FindingKind::Reordered
        );
        let c = Context {
            host: HostId([6; 16]),
            ..c
        };
        assert_eq!(
            check_segment(&c, 1, &segs[1]).unwrap_err().kind(),
            FindingKind::Fork
        );
    }

    #[test]
    fn across_a_gap_the_segment_is_still_checked_on_its_own() {
        let key = SecretKey::from_seed([1; 32]);
        let segs = chain(4, &key);
        let a = check_segment(&ctx(Some((0, &segs[0])), Some(key.public())), 3, &segs[3]).unwrap();
        assert_eq!(a.header.segment_number, 3);
    }
}
