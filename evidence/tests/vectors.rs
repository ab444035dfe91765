//! Test vectors: a small signed log, its expected hashes and a proof, generated
//! deterministically (fixed seeds, fixed times; Ed25519 signatures are deterministic) and
//! committed under `evidence/testdata/v1/`. This test fails if the code no longer produces
//! exactly the committed bytes. Regenerate deliberately with
//! `LINEAGE_REGENERATE_VECTORS=1 cargo test -p lineage-evidence --test vectors -- --test-threads 1`.
//! `evidence/testdata/check_vectors.py` checks the same files with an independent Python
//! implementation of docs/FORMAT.md.
//!
//! A second set, `evidence/testdata/v1-retention/`, is a log whose oldest segments were deleted
//! under a RETENTION entry, with DROPPED entries; it is generated and checked the same way.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use lineage_evidence::digest::{genesis_link, leaf_hash};
use lineage_evidence::entry::{
    AgentStart, AgentStop, ChainPosition, DropReason, Dropped, Heartbeat, Loss, ProgramDigest,
    Retention, RetentionReason, StartReason, StopReason,
};
use lineage_evidence::segment::SegmentView;
use lineage_evidence::verify::FindingKind;
use lineage_evidence::{
    verify_dir, ChainWriter, Digest, HostId, Outcome, Proof, SecretKey, SegmentStore, VerifyOptions,
};

const HOST: HostId = HostId([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);
const T0: u64 = 1_764_000_000_000_000_000;
const PROVE_INDEX: u64 = 9;

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v1")
}

fn testdata_retention() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v1-retention")
}

/// The expected values of the stored segments `numbers`: header, digest, signature, root,
/// head, and per entry its bytes, leaf hash and link.
fn segments_json(
    store: &SegmentStore,
    numbers: std::ops::RangeInclusive<u64>,
) -> serde_json::Value {
    let mut segments = Vec::new();
    for n in numbers {
        let bytes = store.read(n).unwrap();
        let v = SegmentView::parse(&bytes).unwrap();
        let mut link = v.header.start_link;
        let mut entries = Vec::new();
        for (i, e) in v.entries().enumerate() {
            let index = v.header.first_index + i as u64;
            let leaf = leaf_hash(e);
            link = lineage_evidence::digest::link_hash(&link, index, &leaf);
            entries.push(serde_json::json!({
                "index": index,
                "entry_hex": hex::encode(e),
                "leaf_hash": leaf.to_hex(),
                "link": link.to_hex(),
            }));
        }
        segments.push(serde_json::json!({
            "file": format!("log/segments/{n:020}.seg"),
            "segment_number": n,
            "header_hex": hex::encode(v.header_bytes),
            "header_digest": v.header.digest().to_hex(),
            "signature_hex": hex::encode(v.signature),
            "merkle_root": v.header.merkle_root.to_hex(),
            "chain_head": v.header.chain_head.to_hex(),
            "key_id": v.header.key_id.to_string(),
            "entries": entries,
        }));
    }
    serde_json::Value::Array(segments)
}

/// The retention vectors: segments 0..=4 of one chain signed by key0, of which 0 and 1 were
/// deleted under the RETENTION entry in segment 3.
///
/// - segment 0: AGENT_START, EVENT (indices 0–1); segment 1: two EVENTs (2–3) — both deleted
/// - segment 2: DROPPED (storage unavailable, 5 entries), EVENT (4–5)
/// - segment 3: RETENTION (budget, segments 0..=1, end index 4), EVENT (6–7)
/// - segment 4: DROPPED (queue full, 1 entry), AGENT_STOP (8–9)
fn generate_retention(out: &Path) {
    let key0 = SecretKey::from_seed([0x01; 32]);
    let store = SegmentStore::create(&out.join("log")).unwrap();
    let mut w = ChainWriter::new(HOST);
    let start = AgentStart {
        reason: StartReason::FirstStart,
        config_digest: Digest(*blake3::hash(b"example config").as_bytes()),
        last_durable: ChainPosition {
            next_index: 0,
            head: genesis_link(&HOST),
        },
        agent_version: "0.1.0".into(),
        programs: vec![],
    };
    w.append_with(|b| start.encode_into(b).unwrap()).unwrap();
    w.append_event(1, b"{\"type\":\"exec\",\"pid\":100}")
        .unwrap();
    let s0 = w.seal(T0 + 1_000_000_000, &key0);
    w.append_event(1, b"{\"type\":\"fork\",\"pid\":101}")
        .unwrap();
    w.append_event(1, b"{\"type\":\"exit\",\"pid\":101}")
        .unwrap();
    let s1 = w.seal(T0 + 2_000_000_000, &key0);
    for s in [&s0, &s1] {
        store.write(s).unwrap();
    }

    w.append_with(|b| {
        Dropped {
            reason: DropReason::StorageUnavailable,
            count: 5,
            first_time_ns: 42_000_000_000,
            last_time_ns: 42_500_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    w.append_event(1, b"{\"type\":\"exec\",\"pid\":102}")
        .unwrap();
    store.write(&w.seal(T0 + 3_000_000_000, &key0)).unwrap();

    let retention = Retention {
        reason: RetentionReason::Budget,
        last_deleted_segment: 1,
        end_index: s1.header.end_index(),
        deleted_bytes: (s0.to_bytes().len() + s1.to_bytes().len()) as u64,
        deleted_segments: 2,
        last_deleted_header_digest: s1.header.digest(),
    };
    w.append_with(|b| retention.encode_into(b)).unwrap();
    w.append_event(1, b"{\"type\":\"exit\",\"pid\":102}")
        .unwrap();
    store.write(&w.seal(T0 + 4_000_000_000, &key0)).unwrap();
    // The agent deletes only after the RETENTION entry is durably sealed.
    fs::remove_file(store.path(0)).unwrap();
    fs::remove_file(store.path(1)).unwrap();

    w.append_with(|b| {
        Dropped {
            reason: DropReason::QueueFull,
            count: 1,
            first_time_ns: 44_000_000_000,
            last_time_ns: 44_000_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    w.append_with(|b| {
        AgentStop {
            reason: StopReason::Requested,
            time_ns: T0 + 4_900_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(T0 + 5_000_000_000, &key0)).unwrap();
    key0.public().save(&out.join("key0.pub")).unwrap();

    let expected = serde_json::json!({
        "host_id": HOST.to_hex(),
        "keys": {"key0": {
            "seed_hex": hex::encode([1u8; 32]),
            "public_hex": key0.public().to_string(),
            "key_id": key0.public().key_id().to_string(),
        }},
        "deleted": [
            {"segment_number": 0, "header_digest": s0.header.digest().to_hex(), "end_index": s0.header.end_index()},
            {"segment_number": 1, "header_digest": s1.header.digest().to_hex(), "end_index": s1.header.end_index()},
        ],
        "segments": segments_json(&store, 2..=4),
        "verify": {
            "trusted_keys": ["key0"],
            "outcome": "declared_loss_only",
            "findings": [
                {"kind": "DECLARED_LOSS", "segment": 2, "entry": 4, "reason": "storage_unavailable", "count": 5},
                {"kind": "DECLARED_LOSS", "segment": 4, "entry": 8, "reason": "queue_full", "count": 1},
            ],
            "retention": {
                "declared_at": 6,
                "declared_in_segment": 3,
                "reason": "budget",
                "last_deleted_segment": 1,
                "end_index": 4,
                "deleted_bytes": retention.deleted_bytes,
                "deleted_segments": 2,
                "absent_segments": [0, 1],
            },
        },
    });
    fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

/// Writes the vectors into `out` and returns nothing; all content is derived from constants.
fn generate(out: &Path) {
    let key0 = SecretKey::from_seed([0x01; 32]);
    let key1 = SecretKey::from_seed([0x02; 32]);
    let store = SegmentStore::create(&out.join("log")).unwrap();
    let mut w = ChainWriter::new(HOST);

    // Segment 0: AGENT_START, two EVENTs, a HEARTBEAT.
    let start = AgentStart {
        reason: StartReason::FirstStart,
        config_digest: Digest(*blake3::hash(b"example config").as_bytes()),
        last_durable: ChainPosition {
            next_index: 0,
            head: genesis_link(&HOST),
        },
        agent_version: "0.1.0".into(),
        programs: vec![
            ProgramDigest {
                name: "sched_process_exec".into(),
                digest: Digest(*blake3::hash(b"exec program").as_bytes()),
            },
            ProgramDigest {
                name: "sched_process_fork".into(),
                digest: Digest(*blake3::hash(b"fork program").as_bytes()),
            },
        ],
    };
    w.append_with(|b| start.encode_into(b).unwrap()).unwrap();
    w.append_event(1, b"exec pid=100 /usr/bin/true").unwrap();
    w.append_event(1, b"exit pid=100 code=0").unwrap();
    w.append_with(|b| {
        Heartbeat {
            wall_time_ns: T0 + 500_000_000,
            monotonic_ns: 42_000_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(T0 + 1_000_000_000, &key0)).unwrap();

    // Segment 1: nothing happened; an empty seal makes the silence visible.
    store.write(&w.seal(T0 + 2_000_000_000, &key0)).unwrap();

    // Segment 2: a declared loss, an event, and a key rotation (still sealed by key0).
    let loss = Loss {
        cpu: 1,
        flags: 0,
        first_seq: 100,
        last_seq: 102,
        counter_delta: 3,
        counter_total: 3,
    };
    w.append_with(|b| loss.encode_into(b)).unwrap();
    w.append_event(1, b"fork parent=1 child=101").unwrap();
    w.append_key_rotation(&key0, &key1.public()).unwrap();
    store.write(&w.seal(T0 + 3_000_000_000, &key0)).unwrap();

    // Segment 3: five events and AGENT_STOP, sealed by key1.
    for i in 0..5 {
        w.append_event(1, format!("exec pid={} /bin/sh", 200 + i).as_bytes())
            .unwrap();
    }
    w.append_with(|b| {
        AgentStop {
            reason: StopReason::Requested,
            time_ns: T0 + 3_900_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(T0 + 4_000_000_000, &key1)).unwrap();

    key0.public().save(&out.join("key0.pub")).unwrap();
    key1.public().save(&out.join("key1.pub")).unwrap();

    // Expected values, for third-party implementations to compare step by step.
    let segments = segments_json(&store, 0..=3);
    let bytes = store.read(3).unwrap();
    let proof = Proof::build(&SegmentView::parse(&bytes).unwrap(), PROVE_INDEX).unwrap();
    fs::write(
        out.join(format!("entry-{PROVE_INDEX}.proof")),
        proof.to_bytes(),
    )
    .unwrap();
    let mut keys = BTreeMap::new();
    for (name, k) in [("key0", &key0), ("key1", &key1)] {
        keys.insert(
            name,
            serde_json::json!({
                "seed_hex": hex::encode([if name == "key0" { 1u8 } else { 2u8 }; 32]),
                "public_hex": k.public().to_string(),
                "key_id": k.public().key_id().to_string(),
            }),
        );
    }
    let expected = serde_json::json!({
        "host_id": HOST.to_hex(),
        "genesis_link": genesis_link(&HOST).to_hex(),
        "empty_tree_hash": lineage_evidence::digest::empty_tree_hash().to_hex(),
        "keys": keys,
        "segments": segments,
        "proof": {
            "file": format!("entry-{PROVE_INDEX}.proof"),
            "index": PROVE_INDEX,
            "path": proof.path.iter().map(|d| d.to_hex()).collect::<Vec<_>>(),
        },
        "verify": {
            "trusted_keys": ["key0"],
            "outcome": "declared_loss_only",
            "findings": [{"kind": "DECLARED_LOSS", "segment": 2, "entry": 4, "cpu": 1, "sequences": [100, 102]}],
        },
    });
    fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

fn testdata_v2() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/v2")
}

/// Format version 2 (forward-secure sealing): identity = seed `03`×32, sealing key of segment n
/// = seed `10+n`×32 (the agent draws them at random; fixed here for reproducibility).
///
/// - segment 0: AGENT_START, ENROLMENT (identity certifies key 0), EVENT (indices 0–2)
/// - segment 1: FILTER POLICY, EVENT (3–4); its header carries the policy digest
/// - segment 2: empty (a heartbeat seal)
/// - segment 3: EVENT, AGENT_STOP (5–6)
fn generate_v2(out: &Path) {
    let identity = SecretKey::from_seed([0x03; 32]);
    let key = |n: u8| SecretKey::from_seed([0x10 + n; 32]);
    let store = SegmentStore::create(&out.join("log")).unwrap();
    let mut w = ChainWriter::new(HOST);
    let cert = lineage_evidence::entry::Enrolment::sign(&HOST, &identity, &key(0).public());
    let start = AgentStart {
        reason: StartReason::FirstStart,
        config_digest: Digest(*blake3::hash(b"example config").as_bytes()),
        last_durable: ChainPosition {
            next_index: 0,
            head: genesis_link(&HOST),
        },
        agent_version: "0.1.0".into(),
        programs: vec![],
    };
    w.append_with(|b| start.encode_into(b).unwrap()).unwrap();
    w.append_with(|b| cert.encode_into(b)).unwrap();
    w.append_event(1, b"exec pid=100 /usr/bin/true").unwrap();
    let none = Digest::ZERO;
    store
        .write(&w.seal_forward(T0 + 1_000_000_000, &key(0), &key(1).public(), none))
        .unwrap();
    let policy = lineage_evidence::entry::Filter::policy("[filter]\nkinds = [\"exec\"]\n");
    let lineage_evidence::entry::Filter::Policy { policy_digest, .. } = &policy else {
        unreachable!()
    };
    let policy_digest = *policy_digest;
    w.append_with(|b| policy.encode_into(b)).unwrap();
    w.append_event(1, b"exec pid=101 /bin/ls").unwrap();
    store
        .write(&w.seal_forward(T0 + 2_000_000_000, &key(1), &key(2).public(), policy_digest))
        .unwrap();
    store
        .write(&w.seal_forward(T0 + 3_000_000_000, &key(2), &key(3).public(), policy_digest))
        .unwrap();
    w.append_event(1, b"exit pid=101 code=0").unwrap();
    w.append_with(|b| {
        AgentStop {
            reason: StopReason::Requested,
            time_ns: T0 + 3_900_000_000,
        }
        .encode_into(b)
    })
    .unwrap();
    store
        .write(&w.seal_forward(T0 + 4_000_000_000, &key(3), &key(4).public(), policy_digest))
        .unwrap();
    identity.public().save(&out.join("identity.pub")).unwrap();
    let sealing: Vec<_> = (0..5u8)
        .map(|n| {
            serde_json::json!({
                "seed_hex": hex::encode([0x10 + n; 32]),
                "public_hex": key(n).public().to_string(),
            })
        })
        .collect();
    let expected = serde_json::json!({
        "host_id": HOST.to_hex(),
        "identity": {
            "seed_hex": hex::encode([3u8; 32]),
            "public_hex": identity.public().to_string(),
            "key_id": identity.public().key_id().to_string(),
        },
        "sealing_keys": sealing,
        "policy_digest": policy_digest.to_hex(),
        "segments": segments_json(&store, 0..=3),
        "verify": {"trusted_keys": ["identity"], "outcome": "ok", "findings": []},
    });
    fs::write(
        out.join("expected.json"),
        serde_json::to_string_pretty(&expected).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn committed_v2_vectors_match_the_generator() {
    check_generator(generate_v2, &testdata_v2());
}

#[test]
fn committed_v2_vectors_verify_against_the_identity_only() {
    let id = lineage_evidence::PublicKey::load_file(&testdata_v2().join("identity.pub")).unwrap();
    let r = verify_dir(
        &testdata_v2().join("log"),
        &VerifyOptions {
            trusted_keys: id,
            known_head: None,
        },
    )
    .unwrap();
    assert_eq!(r.outcome, Outcome::Ok, "{:#?}", r.findings);
    assert_eq!(r.segments_ok, 4);
    assert_eq!(r.entry_kinds.get("ENROLMENT"), Some(&1));
}

fn testdata_strict() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ed25519-strict")
}

/// Strict Ed25519 vectors (FORMAT.md §2.1): which signatures a verifier must accept and which
/// it must refuse although the RFC 8032 equation holds for some of them.
fn generate_strict(out: &Path) {
    let key0 = SecretKey::from_seed([0x01; 32]);
    let mut identity = [0u8; 32];
    identity[0] = 1;
    // A v1 header that names the identity point as its key: the forgery below "signs" it.
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"forged").unwrap();
    let mut header = w.seal(T0, &key0).header;
    header.public_key = lineage_evidence::PublicKey::from_bytes(identity);
    header.key_id = header.public_key.key_id();
    let forged_msg = header.signing_message();
    let mut forgery = [0u8; 64];
    forgery[..32].copy_from_slice(&identity);

    let msg = b"lineage strict verification vector".to_vec();
    let good = key0.sign(&msg);
    // S + L, the group order: same signature, non-canonical scalar.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut s_plus_l = good;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = s_plus_l[32 + i] as u16 + L[i] as u16 + carry;
        s_plus_l[32 + i] = v as u8;
        carry = v >> 8;
    }
    // (0, -1), the point of order 2, as the key with the identity forgery.
    let mut order2 = [0xffu8; 32];
    order2[0] = 0xec;
    order2[31] = 0x7f;
    // A non-canonical encoding of the identity: y = p + 1.
    let mut y_p1 = [0xffu8; 32];
    y_p1[0] = 0xee;
    y_p1[31] = 0x7f;
    let case = |name: &str, pk: &[u8; 32], m: &[u8], sig: &[u8; 64]| {
        let valid = lineage_evidence::PublicKey::from_bytes(*pk).verify(m, sig);
        serde_json::json!({
            "name": name,
            "public_hex": hex::encode(pk),
            "message_hex": hex::encode(m),
            "signature_hex": hex::encode(sig),
            "valid": valid,
        })
    };
    let mut y_p1_sig = forgery;
    y_p1_sig[..32].copy_from_slice(&y_p1);
    let cases = vec![
        case("valid", key0.public().as_bytes(), &msg, &good),
        case(
            "small-order forgery A=R=identity S=0 over a segment header",
            &identity,
            &forged_msg,
            &forgery,
        ),
        case(
            "small-order forgery A=R=identity S=0",
            &identity,
            &msg,
            &forgery,
        ),
        case("key of order 2, R=identity, S=0", &order2, &msg, &forgery),
        case(
            "non-canonical S (S + L)",
            key0.public().as_bytes(),
            &msg,
            &s_plus_l,
        ),
        case(
            "non-canonical A and R (y = p + 1, the identity)",
            &y_p1,
            &msg,
            &y_p1_sig,
        ),
    ];
    fs::create_dir_all(out).unwrap();
    fs::write(
        out.join("cases.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "cases": cases })).unwrap() + "\n",
    )
    .unwrap();
}

#[test]
fn committed_strict_vectors_match_the_generator() {
    check_generator(generate_strict, &testdata_strict());
    let text = fs::read_to_string(testdata_strict().join("cases.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let valid: Vec<bool> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["valid"].as_bool().unwrap())
        .collect();
    assert_eq!(valid, [true, false, false, false, false, false]);
}

/// A segment "signed" with the small-order forgery is BAD_SIGNATURE, not a valid segment of
/// an attacker-chosen key.
#[test]
fn a_small_order_forged_segment_is_a_bad_signature() {
    let dir = tempfile::tempdir().unwrap();
    let store = SegmentStore::create(dir.path()).unwrap();
    let mut w = ChainWriter::new(HOST);
    w.append_event(1, b"forged").unwrap();
    let mut seg = w.seal(T0, &SecretKey::from_seed([1; 32]));
    let mut identity = [0u8; 32];
    identity[0] = 1;
    seg.header.public_key = lineage_evidence::PublicKey::from_bytes(identity);
    seg.header.key_id = seg.header.public_key.key_id();
    seg.signature = [0; 64];
    seg.signature[..32].copy_from_slice(&identity);
    store.write(&seg).unwrap();
    let r = verify_dir(dir.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    assert_eq!(r.findings[0].kind, FindingKind::BadSignature);
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}

/// Generates into a temp dir with `generate` and compares with `committed` byte for byte
/// (after rewriting `committed` when `LINEAGE_REGENERATE_VECTORS` is set).
fn check_generator(generate: fn(&Path), committed: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    generate(tmp.path());
    if std::env::var_os("LINEAGE_REGENERATE_VECTORS").is_some() {
        let _ = fs::remove_dir_all(committed);
        fs::create_dir_all(committed).unwrap();
        for f in all_files(tmp.path()) {
            let dst = committed.join(&f);
            fs::create_dir_all(dst.parent().unwrap()).unwrap();
            fs::copy(tmp.path().join(&f), dst).unwrap();
        }
    }
    let generated = all_files(tmp.path());
    assert_eq!(
        generated,
        all_files(committed),
        "the set of vector files changed"
    );
    for f in generated {
        assert!(
            fs::read(tmp.path().join(&f)).unwrap() == fs::read(committed.join(&f)).unwrap(),
            "{} no longer matches the committed vector: the format changed. If that is \
             intended, bump the format version, regenerate and update docs/FORMAT.md",
            f.display()
        );
    }
}

#[test]
fn committed_vectors_match_the_generator() {
    check_generator(generate, &testdata());
}

#[test]
fn committed_retention_vectors_match_the_generator() {
    check_generator(generate_retention, &testdata_retention());
}

#[test]
fn committed_retention_vectors_verify() {
    let key0 =
        lineage_evidence::PublicKey::load_file(&testdata_retention().join("key0.pub")).unwrap();
    let opts = VerifyOptions {
        trusted_keys: key0,
        known_head: None,
    };
    let r = verify_dir(&testdata_retention().join("log"), &opts).unwrap();
    assert_eq!(r.outcome, Outcome::DeclaredLossOnly, "{:#?}", r.findings);
    let found: Vec<_> = r
        .findings
        .iter()
        .map(|f| (f.kind, f.segments.unwrap().first, f.entries.unwrap().first))
        .collect();
    assert_eq!(
        found,
        vec![
            (FindingKind::DeclaredLoss, 2, 4),
            (FindingKind::DeclaredLoss, 4, 8)
        ]
    );
    let s = r.retention.unwrap();
    assert_eq!((s.declared_at, s.declared_in_segment), (6, 3));
    assert_eq!(s.absent, vec![lineage_evidence::verify::Range::new(0, 1)]);
    assert_eq!(r.head.unwrap().next_index, 10);
}

#[test]
fn committed_vectors_verify() {
    let key0 = lineage_evidence::PublicKey::load_file(&testdata().join("key0.pub")).unwrap();
    let opts = VerifyOptions {
        trusted_keys: key0.clone(),
        known_head: None,
    };
    let r = verify_dir(&testdata().join("log"), &opts).unwrap();
    assert_eq!(r.outcome, Outcome::DeclaredLossOnly, "{:#?}", r.findings);
    assert_eq!(r.findings.len(), 1);
    assert_eq!(r.findings[0].kind, FindingKind::DeclaredLoss);
    assert_eq!(r.keys.len(), 2, "the rotation to key1 was followed");

    let key1 = lineage_evidence::PublicKey::load_file(&testdata().join("key1.pub")).unwrap();
    let proof = Proof::parse(&fs::read(testdata().join("entry-9.proof")).unwrap()).unwrap();
    proof.verify(&key1[0]).unwrap();
    assert!(proof.verify(&key0[0]).is_err());
}

/// Set to `1` to make a missing Python checker a test failure instead of a skip (`cargo xtask
/// test` installs the packages and sets it).
const REQUIRE_PYTHON: &str = "LINEAGE_REQUIRE_PYTHON_VECTORS";

/// Why the Python checker cannot run here, if it cannot.
fn python_checker_unavailable() -> Option<String> {
    match std::process::Command::new("python3")
        .args(["-c", "import blake3, cryptography"])
        .output()
    {
        Err(e) => Some(format!("python3 could not be started ({e})")),
        Ok(o) if !o.status.success() => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err.lines().last().unwrap_or("").trim().to_owned();
            Some(format!(
                "python3 cannot import blake3 and cryptography ({last}); install them with \
                 `python3 -m pip install blake3 cryptography`"
            ))
        }
        Ok(_) => None,
    }
}

/// Runs the independent Python implementation over the committed vectors. Without Python and
/// its packages the test is skipped with a loud `SKIPPED:` line on stderr, unless
/// `LINEAGE_REQUIRE_PYTHON_VECTORS=1`, which makes it fail.
#[test]
fn independent_python_checker_agrees() {
    if let Some(why) = python_checker_unavailable() {
        let required = std::env::var(REQUIRE_PYTHON).is_ok_and(|v| v.trim() == "1");
        assert!(
            !required,
            "{REQUIRE_PYTHON}=1 but the independent Python vector checker cannot run: {why}"
        );
        // Straight to the process's stderr: the test harness captures `eprintln!` of passing
        // tests, and this line must be seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: independent_python_checker_agrees: the independent Python check of the \
             test vectors did NOT run: {why}. Set {REQUIRE_PYTHON}=1 to make this a failure."
        );
        return;
    }
    let script = testdata().parent().unwrap().join("check_vectors.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{}", String::from_utf8_lossy(&out.stdout));
}
