//! Issue 13's acceptance for forward-secure sealing, against the real agent: enrol a data
//! directory under an identity key kept outside it, let the agent seal, copy the whole data
//! directory (keys included) while it runs, let it go on, then rewrite, re-sign and delete
//! every segment sealed before the copy with everything the copy holds. `lineagectl verify`
//! anchored at the identity key must report each attempt.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lineage_evidence::{
    chain::ChainState, entry::Event, segment::SegmentView, ChainWriter, SecretKey,
};
use lineage_tests::{lineagectl_binary, run_to_end, verify_with_key, Agent};

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            copy_dir(&e.path(), &dst);
        } else if t.is_file() {
            // A file may vanish between listing and copying (a seal in progress).
            let _ = fs::copy(e.path(), dst);
        }
    }
}

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<_> = fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let n = p.file_stem()?.to_str()?.parse().ok()?;
            (p.extension()? == "seg").then_some((n, p))
        })
        .collect();
    v.sort();
    v
}

fn lineagectl(args: &[&str]) {
    let out = Command::new(lineagectl_binary())
        .args(args)
        .output()
        .expect("running lineagectl");
    assert!(
        out.status.success(),
        "lineagectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Re-seals segment `path` from its own chain position with `key`: same entries except the
/// last, which becomes a different EVENT; same committed next key and policy digest.
fn resign_with(path: &Path, key: &SecretKey) {
    let bytes = fs::read(path).unwrap();
    let v = SegmentView::parse(&bytes).unwrap();
    let h = v.header;
    let seal = h.seal.expect("the agent writes format version 2");
    let mut w = ChainWriter::from_state(ChainState {
        host_id: h.host_id,
        next_index: h.first_index,
        head: h.start_link,
        next_segment: h.segment_number,
        prev_header_digest: h.prev_header_digest,
    });
    let entries: Vec<&[u8]> = v.entries().collect();
    for e in &entries[..entries.len().saturating_sub(1)] {
        w.append(e).unwrap();
    }
    w.append(
        &Event {
            schema: 1,
            payload: b"{\"kind\":\"exec\",\"rewritten\":true}",
        }
        .encode(),
    )
    .unwrap();
    let forged = w.seal_forward(
        h.seal_time_ns,
        key,
        &seal.next_public_key,
        seal.policy_digest,
    );
    fs::write(path, forged.to_bytes()).unwrap();
}

fn storm(n: usize) {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    run_to_end(Command::new("sh").args(["-c", &script]));
}

#[test]
fn a_copy_of_the_running_agent_cannot_rewrite_what_was_sealed_before_it() {
    let work = tempfile::tempdir().unwrap();
    let id = work.path().join("identity");
    let data = work.path().join("data");
    lineagectl(&["keygen", "--out", id.to_str().unwrap()]);
    let host = format!("{:032x}", u128::from(std::process::id()) << 64 | 0x1d);
    lineagectl(&[
        "enrol",
        "--identity-key",
        id.with_extension("key").to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--host-id",
        &host,
    ]);
    let identity_secret = fs::read(id.with_extension("key")).unwrap();
    let cfg = work.path().join("agent.toml");
    fs::write(
        &cfg,
        "[evidence]\nseal_interval_ms = 150\nheartbeat_interval_ms = 300\n",
    )
    .unwrap();
    let agent = Agent::start_in(
        &data,
        &["--print", "none", "--config", cfg.to_str().unwrap()],
    );
    for _ in 0..4 {
        storm(20);
        std::thread::sleep(Duration::from_millis(400));
    }
    // Time T: root copies everything the agent has on disk.
    let snapshot = work.path().join("snapshot");
    copy_dir(&data, &snapshot);
    for _ in 0..4 {
        storm(20);
        std::thread::sleep(Duration::from_millis(400));
    }
    let run = agent.stop();
    let id_pub = id.with_extension("pub");
    let (code, report) = verify_with_key(&run.data_dir, &id_pub);
    assert!(
        code == 0 || code == 3,
        "the genuine log verifies: {report:#}"
    );
    assert_eq!(report["trust"], "anchored");

    // What the copy holds: sealing keys, never the identity.
    let mut stolen = Vec::new();
    for e in fs::read_dir(snapshot.join("keys")).unwrap() {
        let p = e.unwrap().path();
        assert_ne!(fs::read(&p).unwrap(), identity_secret, "{}", p.display());
        if let Ok(k) = SecretKey::load(&p) {
            stolen.push(k);
        }
    }
    assert!(
        !stolen.is_empty(),
        "the copy holds the agent's current sealing key"
    );
    stolen.push(SecretKey::generate());
    // The copy is not atomic: it may catch one seal in flight, its segment already written
    // and its key not yet erased (FORMAT.md §8.1: a seal completes when the key is gone).
    // Every other segment in the copy was completed before it, and no key in the copy signed
    // any of them.
    let mut sealed_before = Vec::new();
    let mut in_flight = Vec::new();
    for (n, p) in segments(&snapshot) {
        let h = SegmentView::parse(&fs::read(&p).unwrap()).unwrap().header;
        if stolen.iter().any(|k| k.public() == h.public_key) {
            in_flight.push(n);
        } else {
            sealed_before.push(n);
        }
    }
    assert!(
        in_flight.len() <= 1
            && in_flight
                .iter()
                .all(|&n| sealed_before.iter().all(|&m| m < n)),
        "only the newest segment's seal can be in flight: {in_flight:?} of {sealed_before:?}"
    );
    assert!(
        sealed_before.len() >= 3,
        "several segments were sealed before the copy: {sealed_before:?}"
    );

    let mut attempts = 0;
    for &n in &sealed_before {
        for key in &stolen {
            let victim = work.path().join(format!("victim-{attempts}"));
            copy_dir(&run.data_dir, &victim);
            resign_with(&victim.join(format!("segments/{n:020}.seg")), key);
            let (code, report) = verify_with_key(&victim, &id_pub);
            assert_eq!(code, 1, "re-signing segment {n} went unnoticed: {report:#}");
            let findings = report["findings"].as_array().unwrap();
            assert!(
                findings.iter().any(|f| {
                    (f["kind"] == "UNKNOWN_KEY" || f["kind"] == "BAD_SIGNATURE")
                        && f["segments"]["first"].as_u64() <= Some(n)
                        && f["segments"]["last"].as_u64() >= Some(n)
                }),
                "segment {n}: {report:#}"
            );
            attempts += 1;
        }
        let victim = work.path().join(format!("victim-del-{n}"));
        copy_dir(&run.data_dir, &victim);
        fs::remove_file(victim.join(format!("segments/{n:020}.seg"))).unwrap();
        let (code, report) = verify_with_key(&victim, &id_pub);
        assert_ne!(code, 0, "deleting segment {n} went unnoticed: {report:#}");
        assert!(
            report["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["kind"] == "MISSING_SEGMENTS"),
            "{report:#}"
        );
        let _ = fs::remove_dir_all(&victim);
    }
    eprintln!(
        "{attempts} re-signing attempts and {} deletions of segments sealed before the copy, all reported",
        sealed_before.len()
    );
}
