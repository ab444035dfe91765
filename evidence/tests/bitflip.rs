//! Property: flipping any single byte of any stored file of a generated log makes
//! verification fail with a finding that names that file's segment, and only that segment.

mod common;

use std::fs;
use std::path::Path;

use common::*;
use lineage_evidence::verify::KnownHead;
use lineage_evidence::{verify_dir, FindingKind, Outcome, SealedSegment, VerifyOptions};
use proptest::prelude::*;

fn opts(segs: &[SealedSegment]) -> VerifyOptions {
    let last = segs.last().unwrap().header;
    VerifyOptions {
        trusted_keys: vec![key().public()],
        known_head: Some(KnownHead::Segment {
            number: last.segment_number,
            digest: last.digest(),
        }),
    }
}

/// Flips `mask` into byte `offset` of segment `n`, verifies, checks the verdict, restores.
fn flip_and_check(dir: &Path, opts: &VerifyOptions, n: u64, offset: usize, mask: u8) {
    let path = seg_path(dir, n);
    let original = fs::read(&path).unwrap();
    let mut bytes = original.clone();
    bytes[offset] ^= mask;
    fs::write(&path, &bytes).unwrap();
    let r = verify_dir(dir, opts).unwrap();
    fs::write(&path, &original).unwrap();

    assert_eq!(
        r.outcome,
        Outcome::IntegrityFailure,
        "segment {n} byte {offset} mask {mask:#x} went unnoticed"
    );
    assert!(!r.findings.is_empty());
    for f in &r.findings {
        assert!(
            matches!(f.kind, FindingKind::Modified | FindingKind::BadSignature),
            "segment {n} byte {offset}: unexpected {f}"
        );
        assert_eq!(
            f.segments.map(|s| (s.first, s.last)),
            Some((n, n)),
            "segment {n} byte {offset}: finding names the wrong place: {f}"
        );
    }
}

#[test]
fn every_byte_of_every_file() {
    let dir = tempfile::tempdir().unwrap();
    // Three segments mixing AGENT_START, EVENT and HEARTBEAT entries. Small on purpose: this
    // runs one full verification per byte, and debug-build Ed25519 is slow.
    let (_, segs) = build_log(dir.path(), 3, 2, 8);
    let opts = opts(&segs);
    assert!(verify_dir(dir.path(), &opts).unwrap().findings.is_empty());
    let mut flips = 0;
    for seg in &segs {
        let n = seg.header.segment_number;
        for offset in 0..seg.file_len() {
            flip_and_check(dir.path(), &opts, n, offset, 0x01);
            flips += 1;
        }
    }
    assert!(flips > 1000, "{flips}");
}

#[test]
fn every_byte_of_an_empty_heartbeat_segment() {
    let dir = tempfile::tempdir().unwrap();
    let (_, segs) = build_log(dir.path(), 3, 0, 0);
    let opts = opts(&segs);
    for offset in 0..segs[1].file_len() {
        flip_and_check(dir.path(), &opts, 1, offset, 0x80);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_logs_random_flips(
        segments in 1u64..5,
        per in 1u64..6,
        payload in 0usize..300,
        pick in any::<(u64, usize)>(),
        mask in 1u8..=255,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_, segs) = build_log(dir.path(), segments, per, payload);
        let opts = opts(&segs);
        let n = pick.0 % segments;
        let offset = pick.1 % segs[n as usize].file_len();
        flip_and_check(dir.path(), &opts, n, offset, mask);
    }
}
