//! Forward-secure sealing (FORMAT.md format version 2), played as the attacker of issue 13:
//! root copies the whole key directory and the writer's keys at time T, lets the writer go on,
//! then tries to rewrite, delete or re-sign every segment sealed before T with everything the
//! copy holds. Verification anchored at the identity key (which was never on the host) must
//! report each attempt. What the copy does allow, extending the log, is shown too.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::HOST;
use lineage_evidence::digest::{leaf_hash, link_hash};
use lineage_evidence::entry::Event;
use lineage_evidence::merkle;
use lineage_evidence::sealkeys::{SealKeys, SEAL_KEY, SEAL_NEXT};
use lineage_evidence::segment::SegmentView;
use lineage_evidence::verify::Range;
use lineage_evidence::{
    verify_dir, ChainWriter, Digest, FindingKind, Outcome, PublicKey, SealedSegment, SecretKey,
    SegmentStore, VerifyOptions,
};

/// The host's identity key: only its public half is ever given to the writer's side.
fn identity() -> SecretKey {
    SecretKey::from_seed([0x1d; 32])
}

fn anchored() -> VerifyOptions {
    VerifyOptions {
        trusted_keys: vec![identity().public()],
        known_head: None,
    }
}

/// A running writer: chain, store and sealing keys in `dir`.
struct Writer {
    w: ChainWriter,
    store: SegmentStore,
    keys: SealKeys,
}

impl Writer {
    fn new(dir: &Path) -> Self {
        let store = SegmentStore::create(&dir.join("log")).unwrap();
        let keys = SealKeys::open(&dir.join("keys"), &HOST, None, || Ok(identity())).unwrap();
        Writer {
            w: ChainWriter::new(HOST),
            store,
            keys,
        }
    }

    /// One segment with `n` events, sealed the way the agent does.
    fn seal(&mut self, n: u64) -> SealedSegment {
        if let Some(cert) = self.keys.take_enrolment() {
            self.w.append_with(|b| cert.encode_into(b)).unwrap();
        }
        for i in 0..n {
            let s = self.w.state().next_segment;
            self.w
                .append_event(1, format!("segment {s} event {i}").as_bytes())
                .unwrap();
        }
        let next = self.keys.prepare().unwrap();
        let seg = self.w.seal_forward(
            1_000 + self.w.state().next_segment,
            self.keys.current(),
            &next,
            Digest([7; 32]),
        );
        self.store.write(&seg).unwrap();
        self.keys.commit().unwrap();
        seg
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every secret key in the snapshot (all of the writer's key files), plus one of the
/// attacker's own.
fn snapshot_keys(snapshot: &Path) -> Vec<SecretKey> {
    let mut keys = vec![SecretKey::from_seed([0xa7; 32])];
    for name in [SEAL_KEY, SEAL_NEXT] {
        let p = snapshot.join("keys").join(name);
        if p.exists() {
            keys.push(SecretKey::load(&p).unwrap());
        }
    }
    keys
}

fn seg_file(log: &Path, n: u64) -> PathBuf {
    log.join("segments").join(format!("{n:020}.seg"))
}

/// Rewrites segment `n` of `log`: its last EVENT gets other bytes, links and root are
/// recomputed, and the header is signed by `key` — naming `key` as its signer when `claim`,
/// else keeping the original public key (so only the signature is off).
fn resign(log: &Path, n: u64, key: &SecretKey, claim: bool) {
    let path = seg_file(log, n);
    let bytes = fs::read(&path).unwrap();
    let view = SegmentView::parse(&bytes).unwrap();
    let mut h = view.header;
    let mut entries: Vec<Vec<u8>> = view.entries().map(<[u8]>::to_vec).collect();
    let last = entries.len() - 1;
    entries[last] = Event {
        schema: 1,
        payload: b"rewritten by root with the snapshot",
    }
    .encode();
    let mut link = h.start_link;
    let mut leaves = Vec::new();
    let mut section = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let leaf = leaf_hash(e);
        link = link_hash(&link, h.first_index + i as u64, &leaf);
        leaves.push(leaf);
        section.extend_from_slice(&(e.len() as u32).to_le_bytes());
        section.extend_from_slice(e);
    }
    h.chain_head = link;
    h.merkle_root = merkle::root(&leaves);
    h.entries_len = section.len() as u64;
    if claim {
        h.public_key = key.public();
        h.key_id = key.public().key_id();
    }
    let sig = key.sign(&h.signing_message());
    let mut out = h.encode();
    out.extend_from_slice(&sig);
    out.extend_from_slice(&section);
    fs::write(&path, out).unwrap();
}

/// A log of `before` segments sealed before the snapshot, the snapshot (taken while the next
/// seal is half done: its key is prepared, so the copy holds the current *and* the next key),
/// then `after` more segments.
fn run(dir: &Path, before: u64, after: u64) -> (PathBuf, PathBuf) {
    let mut wr = Writer::new(dir);
    for _ in 0..before {
        wr.seal(3);
    }
    wr.keys.prepare().unwrap();
    let snapshot = dir.join("snapshot");
    copy_dir(&dir.join("keys"), &snapshot.join("keys"));
    copy_dir(&dir.join("log"), &snapshot.join("log"));
    for _ in 0..after {
        wr.seal(3);
    }
    (dir.join("log"), snapshot)
}

#[test]
fn the_live_log_verifies_against_the_identity_key() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = run(dir.path(), 4, 3);
    let r = verify_dir(&log, &anchored()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    assert_eq!(r.segments_ok, 7);
    assert_eq!(
        r.keys.len(),
        1,
        "one key chain, listed under its enrolled first key"
    );
    assert_eq!(r.keys[0].segments, Range::new(0, 6));
    // Without the identity key only internal consistency holds; with a wrong identity the
    // first segment is not anchored.
    let other = VerifyOptions {
        trusted_keys: vec![SecretKey::from_seed([0x2e; 32]).public()],
        known_head: None,
    };
    let r = verify_dir(&log, &other).unwrap();
    assert_eq!(r.findings[0].kind, FindingKind::UnknownKey);
    assert_eq!(r.findings[0].segments, Some(Range::one(0)));
}

#[test]
fn no_segment_sealed_before_the_snapshot_can_be_re_signed_with_it() {
    const BEFORE: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let (log, snapshot) = run(dir.path(), BEFORE, 3);
    let keys = snapshot_keys(&snapshot);
    assert_eq!(
        keys.len(),
        3,
        "the snapshot holds the current and the next sealing key"
    );
    let mut attempts = 0;
    for n in 0..BEFORE {
        for key in &keys {
            for claim in [false, true] {
                let victim = dir.path().join(format!("attempt-{attempts}"));
                copy_dir(&log, &victim);
                resign(&victim, n, key, claim);
                let r = verify_dir(&victim, &anchored()).unwrap();
                assert_eq!(
                    r.outcome,
                    Outcome::IntegrityFailure,
                    "segment {n}: {:#?}",
                    r.findings
                );
                assert!(
                    r.findings
                        .iter()
                        .any(|f| f.segments.is_some_and(|s| s.contains(n))
                            && matches!(
                                f.kind,
                                FindingKind::BadSignature | FindingKind::UnknownKey
                            )),
                    "re-signing segment {n} (claim {claim}) went unnoticed: {:#?}",
                    r.findings
                );
                attempts += 1;
            }
        }
    }
    assert_eq!(attempts, BEFORE * 3 * 2);
}

#[test]
fn rewriting_history_from_genesis_with_the_snapshot_fails() {
    // Root builds a whole new history with the snapshot's keys and even copies the genuine
    // ENROLMENT certificate into it: the certificate names a key root does not have.
    let dir = tempfile::tempdir().unwrap();
    let (log, snapshot) = run(dir.path(), 3, 1);
    let genuine = fs::read(seg_file(&log, 0)).unwrap();
    let view = SegmentView::parse(&genuine).unwrap();
    let cert = view.entries().next().unwrap().to_vec();
    let keys = snapshot_keys(&snapshot);
    let fake = dir.path().join("fake");
    let store = SegmentStore::create(&fake).unwrap();
    let mut w = ChainWriter::new(HOST);
    w.append(&cert).unwrap();
    w.append_event(1, b"a history root prefers").unwrap();
    store
        .write(&w.seal_forward(1, &keys[1], &keys[2].public(), Digest::ZERO))
        .unwrap();
    w.append_event(1, b"more of it").unwrap();
    store
        .write(&w.seal_forward(2, &keys[2], &keys[0].public(), Digest::ZERO))
        .unwrap();
    let r = verify_dir(&fake, &anchored()).unwrap();
    assert_eq!(r.outcome, Outcome::IntegrityFailure);
    assert_eq!(r.findings[0].kind, FindingKind::UnknownKey);
    assert_eq!(r.findings[0].segments, Some(Range::one(0)));
}

#[test]
fn deleting_a_segment_sealed_before_the_snapshot_is_reported() {
    const BEFORE: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = run(dir.path(), BEFORE, 2);
    for n in 0..BEFORE {
        let victim = dir.path().join(format!("del-{n}"));
        copy_dir(&log, &victim);
        fs::remove_file(seg_file(&victim, n)).unwrap();
        let r = verify_dir(&victim, &anchored()).unwrap();
        assert_ne!(
            r.outcome,
            Outcome::Ok,
            "deleting segment {n} went unnoticed"
        );
        assert!(
            r.findings
                .iter()
                .any(|f| f.kind == FindingKind::MissingSegments
                    && f.segments.is_some_and(|s| s.contains(n))),
            "{:#?}",
            r.findings
        );
    }
}

/// The limit, stated honestly: the snapshot's current key can *extend* the log (a forged
/// segment after the last genuine one verifies). Detecting that needs a copy kept elsewhere
/// (collector) or a witness; forward security only protects what was sealed before.
#[test]
fn the_snapshot_can_extend_the_log_which_only_an_outside_copy_reveals() {
    let dir = tempfile::tempdir().unwrap();
    let mut wr = Writer::new(dir.path());
    for _ in 0..3 {
        wr.seal(2);
    }
    let stolen = SecretKey::load(&dir.path().join("keys").join(SEAL_KEY)).unwrap();
    let attacker_next = SecretKey::generate();
    wr.w.append_event(1, b"forged after the genuine end")
        .unwrap();
    let forged =
        wr.w.seal_forward(9, &stolen, &attacker_next.public(), Digest::ZERO);
    wr.store.write(&forged).unwrap();
    let r = verify_dir(&dir.path().join("log"), &anchored()).unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    let _: PublicKey = attacker_next.public();
}

#[test]
fn a_one_time_key_cannot_sign_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut wr = Writer::new(dir.path());
    wr.seal(1);
    let key = SecretKey::load(&dir.path().join("keys").join(SEAL_KEY)).unwrap();
    // Segment 1 commits to `next` as its successor's key ...
    wr.w.append_event(1, b"x").unwrap();
    let seg1 = wr.w.seal_forward(2, &key, &key.public(), Digest::ZERO);
    wr.store.write(&seg1).unwrap();
    // ... and names its own key again: accepted as the key in effect only once.
    wr.w.append_event(1, b"y").unwrap();
    wr.store
        .write(&wr.w.seal_forward(3, &key, &key.public(), Digest::ZERO))
        .unwrap();
    let r = verify_dir(&dir.path().join("log"), &anchored()).unwrap();
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::UnknownKey);
    assert_eq!(r.findings[0].segments, Some(Range::one(2)));
}
