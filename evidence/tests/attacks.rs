//! The attack suite: one regression test per attack the issue lists, each asserting the exact
//! finding and range the verifier reports.

mod common;

use std::fs;

use common::*;
use lineage_evidence::entry::{
    DropReason, Dropped, Event, KeyRotation, Loss, Retention, RetentionReason,
    LOSS_FLAG_UNEXPLAINED,
};
use lineage_evidence::segment::{SegmentView, HEADER_LEN};
use lineage_evidence::verify::{KnownHead, Range, TrustMode};
use lineage_evidence::{
    verify_dir, ChainWriter, FindingKind, Outcome, Report, SealedSegment, SegmentStore,
    VerifyOptions,
};

fn trusted() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![key().public()],
        known_head: None,
    }
}

fn kinds(r: &Report) -> Vec<FindingKind> {
    r.findings.iter().map(|f| f.kind).collect()
}

#[test]
fn clean_log_verifies() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5, 4, 300);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.findings);
    assert!(r.findings.is_empty());
    assert_eq!(r.trust, TrustMode::Anchored);
    assert_eq!((r.segments_ok, r.entries_ok), (5, 20));
    assert_eq!(r.head.unwrap().next_index, 20);
}

#[test]
fn without_keys_only_internal_consistency_is_claimed() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 2, 2, 10);
    let r = verify_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.trust, TrustMode::InternalConsistencyOnly);
    assert!(r
        .notices
        .iter()
        .any(|n| n.contains("only the log's internal consistency")));
}

#[test]
fn middle_segment_deleted() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5, 4, 30);
    fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(2, 2)));
    assert_eq!(r.findings[0].entries, Some(Range::new(8, 11)));
    assert_eq!(r.outcome, Outcome::CompletenessFailure);
}

#[test]
fn two_consecutive_segments_deleted_are_one_exact_range() {
    // CloudTrail reports this as a single gap of unknown size; here the range is exact.
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 6, 4, 30);
    fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    fs::remove_file(seg_path(dir.path(), 3)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(2, 3)));
    assert_eq!(r.findings[0].entries, Some(Range::new(8, 15)));
}

#[test]
fn first_segment_deleted() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3, 2, 30);
    fs::remove_file(seg_path(dir.path(), 0)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(0, 0)));
    assert_eq!(r.findings[0].entries, Some(Range::new(0, 1)));
}

#[test]
fn empty_heartbeat_segment_deleted_is_still_missing() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"x").unwrap();
    store.write(&w.seal(1, &key())).unwrap();
    store.write(&w.seal(2, &key())).unwrap(); // silence, sealed
    store.write(&w.seal(3, &key())).unwrap();
    fs::remove_file(seg_path(dir.path(), 1)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(1, 1)));
    assert_eq!(r.findings[0].entries, None);
}

#[test]
fn tail_truncation_needs_and_uses_a_known_head() {
    let dir = tempfile::tempdir().unwrap();
    let (_, segs) = build_log(dir.path(), 5, 4, 30);
    let last = segs.last().unwrap().header;
    fs::remove_file(seg_path(dir.path(), 4)).unwrap();
    fs::remove_file(seg_path(dir.path(), 3)).unwrap();

    // Without a head the truncated log is internally consistent; the report says so.
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok);
    assert!(r.notices.iter().any(|n| n.contains("known head")));

    let by_segment = VerifyOptions {
        known_head: Some(KnownHead::Segment {
            number: 4,
            digest: last.digest(),
        }),
        ..trusted()
    };
    let r = verify_dir(dir.path(), &by_segment).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Truncated]);
    assert_eq!(r.findings[0].segments, Some(Range::new(3, 4)));
    assert_eq!(r.outcome, Outcome::CompletenessFailure);

    let by_entry = VerifyOptions {
        known_head: Some(KnownHead::Entry {
            index: 19,
            link: last.chain_head,
        }),
        ..trusted()
    };
    let r = verify_dir(dir.path(), &by_entry).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Truncated]);
    assert_eq!(r.findings[0].entries, Some(Range::new(12, 19)));
}

#[test]
fn known_head_that_disagrees_is_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let (_, segs) = build_log(dir.path(), 3, 4, 30);
    let opts = VerifyOptions {
        known_head: Some(KnownHead::Entry {
            index: 5,
            link: segs[2].header.chain_head, // the link of entry 11, not 5
        }),
        ..trusted()
    };
    let r = verify_dir(dir.path(), &opts).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Fork]);
    assert_eq!(r.findings[0].entries, Some(Range::one(5)));
}

#[test]
fn two_segments_swapped() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5, 4, 30);
    let (a, b) = (seg_path(dir.path(), 1), seg_path(dir.path(), 3));
    let tmp = dir.path().join("tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Reordered, FindingKind::Reordered]
    );
    assert_eq!(r.findings[0].segments, Some(Range::one(1)));
    assert_eq!(r.findings[1].segments, Some(Range::one(3)));
    assert!(r.findings[0]
        .file
        .as_deref()
        .unwrap()
        .ends_with("00000000000000000003.seg"));
    assert_eq!(r.outcome, Outcome::IntegrityFailure);
}

#[test]
fn old_segment_replayed() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 5, 4, 30);
    // Replace segment 3 with a copy of segment 1.
    fs::copy(seg_path(dir.path(), 1), seg_path(dir.path(), 3)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Replayed, FindingKind::MissingSegments]
    );
    assert_eq!(r.findings[0].segments, Some(Range::one(1)));
    assert!(r.findings[0]
        .file
        .as_deref()
        .unwrap()
        .ends_with("00000000000000000003.seg"));
    assert_eq!(r.findings[1].segments, Some(Range::one(3)));
    assert_eq!(r.findings[1].entries, Some(Range::new(12, 15)));

    // Appending an old segment as if it were new is also a replay.
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3, 2, 30);
    fs::copy(seg_path(dir.path(), 0), seg_path(dir.path(), 3)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Replayed]);
}

#[test]
fn entry_inserted() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 4, 4, 30);
    let p = seg_path(dir.path(), 2);
    let bytes = fs::read(&p).unwrap();
    let view = SegmentView::parse(&bytes).unwrap();
    let extra = Event {
        schema: 1,
        payload: b"forged",
    }
    .encode();
    let mut framed = (extra.len() as u32).to_le_bytes().to_vec();
    framed.extend_from_slice(&extra);

    // Naive: splice the entry in after the first one.
    let first_len = 4 + u32::from_le_bytes(bytes[312..316].try_into().unwrap()) as usize;
    let mut naive = bytes.clone();
    naive.splice(312 + first_len..312 + first_len, framed.iter().copied());
    fs::write(&p, &naive).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Modified]);
    assert_eq!(r.findings[0].segments, Some(Range::one(2)));

    // Careful: also fix the header's counts so the file parses; the signature then fails.
    let mut h = view.header;
    h.entry_count += 1;
    h.entries_len += framed.len() as u64;
    let mut careful = naive.clone();
    careful[..HEADER_LEN].copy_from_slice(&h.encode());
    fs::write(&p, &careful).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::BadSignature]);
    assert_eq!(r.findings[0].segments, Some(Range::one(2)));
}

#[test]
fn entry_modified_names_the_segment_and_its_range() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 4, 4, 30);
    let p = seg_path(dir.path(), 1);
    let mut bytes = fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&p, &bytes).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Modified]);
    assert_eq!(r.findings[0].segments, Some(Range::one(1)));
    assert_eq!(r.findings[0].entries, Some(Range::new(4, 7)));
}

/// Rewrites segment `n` with an edited last entry, recomputes its chain and root, and signs it
/// with the foreign key: a careful forger without the agent's key.
fn resign_with_foreign_key(dir: &std::path::Path, n: u64) {
    let p = seg_path(dir, n);
    let bytes = fs::read(&p).unwrap();
    let view = SegmentView::parse(&bytes).unwrap();
    let mut w = ChainWriter::from_state(lineage_evidence::ChainState {
        host_id: view.header.host_id,
        next_index: view.header.first_index,
        head: view.header.start_link,
        next_segment: view.header.segment_number,
        prev_header_digest: view.header.prev_header_digest,
    });
    for (i, e) in view.entries().enumerate() {
        if i == 0 {
            w.append_event(1, b"rewritten history").unwrap();
        } else {
            w.append(e).unwrap();
        }
    }
    let forged = w.seal(view.header.seal_time_ns, &foreign_key());
    fs::write(&p, forged.to_bytes()).unwrap();
}

#[test]
fn segment_resigned_with_foreign_key() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 4, 4, 30);
    resign_with_foreign_key(dir.path(), 1);
    for opts in [trusted(), VerifyOptions::default()] {
        let r = verify_dir(dir.path(), &opts).unwrap();
        assert_eq!(
            kinds(&r),
            vec![FindingKind::UnknownKey, FindingKind::Fork],
            "{:#?}",
            r.findings
        );
        assert_eq!(r.findings[0].segments, Some(Range::one(1)));
        assert_eq!(r.findings[1].segments, Some(Range::new(1, 2)));
        assert_eq!(r.outcome, Outcome::IntegrityFailure);
    }
}

#[test]
fn whole_log_resigned_fails_only_against_trusted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HOST);
    for s in 0..3 {
        w.append_event(1, b"forged").unwrap();
        store.write(&w.seal(s, &foreign_key())).unwrap();
    }
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::UnknownKey; 3]);
    let r = verify_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok);
    assert_eq!(r.trust, TrustMode::InternalConsistencyOnly);
}

#[test]
fn valid_key_rotation_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let (old, new) = (key(), foreign_key());
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"a").unwrap();
    store.write(&w.seal(1, &old)).unwrap();
    w.append_key_rotation(&old, &new.public()).unwrap();
    store.write(&w.seal(2, &old)).unwrap();
    w.append_event(1, b"b").unwrap();
    store.write(&w.seal(3, &new)).unwrap();
    store.write(&w.seal(4, &new)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap(); // only the OLD key is trusted
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.keys.len(), 2);
    assert_eq!(r.keys[1].segments, Range::new(2, 3));
}

/// Issue 13: after a KEY_ROTATION the retired key still passed `verify --key old`. Whoever
/// holds the retired key (it leaked, which is why it was rotated) appends a segment signed by
/// it after the rotation: rejected whether the verifier trusts the old key, both keys, or
/// nothing, and also after a gap (deleting the segments in between does not revive it).
#[test]
fn retired_key_signs_nothing_after_its_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let (old, new) = (key(), foreign_key());
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"a").unwrap();
    store.write(&w.seal(1, &old)).unwrap();
    w.append_key_rotation(&old, &new.public()).unwrap();
    store.write(&w.seal(2, &old)).unwrap();
    w.append_event(1, b"b").unwrap();
    store.write(&w.seal(3, &new)).unwrap();
    // The holder of the retired key extends the log.
    w.append_event(1, b"written with the retired key").unwrap();
    store.write(&w.seal(4, &old)).unwrap();
    let both = VerifyOptions {
        trusted_keys: vec![old.public(), new.public()],
        known_head: None,
    };
    for opts in [trusted(), both.clone(), VerifyOptions::default()] {
        let r = verify_dir(dir.path(), &opts).unwrap();
        assert_eq!(
            kinds(&r),
            vec![FindingKind::UnknownKey],
            "{:#?}",
            r.findings
        );
        assert_eq!(r.findings[0].segments, Some(Range::one(3)));
        assert!(
            r.findings[0].detail.contains("retired"),
            "{}",
            r.findings[0].detail
        );
    }
    // Delete segment 2 so a gap precedes the forged segment: still retired.
    w.append_event(1, b"c").unwrap();
    store.write(&w.seal(5, &old)).unwrap();
    fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    fs::remove_file(seg_path(dir.path(), 3)).unwrap();
    let r = verify_dir(dir.path(), &both).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::MissingSegments, FindingKind::UnknownKey],
        "{:#?}",
        r.findings
    );
}

/// Trusted keys are starting anchors, not a licence: with the old and an unrelated trusted key
/// given, a switch to the unrelated key without a KEY_ROTATION is refused.
#[test]
fn a_trusted_key_cannot_take_over_without_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let (a, b) = (key(), foreign_key());
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"a").unwrap();
    store.write(&w.seal(1, &a)).unwrap();
    w.append_event(1, b"b").unwrap();
    store.write(&w.seal(2, &b)).unwrap();
    let opts = VerifyOptions {
        trusted_keys: vec![a.public(), b.public()],
        known_head: None,
    };
    let r = verify_dir(dir.path(), &opts).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::UnknownKey],
        "{:#?}",
        r.findings
    );
    assert!(r.findings[0].detail.contains("starting anchor"));
}

/// Several rotations in one segment: only the first valid one takes effect.
#[test]
fn a_second_rotation_in_one_segment_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let (old, new, third) = (
        key(),
        foreign_key(),
        lineage_evidence::SecretKey::from_seed([7; 32]),
    );
    let mut w = ChainWriter::new(HOST);
    w.append_key_rotation(&old, &new.public()).unwrap();
    w.append_key_rotation(&old, &third.public()).unwrap();
    store.write(&w.seal(1, &old)).unwrap();
    w.append_event(1, b"b").unwrap();
    store.write(&w.seal(2, &third)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::BadSignature, FindingKind::UnknownKey],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].entries, Some(Range::one(1)));
}

#[test]
fn forged_rotation_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let (old, attacker) = (key(), foreign_key());
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"a").unwrap();
    store.write(&w.seal(1, &old)).unwrap();
    // A rotation that claims the old key but is signed by the attacker's key.
    let (index, _) = w
        .append_with(|b| {
            let msg = KeyRotation::message(&HOST, 1, &old.public(), &attacker.public());
            KeyRotation {
                old_public: old.public(),
                new_public: attacker.public(),
                signature: attacker.sign(&msg),
            }
            .encode_into(b)
        })
        .unwrap();
    assert_eq!(index, 1);
    store.write(&w.seal(2, &old)).unwrap();
    w.append_event(1, b"b").unwrap();
    store.write(&w.seal(3, &attacker)).unwrap();
    for opts in [trusted(), VerifyOptions::default()] {
        let r = verify_dir(dir.path(), &opts).unwrap();
        assert_eq!(
            kinds(&r),
            vec![FindingKind::BadSignature, FindingKind::UnknownKey]
        );
        assert_eq!(r.findings[0].entries, Some(Range::one(1)));
        assert_eq!(r.findings[1].segments, Some(Range::one(2)));
    }

    // A rotation placed in a segment the attacker signed is not honoured either.
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"a").unwrap();
    store.write(&w.seal(1, &old)).unwrap();
    w.append_key_rotation(&attacker, &attacker.public())
        .unwrap();
    store.write(&w.seal(2, &attacker)).unwrap();
    store.write(&w.seal(3, &attacker)).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::UnknownKey, FindingKind::UnknownKey],
        "{:#?}",
        r.findings
    );
}

#[test]
fn declared_and_unexplained_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HOST);
    let explained = Loss {
        cpu: 1,
        flags: 0,
        first_seq: 100,
        last_seq: 104,
        counter_delta: 5,
        counter_total: 5,
    };
    w.append_with(|b| explained.encode_into(b)).unwrap();
    store.write(&w.seal(1, &key())).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::DeclaredLoss]);
    assert_eq!(r.findings[0].cpu, Some(1));
    assert_eq!(r.findings[0].sequences, Some(Range::new(100, 104)));
    assert_eq!(r.outcome, Outcome::DeclaredLossOnly);

    let short = Loss {
        counter_delta: 3,
        ..explained
    };
    let flagged = Loss {
        flags: LOSS_FLAG_UNEXPLAINED,
        ..explained
    };
    w.append_with(|b| short.encode_into(b)).unwrap();
    w.append_with(|b| flagged.encode_into(b)).unwrap();
    store.write(&w.seal(2, &key())).unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![
            FindingKind::DeclaredLoss,
            FindingKind::UnexplainedGap,
            FindingKind::UnexplainedGap
        ]
    );
    assert_eq!(r.findings[2].entries, Some(Range::one(2)));
    assert_eq!(r.outcome, Outcome::CompletenessFailure);
}

#[test]
fn segment_from_another_host_is_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3, 2, 10);
    let mut other = ChainWriter::from_state(lineage_evidence::ChainState {
        host_id: lineage_evidence::HostId([0x22; 16]),
        ..lineage_evidence::ChainState::genesis(HOST)
    });
    other.append_event(1, b"x").unwrap();
    let mut seg = other.seal(1, &key());
    // Make it claim slot 3 of this log's numbering.
    seg = {
        let mut w = ChainWriter::from_state(lineage_evidence::ChainState {
            next_segment: 3,
            ..*other.state()
        });
        let _ = seg;
        w.append_event(1, b"y").unwrap();
        w.seal(2, &key())
    };
    SegmentStore::create(dir.path())
        .unwrap()
        .write(&seg)
        .unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert!(kinds(&r).contains(&FindingKind::Fork), "{:#?}", r.findings);
    assert!(r
        .findings
        .iter()
        .all(|f| f.segments.is_some_and(|s| s.contains(3))));
}

#[test]
fn oversized_file_is_a_finding_not_an_abort() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 3, 2, 10);
    // A sparse file just over the 1 GiB limit in segment 1's place.
    let f = fs::File::create(seg_path(dir.path(), 1)).unwrap();
    f.set_len(lineage_evidence::segment::MAX_SEGMENT_LEN + 1)
        .unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::Modified]);
    assert_eq!(r.findings[0].segments, Some(Range::one(1)));
}

#[test]
fn declared_drop_is_declared_loss_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, _) = build_log(dir.path(), 2, 3, 10);
    let d = Dropped {
        reason: DropReason::StorageUnavailable,
        count: 42,
        first_time_ns: 1_000,
        last_time_ns: 2_000,
    };
    let (index, _) = w.append_with(|b| d.encode_into(b)).unwrap();
    assert_eq!(index, 6);
    w.append_event(1, b"after the outage").unwrap();
    SegmentStore::create(dir.path())
        .unwrap()
        .write(&w.seal(9, &key()))
        .unwrap();
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::DeclaredLoss],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].segments, Some(Range::one(2)));
    assert_eq!(r.findings[0].entries, Some(Range::one(6)));
    assert!(r.findings[0].detail.contains("42 entries"));
    assert_eq!(r.outcome, Outcome::DeclaredLossOnly);
    assert_eq!(r.entry_kinds.get("DROPPED"), Some(&1));
}

// Retention: the agent deletes its oldest segments after recording the deletion on the chain.

/// A log of 4 segments × 4 entries (0..=3, entries 0..=15), then segment 4 holding one
/// RETENTION entry per `declare` (index 16, 17, …, each declaring segments 0..=k with the true
/// digest and end index) and an EVENT, then segment 5 with two EVENTs (entries up to
/// 17 + declare.len()). Nothing is deleted yet.
fn log_with_retention(dir: &std::path::Path, declare: &[u64]) -> Vec<SealedSegment> {
    let (mut w, mut segs) = build_log(dir, 4, 4, 30);
    for &k in declare {
        let r = truthful_retention(&segs, k);
        w.append_with(|b| r.encode_into(b)).unwrap();
    }
    w.append_event(1, b"after retention").unwrap();
    let store = SegmentStore::create(dir).unwrap();
    segs.push(w.seal(5_000, &key()));
    store.write(segs.last().unwrap()).unwrap();
    w.append_event(1, b"x").unwrap();
    w.append_event(1, b"y").unwrap();
    segs.push(w.seal(6_000, &key()));
    store.write(segs.last().unwrap()).unwrap();
    segs
}

fn truthful_retention(segs: &[SealedSegment], k: u64) -> Retention {
    let h = segs[k as usize].header;
    Retention {
        reason: RetentionReason::Budget,
        last_deleted_segment: k,
        end_index: h.end_index(),
        deleted_bytes: 1234,
        deleted_segments: k + 1,
        last_deleted_header_digest: h.digest(),
    }
}

fn delete(dir: &std::path::Path, segments: std::ops::RangeInclusive<u64>) {
    for n in segments {
        fs::remove_file(seg_path(dir, n)).unwrap();
    }
}

#[test]
fn pruned_prefix_declared_by_retention_verifies() {
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[2]);
    delete(dir.path(), 0..=2);
    for opts in [trusted(), VerifyOptions::default()] {
        let r = verify_dir(dir.path(), &opts).unwrap();
        assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
        assert!(r.findings.is_empty());
        let s = r.retention.clone().expect("a retention summary");
        assert_eq!(s.declared_at, 16);
        assert_eq!(s.declared_in_segment, 4);
        assert_eq!(s.reason, RetentionReason::Budget);
        assert_eq!(s.declared_segments, Range::new(0, 2));
        assert_eq!(s.declared_entries, Some(Range::new(0, 11)));
        assert_eq!(s.absent, vec![Range::new(0, 2)]);
        assert_eq!(s.still_present, None);
        assert!(
            r.notices
                .iter()
                .any(|n| n.contains("0..=2 were deleted by retention")
                    && n.contains("RETENTION entry 16 in segment 4")
                    && n.contains("entries 0..=11")),
            "{:#?}",
            r.notices
        );
        assert_eq!((r.segments_ok, r.entries_ok), (3, 8));
        assert_eq!(r.head.unwrap().next_index, 20);
        assert_eq!(r.entry_kinds.get("RETENTION"), Some(&1));
    }
    let json = serde_json::to_value(verify_dir(dir.path(), &trusted()).unwrap()).unwrap();
    assert_eq!(json["retention"]["declared_segments"]["last"], 2);
    assert_eq!(json["retention"]["reason"], "budget");
    assert_eq!(json["outcome"], "ok");

    // The agent resumes the pruned store as usual.
    let store = SegmentStore::open(dir.path()).unwrap();
    let w = ChainWriter::resume(&store, HOST).unwrap();
    assert_eq!(w.position().next_index, 20);
}

#[test]
fn pruned_prefix_without_retention_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    build_log(dir.path(), 6, 4, 30);
    delete(dir.path(), 0..=2);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(0, 2)));
    assert_eq!(r.findings[0].entries, Some(Range::new(0, 11)));
    assert_eq!(r.outcome, Outcome::CompletenessFailure);
    assert!(r.retention.is_none());
}

#[test]
fn attacker_deleting_the_prefix_and_the_retention_is_missing() {
    // Deleting the segment holding the RETENTION entry along with the prefix leaves nothing
    // that declares the deletion.
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[2]);
    delete(dir.path(), 0..=4);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(kinds(&r), vec![FindingKind::MissingSegments]);
    assert_eq!(r.findings[0].segments, Some(Range::new(0, 4)));
    assert_eq!(r.findings[0].entries, Some(Range::new(0, 17)));
    assert!(r.retention.is_none());
}

#[test]
fn deleting_one_segment_beyond_the_declared_range_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[1]);
    delete(dir.path(), 0..=2);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::MissingSegments],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].segments, Some(Range::one(2)));
    assert_eq!(r.findings[0].entries, Some(Range::new(8, 11)));
    assert_eq!(r.outcome, Outcome::CompletenessFailure);
    assert_eq!(r.retention.unwrap().absent, vec![Range::new(0, 1)]);
}

#[test]
fn retention_that_does_not_match_the_first_kept_segment_is_a_fork() {
    for bad in ["digest", "end index"] {
        let dir = tempfile::tempdir().unwrap();
        let (mut w, segs) = build_log(dir.path(), 4, 4, 30);
        let mut r = truthful_retention(&segs, 2);
        if bad == "digest" {
            r.last_deleted_header_digest = segs[1].header.digest();
        } else {
            r.end_index -= 1;
        }
        w.append_with(|b| r.encode_into(b)).unwrap();
        let store = SegmentStore::create(dir.path()).unwrap();
        store.write(&w.seal(5_000, &key())).unwrap();
        delete(dir.path(), 0..=2);
        let rep = verify_dir(dir.path(), &trusted()).unwrap();
        assert_eq!(
            kinds(&rep),
            vec![FindingKind::Fork],
            "{bad}: {:#?}",
            rep.findings
        );
        assert_eq!(rep.findings[0].segments, Some(Range::one(3)));
        assert!(rep.findings[0]
            .file
            .as_deref()
            .unwrap()
            .ends_with("00000000000000000003.seg"));
        assert!(rep.findings[0].detail.contains("RETENTION entry 16"));
        assert_eq!(rep.outcome, Outcome::IntegrityFailure);
    }
}

#[test]
fn deletion_in_progress_is_accepted_with_a_notice() {
    // The agent crashed after deleting segments 0 and 1 of the declared 0..=2.
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[2]);
    delete(dir.path(), 0..=1);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    let s = r.retention.unwrap();
    assert_eq!(s.absent, vec![Range::new(0, 1)]);
    assert_eq!(s.still_present, Some(Range::one(2)));
    assert!(r.notices.iter().any(|n| n.contains("still present")));

    // Declared but nothing deleted yet is fine too.
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[2]);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    assert_eq!(r.retention.unwrap().still_present, Some(Range::new(0, 2)));
}

#[test]
fn the_newest_cumulative_retention_covers_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    log_with_retention(dir.path(), &[0, 2]);
    delete(dir.path(), 0..=2);
    let r = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    let s = r.retention.unwrap();
    assert_eq!((s.declared_at, s.declared_segments), (17, Range::new(0, 2)));
    assert_eq!(s.absent, vec![Range::new(0, 2)]);
}

#[test]
fn retention_signed_by_an_untrusted_key_is_not_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, segs) = build_log(dir.path(), 4, 4, 30);
    let r = truthful_retention(&segs, 2);
    w.append_with(|b| r.encode_into(b)).unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    store.write(&w.seal(5_000, &foreign_key())).unwrap();
    delete(dir.path(), 0..=2);
    let rep = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&rep),
        vec![FindingKind::MissingSegments, FindingKind::UnknownKey],
        "{:#?}",
        rep.findings
    );
    assert_eq!(rep.findings[0].segments, Some(Range::new(0, 2)));
    assert!(rep.retention.is_none());
}

#[test]
fn retention_declaring_its_own_segment_is_malformed_and_not_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let (mut w, segs) = build_log(dir.path(), 4, 4, 30);
    let mut r = truthful_retention(&segs, 3);
    r.last_deleted_segment = 4; // the segment the entry itself is in
    w.append_with(|b| r.encode_into(b)).unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    store.write(&w.seal(5_000, &key())).unwrap();
    delete(dir.path(), 0..=3);
    let rep = verify_dir(dir.path(), &trusted()).unwrap();
    assert_eq!(
        kinds(&rep),
        vec![FindingKind::MissingSegments, FindingKind::Malformed],
        "{:#?}",
        rep.findings
    );
    assert_eq!(rep.findings[0].segments, Some(Range::new(0, 3)));
    assert_eq!(rep.findings[1].entries, Some(Range::one(16)));
}
