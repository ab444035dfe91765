//! Checkpoints and witnesses against the real agent and collector (docs/FORMAT.md §12,
//! docs/COLLECTOR.md): the agent publishes C2SP checkpoints, the collector cosigns them and
//! hands them back; an independent C2SP checker accepts them; truncating a stopped log,
//! rolling the data dir back and showing two histories to two collectors are each found by
//! the collectors and by `lineagectl verify --witness`, with no head kept by hand. And the
//! hostile-agent limits: a 1 GiB message, a squatted host id; other agents keep being
//! collected and the collector's memory stays bounded.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use lineage_evidence::segment::SegmentHeader;
use lineage_tests::{
    agent_binary, free_port, lineagectl_binary, run_to_end, scrape_metrics, Agent, Collector,
};
use serde_json::Value;

fn config(dir: &Path, agents: &[(&str, &Path)]) -> String {
    let mut s = format!(
        "[collector]\nname = \"witness-{}\"\nkey_path = \"{}\"\nheartbeat_timeout_secs = 30\n\
         status_path = \"{}\"\n\n[store]\nkind = \"fs\"\npath = \"{}\"\n",
        dir.file_name()
            .unwrap()
            .to_string_lossy()
            .trim_start_matches('.'),
        dir.join("witness.key").display(),
        dir.join("status.json").display(),
        dir.join("store").display()
    );
    for (name, socket) in agents {
        s.push_str(&format!(
            "\n[[agents]]\nname = \"{name}\"\nendpoint = \"unix://{}\"\n",
            socket.display()
        ));
    }
    s
}

fn activity(n: usize) {
    for _ in 0..n {
        run_to_end(&mut Command::new("/bin/true"));
    }
}

fn vkey(work: &Path) -> PathBuf {
    work.join("store/witness.vkey")
}

fn host_id(agent_dir: &Path) -> String {
    fs::read_to_string(agent_dir.join("host-id"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Status of agent `i`, for the collector `c`.
fn agent(c: &Collector, i: usize) -> Value {
    c.status()["agents"][i].clone()
}

fn witnessed(c: &Collector) -> u64 {
    agent(c, 0)["witnessed_size"].as_u64().unwrap_or(0)
}

fn finding_count(c: &Collector, i: usize, kind: &str) -> u64 {
    agent(c, i)["findings"][kind].as_u64().unwrap_or(0)
}

/// `lineagectl verify DIR --json ARGS…`: exit code and report.
fn verify(dir: &Path, args: &[&str]) -> (i32, Value) {
    let out = Command::new(lineagectl_binary())
        .arg("verify")
        .arg(dir)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), v)
}

fn kinds(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap().to_owned())
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_dir(&e.path(), &dest);
        } else if ft.is_file() {
            fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// The agent's stored witness notes.
fn agent_notes(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir.join("checkpoints"))
        .map(|rd| {
            rd.map(|e| e.unwrap().path())
                .filter(|p| {
                    let n = p.file_name().unwrap().to_string_lossy().into_owned();
                    n.starts_with("witness-") && n.ends_with(".note")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The key that signed a checkpoint note: the key of the tree's last segment (FORMAT.md
/// §12.2; with forward-secure sealing every segment has its own key).
fn checkpoint_key_hex(dir: &Path, note: &Path) -> String {
    let text = fs::read_to_string(note).unwrap();
    let size: u64 = text.lines().nth(1).unwrap().parse().unwrap();
    let seg = dir.join(format!("segments/{:020}.seg", size - 1));
    let header = SegmentHeader::parse(&fs::read(&seg).unwrap()).unwrap();
    header
        .public_key
        .to_line()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

fn python_checker() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("c2sp/check_c2sp.py")
}

/// Runs the agent until the collector cosigned at least `n` segments and the agent holds
/// the cosigned note.
fn until_witnessed(c: &mut Collector, dir: &Path, n: u64) {
    c.wait_for("a cosigned checkpoint", Duration::from_secs(90), |c| {
        activity(2);
        witnessed(c) >= n && !agent_notes(dir).is_empty()
    });
}

#[test]
fn cosigned_checkpoints_verify_and_a_truncated_stopped_log_is_found() {
    let work = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    let mut c = Collector::start(work.path(), &config(work.path(), &[("a", &a.socket())]));
    until_witnessed(&mut c, d.path(), 4);
    let key = d.path().join("keys/agent.pub");
    let key = key.to_str().unwrap();
    let w = vkey(work.path());
    let w = w.to_str().unwrap();

    // The agent's data dir and the collector's copy both verify against the witness.
    let (code, r) = verify(d.path(), &["--key", key, "--witness", w]);
    assert!(code == 0 || code == 3, "exit {code}: {:#}", r["findings"]);
    assert!(
        r["witness"]["witnessed_size"].as_u64().unwrap() >= 4,
        "{r:#}"
    );
    let host_dir = work.path().join("store").join(host_id(d.path()));
    let (code, r) = verify(&host_dir, &["--key", key, "--witness", w]);
    assert!(code == 0 || code == 3, "exit {code}: {:#}", r["findings"]);

    // An implementation written from the C2SP texts accepts the agent's checkpoint and the
    // collector's cosignature on it.
    // A copy: the running agent replaces the note whenever the witness cosigns a newer one,
    // and the key to check it with depends on its size.
    let note = &work.path().join("checked.note");
    fs::copy(&agent_notes(d.path())[0], note).unwrap();
    let vk = fs::read_to_string(w).unwrap();
    let out = Command::new("python3")
        .arg(python_checker())
        .arg("checkpoint")
        .arg(note)
        .args([
            "--log-key",
            &checkpoint_key_hex(d.path(), note),
            "--witness",
            vk.trim(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "independent C2SP checker refused {}: {}",
        note.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["cosignatures"].as_array().unwrap().len(), 1);

    // Root truncates the stopped log: the newest two segments, their leaves and every
    // cosigned note the agent held.
    a.stop();
    let identity = work.path().join("identity.pub");
    fs::copy(key, &identity).unwrap();
    let key = identity.to_str().unwrap();
    // Cut into what the witness already cosigned (segments sealed after its newest
    // checkpoint are not covered by any witness, and cutting only those is not detectable).
    let covered = witnessed(&c) as usize;
    let segs = d.path().join("segments");
    let mut names: Vec<PathBuf> = fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    let keep = covered - 2;
    for p in &names[keep..] {
        fs::remove_file(p).unwrap();
    }
    let leaves = d.path().join("checkpoints/leaves");
    let b = fs::read(&leaves).unwrap();
    fs::write(&leaves, &b[..keep * 32]).unwrap();
    for n in agent_notes(d.path()) {
        fs::remove_file(n).unwrap();
    }
    // The shorter log verifies on its own: truncation leaves nothing to check on the host.
    let (code, r) = verify(d.path(), &["--key", key]);
    assert!(code == 0 || code == 3, "exit {code}: {:#}", r["findings"]);
    // The collector's cosigned checkpoints expose it without any hand-kept head.
    let host_dir = work.path().join("store").join(host_id(d.path()));
    let (code, r) = verify(
        d.path(),
        &[
            "--key",
            key,
            "--witness",
            w,
            "--cosigned",
            host_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{:#}", r["findings"]);
    assert!(
        kinds(&r).contains(&"TRUNCATED".to_owned()),
        "{:?}",
        kinds(&r)
    );

    // The agent refuses to continue the cut chain: the last header left commits to a sealing
    // key that was erased when the next segment was sealed (FORMAT.md §8.1 "Recovery").
    let out = refused_start(d.path());
    assert!(
        out.contains("commits to sealing key"),
        "the agent started on a truncated forward-secure chain: {out}"
    );

    // Root enrols an identity of its own and restarts the agent, which continues the chain.
    let rogue = work.path().join("rogue");
    let keygen = Command::new(lineagectl_binary())
        .args(["keygen", "--out"])
        .arg(&rogue)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{keygen:?}");
    let enrol = Command::new(lineagectl_binary())
        .args(["enrol", "--identity-key"])
        .arg(rogue.with_extension("key"))
        .arg("--data-dir")
        .arg(d.path())
        .output()
        .unwrap();
    assert!(enrol.status.success(), "{enrol:?}");
    let before = witnessed(&c);
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    c.wait_for("the collector's refusal", Duration::from_secs(90), |c| {
        activity(2);
        (finding_count(c, 0, "ROLLBACK") > 0 || finding_count(c, 0, "FORK") > 0)
            && !agent_notes(d.path()).is_empty()
    });
    assert_eq!(
        witnessed(&c),
        before,
        "the collector cosigned nothing after the truncation"
    );
    // The agent's own data dir now shows it, with only the witness key.
    let (code, r) = verify(d.path(), &["--key", key, "--witness", w]);
    let k = kinds(&r);
    assert!(code == 1 || code == 2, "exit {code}: {:#}", r["findings"]);
    assert!(
        k.contains(&"TRUNCATED".to_owned()) || k.contains(&"FORK".to_owned()),
        "{k:?}"
    );
    assert!(k.contains(&"UNWITNESSED".to_owned()), "{k:?}");
    // And the genuine identity does not vouch for the re-enrolled continuation.
    let (code, r) = verify(d.path(), &["--key", key]);
    assert_eq!(code, 1, "{:#}", r["findings"]);
    assert!(
        kinds(&r).contains(&"UNKNOWN_KEY".to_owned()),
        "{:?}",
        kinds(&r)
    );
    a.stop();
    c.stop();
}

/// Runs the agent on `dir` expecting it to refuse to start; returns its stderr.
fn refused_start(dir: &Path) -> String {
    let mut child = Command::new(agent_binary())
        .args(["run", "--print", "none", "--metrics-listen", ""])
        .arg("--data-dir")
        .arg(dir)
        .arg("--grpc-socket")
        .arg(dir.join("agent.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent kept running on a truncated forward-secure chain");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "the agent exited 0");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_rolled_back_data_dir_is_found_by_the_collector_and_verify() {
    let work = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    let older = tempfile::tempdir().unwrap();
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    let mut c = Collector::start(work.path(), &config(work.path(), &[("a", &a.socket())]));
    until_witnessed(&mut c, d.path(), 2);
    a.stop();
    copy_dir(d.path(), older.path());
    let taken = witnessed(&c);
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    c.wait_for("more cosigned", Duration::from_secs(90), |c| {
        activity(2);
        witnessed(c) >= taken + 3
    });
    a.stop();
    // Root puts the older copy back (witness notes and all) and restarts the agent.
    for e in fs::read_dir(d.path()).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            fs::remove_dir_all(&p).unwrap();
        } else {
            fs::remove_file(&p).unwrap();
        }
    }
    copy_dir(older.path(), d.path());
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    c.wait_for("ROLLBACK", Duration::from_secs(90), |c| {
        activity(2);
        finding_count(c, 0, "ROLLBACK") > 0
    });
    c.wait_for(
        "the witness's note handed back",
        Duration::from_secs(60),
        |_| {
            activity(1);
            let (code, _) = verify(
                d.path(),
                &["--witness", vkey(work.path()).to_str().unwrap()],
            );
            code == 1 || code == 2
        },
    );
    let (_, r) = verify(
        d.path(),
        &["--witness", vkey(work.path()).to_str().unwrap()],
    );
    let k = kinds(&r);
    assert!(
        k.contains(&"TRUNCATED".to_owned()) || k.contains(&"FORK".to_owned()),
        "{k:?}"
    );
    assert!(c.log().contains("ROLLBACK agent a"), "{}", c.log());
    a.stop();
    c.stop();
}

#[test]
fn two_histories_shown_to_two_collectors_fail_verify_witness() {
    let d = tempfile::tempdir().unwrap();
    let (w1, w2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // One history up to time T, then its data dir is cloned and both copies go on.
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    activity(5);
    a.stop();
    let clone = tempfile::tempdir().unwrap();
    copy_dir(d.path(), clone.path());
    let _ = fs::remove_file(clone.path().join("agent.sock"));
    let a = Agent::start_in(d.path(), &["--print", "none"]);
    let b = Agent::start_in(clone.path(), &["--print", "none"]);
    let mut c1 = Collector::start(w1.path(), &config(w1.path(), &[("a", &a.socket())]));
    let mut c2 = Collector::start(w2.path(), &config(w2.path(), &[("a", &b.socket())]));
    until_witnessed(&mut c1, d.path(), 2);
    until_witnessed(&mut c2, clone.path(), 2);
    a.stop();
    b.stop();
    c1.stop();
    c2.stop();
    let (v1, v2) = (vkey(w1.path()), vkey(w2.path()));
    let (v1, v2) = (v1.to_str().unwrap(), v2.to_str().unwrap());
    // Each collector alone is satisfied; a quorum of both never is.
    let (code, r) = verify(
        d.path(),
        &["--witness", v1, "--witness", v2, "--quorum", "2"],
    );
    assert_eq!(code, 2, "{:#}", r["findings"]);
    assert!(
        kinds(&r).contains(&"UNWITNESSED".to_owned()),
        "{:?}",
        kinds(&r)
    );
    // Given the other collector's cosigned checkpoints, the fork is named.
    let other = w2.path().join("store").join(host_id(d.path()));
    let (code, r) = verify(
        d.path(),
        &[
            "--witness",
            v1,
            "--witness",
            v2,
            "--cosigned",
            other.to_str().unwrap(),
        ],
    );
    let k = kinds(&r);
    assert!(code == 1 || code == 2, "exit {code}: {k:?}");
    assert!(
        k.contains(&"FORK".to_owned()) || k.contains(&"TRUNCATED".to_owned()),
        "{k:?}"
    );
}

/// A fake agent (Python gRPC) that announces `host` and answers any pull with one message
/// of `size` bytes.
fn fake_agent(dir: &Path, host: &str, size: u64) -> Child {
    let proto = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let script = format!(
        r#"
import sys, os, time, concurrent.futures, grpc
from grpc_tools import protoc
out = {out:?}
os.makedirs(out, exist_ok=True)
assert protoc.main(["protoc", "-I" + {proto:?}, "--python_out=" + out, "--grpc_python_out=" + out, "lineage/v1/agent.proto"]) == 0
sys.path.insert(0, out)
from lineage.v1 import agent_pb2 as pb, agent_pb2_grpc as rpc
class Fake(rpc.AgentServicer):
    def GetInfo(self, req, ctx):
        return pb.AgentInfo(host_id=bytes.fromhex({host:?}))
    def PullSegments(self, req, ctx):
        yield pb.Segment(number=req.from_segment, data=b"\0" * {size})
        time.sleep(3600)
s = grpc.server(concurrent.futures.ThreadPoolExecutor(4), options=[("grpc.max_send_message_length", -1)])
rpc.add_AgentServicer_to_server(Fake(), s)
s.add_insecure_port("unix://" + {sock:?})
s.start()
print("serving", flush=True)
s.wait_for_termination()
"#,
        out = dir.join("py").display().to_string(),
        proto = proto.display().to_string(),
        sock = dir.join("fake.sock").display().to_string(),
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(fs::File::create(dir.join("fake.log")).unwrap())
        .spawn()
        .unwrap();
    for _ in 0..100 {
        if dir.join("fake.sock").exists() {
            return child;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "fake agent did not start: {}",
        fs::read_to_string(dir.join("fake.log")).unwrap_or_default()
    );
}

/// Peak resident memory of a process, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

#[test]
fn a_1gib_message_and_a_squatted_host_id_leave_other_agents_collected() {
    let work = tempfile::tempdir().unwrap();
    let owner_dir = tempfile::tempdir().unwrap();
    let squat_dir = tempfile::tempdir().unwrap();
    let owner = Agent::start_in(owner_dir.path(), &["--print", "none"]);
    // The squatter claims the owner's host id (a cloned machine id does the same).
    fs::write(
        squat_dir.path().join("host-id"),
        format!("{}\n", host_id(owner_dir.path())),
    )
    .unwrap();
    let squatter = Agent::start_in(squat_dir.path(), &["--print", "none"]);
    let fake = fake_agent(work.path(), "0123456789abcdef0123456789abcdef", 1 << 30);
    let fake = scopeguard(fake);
    // The owner first, so that it binds the host id (agent tasks start concurrently).
    let mut c = Collector::start(
        work.path(),
        &config(work.path(), &[("owner", &owner.socket())]),
    );
    c.wait_for("the owner bound", Duration::from_secs(60), |c| {
        activity(2);
        agent(c, 0)["segments_stored"].as_u64().unwrap_or(0) >= 1
    });
    c.stop();
    let mut c = Collector::start(
        work.path(),
        &config(
            work.path(),
            &[
                ("owner", &owner.socket()),
                ("squatter", &squat_dir.path().join("agent.sock")),
                ("huge", &work.path().join("fake.sock")),
            ],
        ),
    );
    c.wait_for(
        "the owner collected and cosigned",
        Duration::from_secs(90),
        |c| {
            activity(2);
            agent(c, 0)["witnessed_size"].as_u64().unwrap_or(0) >= 3
        },
    );
    c.wait_for(
        "HOST_CONFLICT and the refused message",
        Duration::from_secs(60),
        |c| {
            activity(1);
            finding_count(c, 1, "HOST_CONFLICT") > 0
                && agent(c, 2)["last_error"].as_str().is_some_and(|e| {
                    e.contains("message length too large") || e.contains("too large")
                })
        },
    );
    let cursor = agent(&c, 0)["cursor"].as_u64().unwrap();
    c.wait_for("the owner still collected", Duration::from_secs(60), |c| {
        activity(2);
        agent(c, 0)["cursor"].as_u64().unwrap_or(0) >= cursor + 2
    });
    let peak = peak_rss(c.pid());
    assert_eq!(
        agent(&c, 1)["segments_stored"],
        0,
        "nothing taken from the squatter"
    );
    assert_eq!(agent(&c, 2)["segments_stored"], 0);
    // docs/COLLECTOR.md: 60 MiB + 3 × max_message_bytes per agent; with the default 32 MiB
    // and three agents that is 348 MiB, under the shipped 512 MiB limit.
    assert!(
        peak < 348 << 20,
        "collector peak RSS {} MiB while an agent sent 1 GiB",
        peak >> 20
    );
    // Nothing of the 1 GiB message was quarantined or stored.
    let fake_host = work.path().join("store/0123456789abcdef0123456789abcdef");
    assert!(!fake_host.join("segments").exists() && !fake_host.join("quarantine").exists());
    drop(fake);
    squatter.stop();
    owner.stop();
    c.stop();
}

/// Kills the child when dropped.
struct Guard(Child);

fn scopeguard(c: Child) -> Guard {
    Guard(c)
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 13: the agent's metrics say how far its log is ahead of the newest checkpoint a
/// witness cosigned. With the collector gone, seals go on and the gauge grows with them; it is
/// always the checkpoint size minus the size of the newest cosigned note in the data dir.
#[test]
fn metrics_show_how_far_the_log_is_ahead_of_its_witnesses() {
    let work = tempfile::tempdir().unwrap();
    let d = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let a = Agent::start_in(d.path(), &["--print", "none", "--metrics-listen", &addr]);
    let mut c = Collector::start(work.path(), &config(work.path(), &[("a", &a.socket())]));
    until_witnessed(&mut c, d.path(), 3);
    c.stop();
    // No witness from here on: the newest cosigned size in the data dir stays where it is.
    let cosigned = newest_note_size(d.path());
    assert!(cosigned >= 3, "cosigned {cosigned}");
    let gauges = || {
        let m = scrape_metrics(port);
        let get = |name: &str| {
            m.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| *v as u64)
                .unwrap_or_else(|| panic!("{name} missing from the metrics page: {m:?}"))
        };
        (
            get("lineage_checkpoint_segments"),
            get("lineage_witness_behind_segments"),
        )
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (size, behind) = loop {
        activity(2);
        std::thread::sleep(Duration::from_millis(500));
        let (size, behind) = gauges();
        if size >= cosigned + 3 && behind == size - cosigned {
            break (size, behind);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gauge never showed the log 3 segments ahead of cosigned size {cosigned}: \
             checkpoint {size}, behind {behind}"
        );
    };
    assert_eq!(newest_note_size(d.path()), cosigned, "no new cosignature");
    eprintln!("checkpoint {size} segments, witness cosigned {cosigned}, gauge {behind}");
    a.stop();
}

/// The largest tree size among the agent's stored witness notes (second line of a note).
fn newest_note_size(dir: &Path) -> u64 {
    agent_notes(dir)
        .iter()
        .map(|p| {
            let text = fs::read_to_string(p).unwrap();
            text.lines().nth(1).unwrap().parse::<u64>().unwrap()
        })
        .max()
        .unwrap_or(0)
}
