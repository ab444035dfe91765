//! End-to-end tests of the `lineagectl` binary: exit codes, JSON output, proofs, keys.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use lineage_evidence::entry::{DropReason, Dropped, Loss, Retention, RetentionReason};
use lineage_evidence::{ChainWriter, HostId, SecretKey, SegmentStore};

fn lineagectl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lineagectl"))
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A 4-segment log signed with the key at `<dir>/k.key`; returns the public key path.
fn make_log(dir: &Path, loss: Option<Loss>) -> String {
    let o = lineagectl(&["keygen", "--out", dir.join("k").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    let key = SecretKey::load(&dir.join("k.key")).unwrap();
    let store = SegmentStore::create(&dir.join("log")).unwrap();
    let mut w = ChainWriter::new(HostId([5; 16]));
    for s in 0..4u64 {
        for i in 0..5u8 {
            w.append_event(1, &[i; 300]).unwrap();
        }
        if let (Some(l), 2) = (loss, s) {
            w.append_with(|b| l.encode_into(b)).unwrap();
        }
        store.write(&w.seal(s, &key)).unwrap();
    }
    dir.join("k.pub").to_str().unwrap().to_owned()
}

#[test]
fn exit_codes_distinguish_the_outcomes() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();

    let ok = lineagectl(&["verify", log, "--key", &key]);
    assert_eq!(code(&ok), 0, "{}", stdout(&ok));
    assert!(stdout(&ok).contains("anchored in the supplied key"));

    let unanchored = lineagectl(&["verify", log]);
    assert_eq!(code(&unanchored), 0);
    assert!(stdout(&unanchored).contains("internal consistency only"));

    // Completeness: a middle segment deleted.
    let seg1 = tmp.path().join("log/segments/00000000000000000001.seg");
    let saved = fs::read(&seg1).unwrap();
    fs::remove_file(&seg1).unwrap();
    let o = lineagectl(&["verify", log, "--key", &key]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(stdout(&o).contains("MISSING_SEGMENTS segment 1 entries 5..=9"));
    fs::write(&seg1, &saved).unwrap();

    // Integrity: one byte changed.
    let mut bad = saved.clone();
    *bad.last_mut().unwrap() ^= 1;
    fs::write(&seg1, &bad).unwrap();
    let o = lineagectl(&["verify", log, "--key", &key, "--json"]);
    assert_eq!(code(&o), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["outcome"], "integrity_failure");
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["findings"][0]["kind"], "MODIFIED");
    assert_eq!(v["findings"][0]["segments"]["first"], 1);
    fs::write(&seg1, &saved).unwrap();

    // A foreign trusted key: every segment is UNKNOWN_KEY.
    let other = SecretKey::from_seed([9; 32]).public().to_string();
    let o = lineagectl(&["verify", log, "--key", &other]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).contains("UNKNOWN_KEY"));

    // Usage and I/O errors.
    assert_eq!(code(&lineagectl(&["verify"])), 4);
    assert_eq!(code(&lineagectl(&["verify", "/nonexistent/dir"])), 4);
    assert_eq!(code(&lineagectl(&["verify", log, "--key", "not-a-key"])), 4);
    assert_eq!(code(&lineagectl(&["verify", log, "--head", "bogus"])), 4);
    assert_eq!(code(&lineagectl(&["--help"])), 0);
}

#[test]
fn head_then_truncation() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    let log = tmp.path().join("log");
    let log = log.to_str().unwrap();
    let o = lineagectl(&["head", log, "--key", &key]);
    assert_eq!(code(&o), 0);
    let text = stdout(&o);
    let heads: Vec<&str> = text.lines().collect();
    assert!(heads[0].starts_with("segment:3:"), "{text}");
    assert!(heads[1].starts_with("entry:19:"), "{text}");
    fs::remove_file(tmp.path().join("log/segments/00000000000000000003.seg")).unwrap();
    for head in &heads {
        let o = lineagectl(&["verify", log, "--key", &key, "--head", head]);
        assert_eq!(code(&o), 2, "{}", stdout(&o));
        assert!(stdout(&o).contains("TRUNCATED"));
    }
}

#[test]
fn declared_loss_only() {
    let tmp = tempfile::tempdir().unwrap();
    let loss = Loss {
        cpu: 0,
        flags: 0,
        first_seq: 7,
        last_seq: 8,
        counter_delta: 2,
        counter_total: 2,
    };
    let key = make_log(tmp.path(), Some(loss));
    let o = lineagectl(&[
        "verify",
        tmp.path().join("log").to_str().unwrap(),
        "--key",
        &key,
    ]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(stdout(&o).contains("DECLARED_LOSS segment 2 entry 15 cpu 0 seq 7..=8"));
}

#[test]
fn prove_and_verify_proof() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    let proof = tmp.path().join("p.proof");
    let o = lineagectl(&[
        "prove",
        "--entry",
        "12",
        tmp.path().join("log").to_str().unwrap(),
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    // 5 entries per segment: the path holds ceil(log2 5) = 3 hashes at most.
    let len = fs::metadata(&proof).unwrap().len();
    assert!(len <= 337 + 306 + 3 * 32, "{len}");

    let o = lineagectl(&[
        "verify-proof",
        proof.to_str().unwrap(),
        "--key",
        &key,
        "--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["index"], 12);
    assert_eq!(v["segment"], 2);
    assert_eq!(v["entry_kind"], "EVENT");

    let other = SecretKey::from_seed([9; 32]).public().to_string();
    let o = lineagectl(&["verify-proof", proof.to_str().unwrap(), "--key", &other]);
    assert_eq!(code(&o), 1);

    let mut bytes = fs::read(&proof).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 1;
    fs::write(&proof, &bytes).unwrap();
    let o = lineagectl(&["verify-proof", proof.to_str().unwrap(), "--key", &key]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).starts_with("INVALID"));

    let o = lineagectl(&[
        "prove",
        "--entry",
        "999",
        tmp.path().join("log").to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4);
}

#[test]
fn keygen_refuses_to_overwrite_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("k");
    assert_eq!(
        code(&lineagectl(&["keygen", "--out", out.to_str().unwrap()])),
        0
    );
    let mode = fs::metadata(tmp.path().join("k.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        code(&lineagectl(&["keygen", "--out", out.to_str().unwrap()])),
        4
    );
}

#[test]
fn dropped_entries_are_declared_loss_only() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    let k = SecretKey::load(&tmp.path().join("k.key")).unwrap();
    let store = SegmentStore::create(&tmp.path().join("log")).unwrap();
    let mut w = ChainWriter::resume(&store, HostId([5; 16])).unwrap();
    w.append_with(|b| {
        Dropped {
            reason: DropReason::StorageUnavailable,
            count: 12,
            first_time_ns: 1,
            last_time_ns: 2,
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(9, &k)).unwrap();
    let log = tmp.path().join("log");
    let o = lineagectl(&["verify", log.to_str().unwrap(), "--key", &key]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("DECLARED_LOSS segment 4 entry 20"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("DECLARED LOSS ONLY (exit 3)"));
    let o = lineagectl(&["verify", log.to_str().unwrap(), "--key", &key, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["outcome"], "declared_loss_only");
    assert_eq!(v["findings"][0]["kind"], "DECLARED_LOSS");
    assert_eq!(v["entry_kinds"]["DROPPED"], 1);
}

#[test]
fn pruned_prefix_under_retention_verifies_and_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    let k = SecretKey::load(&tmp.path().join("k.key")).unwrap();
    let log = tmp.path().join("log");
    let store = SegmentStore::create(&log).unwrap();
    let s1 = lineage_evidence::SegmentView::parse(&store.read(1).unwrap())
        .unwrap()
        .header;
    let mut w = ChainWriter::resume(&store, HostId([5; 16])).unwrap();
    w.append_with(|b| {
        Retention {
            reason: RetentionReason::Budget,
            last_deleted_segment: 1,
            end_index: s1.end_index(),
            deleted_bytes: 4096,
            deleted_segments: 2,
            last_deleted_header_digest: s1.digest(),
        }
        .encode_into(b)
    })
    .unwrap();
    store.write(&w.seal(9, &k)).unwrap();
    for n in 0..=1 {
        fs::remove_file(store.path(n)).unwrap();
    }
    let dir = log.to_str().unwrap();
    let o = lineagectl(&["verify", dir, "--key", &key]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("Segment(s) 0..=1 were deleted by retention"),
        "{}",
        stdout(&o)
    );
    let o = lineagectl(&["verify", dir, "--key", &key, "--json"]);
    assert_eq!(code(&o), 0);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["retention"]["declared_at"], 20);
    assert_eq!(v["retention"]["declared_segments"]["last"], 1);
    assert_eq!(v["retention"]["declared_entries"]["last"], 9);
    assert_eq!(v["retention"]["absent"][0]["first"], 0);
    assert_eq!(v["findings"].as_array().unwrap().len(), 0);

    // One segment more than declared is missing, and says which.
    fs::remove_file(store.path(2)).unwrap();
    let o = lineagectl(&["verify", dir, "--key", &key]);
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    assert!(
        stdout(&o).contains("MISSING_SEGMENTS segment 2 entries 10..=14"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn collector_store_host_dirs_are_logs_and_the_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = make_log(tmp.path(), None);
    // A collector's filesystem layout: <root>/<host id hex>/segments/…, beside other objects.
    let root = tmp.path().join("store");
    let host = root.join(HostId([5; 16]).to_string());
    fs::create_dir_all(&host).unwrap();
    fs::rename(tmp.path().join("log/segments"), host.join("segments")).unwrap();
    fs::create_dir_all(host.join("witness")).unwrap();
    fs::write(host.join("state.json"), b"{}").unwrap();
    fs::write(root.join("witness.pub"), b"x").unwrap();
    fs::create_dir_all(root.join(HostId([6; 16]).to_string()).join("segments")).unwrap();
    let (root, host) = (root.to_str().unwrap(), host.to_str().unwrap());

    let o = lineagectl(&["verify", host, "--key", &key]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    let o = lineagectl(&["prove", "--entry", "3", host, "--out"]);
    assert_eq!(code(&o), 4, "--out needs a value");
    let proof = tmp.path().join("e.proof");
    let o = lineagectl(&[
        "prove",
        "--entry",
        "3",
        host,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));

    for args in [
        vec!["verify", root, "--key", &key],
        vec!["head", root],
        vec!["prove", "--entry", "3", root],
        vec!["entries", root],
        vec!["tree", "0a0b0c0d-1-2", "--store", root],
    ] {
        let o = lineagectl(&args);
        assert_eq!(code(&o), 4, "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("is a collector store holding 2 host(s)") && err.contains(host),
            "{args:?}: {err}"
        );
    }
}
