//! The collector against the real agent: pull and verify, survive an agent killed mid-stream
//! and a collector restart without missing or re-downloading anything, refuse a segment
//! tampered on the agent's disk, and the same pull-and-verify over an S3-compatible server
//! (moto) that checks request signatures.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use lineage_tests::{
    free_port, run_to_end, tls_agent_config, verify_with_key, Agent, Collector, Pki,
};
use serde_json::Value;

fn config(dir: &Path, store: &str, agent: &Agent) -> String {
    format!(
        "[collector]\nname = \"test-collector\"\nkey_path = \"{}\"\nheartbeat_timeout_secs = 30\n\
         status_path = \"{}\"\n\n{store}\n[[agents]]\nname = \"agent-1\"\nendpoint = \"unix://{}\"\n",
        dir.join("witness.key").display(),
        dir.join("status.json").display(),
        agent.socket().display()
    )
}

fn fs_store(dir: &Path) -> String {
    format!(
        "[store]\nkind = \"fs\"\npath = \"{}\"\n",
        dir.join("store").display()
    )
}

fn host_id(agent_dir: &Path) -> String {
    fs::read_to_string(agent_dir.join("host-id"))
        .expect("agent host-id")
        .trim()
        .to_owned()
}

/// Segment files (name → bytes) in a `segments` directory.
fn segments(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn activity(n: usize) {
    for _ in 0..n {
        run_to_end(&mut Command::new("/bin/true"));
    }
}

fn cursor(c: &Collector) -> u64 {
    c.agent_status()["cursor"].as_u64().unwrap_or(0)
}

/// The shared scenario: pull while the agent is killed mid-stream and restarted, restart the
/// collector, and end with the agent stopped cleanly. `local_copy` returns the collected host
/// directory as a local path (the store itself for fs, a download for S3). Returns the agent's
/// data directory (kept alive by the returned TempDir).
fn pull_kill_restart_verify(
    work: &Path,
    store: &str,
    local_copy: &dyn Fn(&str) -> PathBuf,
) -> tempfile::TempDir {
    let agent_dir = tempfile::tempdir().unwrap();
    let agent = Agent::start_in(agent_dir.path(), &["--print", "none"]);
    let mut c = Collector::start(work, &config(work, store, &agent));
    c.wait_for("three stored segments", Duration::from_secs(60), |c| {
        activity(2);
        cursor(c) >= 3
    });

    // Killed mid-stream: no seal, no AGENT_STOP; the collector's stream breaks.
    agent.kill();
    activity(5);
    let agent = Agent::start_in(agent_dir.path(), &["--print", "none"]);
    let before_restart = cursor(&c);
    c.wait_for(
        "progress after the agent restarted",
        Duration::from_secs(60),
        |c| {
            activity(2);
            cursor(c) > before_restart + 1
        },
    );
    // The agent keeps sealing, so a segment may be in flight (fetched, not yet stored) at any
    // instant, and at SIGTERM: wait for a moment with none in flight. A segment fetched twice,
    // or fetched and dropped, keeps the counts apart for good and fails the wait.
    c.wait_for(
        "every fetched segment stored exactly once",
        Duration::from_secs(30),
        |c| {
            let st = c.agent_status();
            st["segments_fetched"] == st["segments_stored"]
        },
    );
    let (_, st) = c.stop();
    assert!(
        st["reconnects"].as_u64().unwrap() >= 1,
        "the collector reconnected: {st:#}"
    );
    let first_run = st["segments_stored"].as_u64().unwrap();
    assert_eq!(st["cursor"].as_u64().unwrap(), first_run, "{st:#}");

    // Collector restart: it resumes at its cursor and downloads nothing twice.
    let mut c = Collector::start(work, &config(work, store, &agent));
    let agent_seg_dir = agent_dir.path().join("segments");
    activity(10);
    c.wait_for("the agent's newest segment", Duration::from_secs(60), |c| {
        let n = segments(&agent_seg_dir).len() as u64;
        n > first_run + 1 && cursor(c) >= n
    });
    let (log, st) = c.stop();
    let last = st["cursor"].as_u64().unwrap();
    assert_eq!(
        st["segments_fetched"], st["segments_stored"],
        "after the restart every fetched segment was new: {st:#}"
    );
    assert_eq!(
        first_run + st["segments_stored"].as_u64().unwrap(),
        last,
        "first run + second run = all segments, none twice: {st:#}"
    );
    assert!(
        log.contains(&format!("resuming at segment {first_run}")),
        "the restarted collector resumed at its cursor; log:\n{log}"
    );
    assert!(
        !log.contains("MODIFIED") && !log.contains("MISSING_SEGMENTS"),
        "{log}"
    );
    let run = agent.stop();
    let agent_segments: Vec<_> = segments(&run.data_dir.join("segments"))
        .into_iter()
        .take(last as usize)
        .collect();

    let host = host_id(&run.data_dir);
    let copy = local_copy(&host);
    let collected = segments(&copy.join("segments"));
    assert_eq!(
        collected.len(),
        agent_segments.len(),
        "no missing range: the collector holds every segment"
    );
    assert!(
        collected == agent_segments,
        "collected segments are byte-identical to the agent's"
    );
    for (name, _) in &collected {
        let sig = copy.join("witness").join(name.replace(".seg", ".sig"));
        assert_eq!(
            fs::metadata(&sig).map(|m| m.len()).unwrap_or(0),
            64,
            "witness signature {}",
            sig.display()
        );
    }
    let (code, report) = verify_with_key(&copy, &run.data_dir.join("keys/agent.pub"));
    assert!(
        code == 0 || code == 3,
        "lineagectl verify over the collector's store: exit {code}: {report:#}"
    );
    println!("collected {} segments; verify exit {code}", collected.len());
    drop(run);
    agent_dir
}

#[test]
fn collector_pulls_verifies_and_resumes_across_agent_kill_and_collector_restart() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    pull_kill_restart_verify(work.path(), &fs_store(work.path()), &|host| root.join(host));
    assert!(
        fs::read_to_string(root.join("witness.pub"))
            .unwrap()
            .starts_with("lineage-ed25519-public-v1 "),
        "witness key published"
    );
}

#[test]
fn a_segment_tampered_on_the_agent_is_reported_modified_and_not_accepted() {
    let work = tempfile::tempdir().unwrap();
    let agent = Agent::start(&["--print", "none"]);
    let seg_dir = agent.data_dir.join("segments");
    let start = Instant::now();
    while segments(&seg_dir).len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent sealed fewer than 3 segments in 60 s"
        );
        activity(5);
        std::thread::sleep(Duration::from_millis(200));
    }
    // Flip the last byte (an entry byte) of a sealed segment with entries that is not the newest
    // (the agent never touches it again).
    let all = segments(&seg_dir);
    let k = (1..all.len() - 1)
        // Format version 2: 312-byte header + 64-byte signature before the entries.
        .find(|&k| all[k].1.len() > 376)
        .expect("a sealed segment with entries");
    let name = format!("{k:020}.seg");
    let victim = seg_dir.join(&name);
    let mut bytes = fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&victim, &bytes).unwrap();

    let mut c = Collector::start(
        work.path(),
        &config(work.path(), &fs_store(work.path()), &agent),
    );
    c.wait_for("a MODIFIED report", Duration::from_secs(30), |c| {
        c.log().contains("MODIFIED")
    });
    let (log, st) = c.stop();
    let line = log
        .lines()
        .find(|l| l.contains("MODIFIED"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(&format!("segment {k}")),
        "the report names segment {k}: {line}"
    );
    assert_eq!(
        st["cursor"], k,
        "the cursor did not pass the bad segment: {st:#}"
    );
    assert!(
        st["findings"]["MODIFIED"].as_u64().unwrap_or(0) >= 1,
        "{st:#}"
    );

    let host_dir = work.path().join("store").join(host_id(&agent.data_dir));
    let stored = segments(&host_dir.join("segments"));
    assert_eq!(
        stored.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
        (0..k).map(|n| format!("{n:020}.seg")).collect::<Vec<_>>(),
        "only the segments before the tampered one are stored as valid"
    );
    assert_eq!(
        fs::read(host_dir.join("quarantine").join(&name)).unwrap(),
        bytes,
        "the tampered copy is quarantined"
    );
    let finding: Value = serde_json::from_slice(
        &fs::read(host_dir.join(format!("quarantine/{k:020}.finding.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(finding["kind"], "MODIFIED", "{finding:#}");
    assert_eq!(finding["segment"], k, "{finding:#}");
    agent.stop();
}

/// A moto S3 server on a free loopback port, with request authentication switched on.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BUCKET: &str = "lineage-evidence";

fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for the S3 test (boto3 comes with moto[server])");
    assert!(
        out.status.success(),
        "python helper failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

impl Moto {
    /// Starts moto_server with authentication on (after the first three requests, which
    /// create the IAM user and its key), then creates the bucket with a signed request.
    /// Returns the server and the credentials.
    fn start() -> (Moto, String, String) {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "moto_server not runnable ({e}): the S3 test needs `pip install 'moto[server]'` \
                     (cargo xtask setup installs it)"
                )
            });
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto_server did not listen on {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let creds = python(
            r#"
import boto3, json, sys
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="collector")
iam.put_user_policy(UserName="collector", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
k = iam.create_access_key(UserName="collector")["AccessKey"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"])
s3.create_bucket(Bucket=sys.argv[2])
bad = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id=k["AccessKeyId"], aws_secret_access_key="wrong")
try:
    bad.list_objects_v2(Bucket=sys.argv[2])
    print("UNSIGNED-OK")
except Exception:
    pass
print(k["AccessKeyId"], k["SecretAccessKey"])
"#,
            &[&moto.endpoint, BUCKET],
        );
        assert!(
            !creds.contains("UNSIGNED-OK"),
            "moto accepted a badly signed request: authentication is not on"
        );
        let mut it = creds.split_whitespace();
        let (id, secret) = (it.next().unwrap().to_owned(), it.next().unwrap().to_owned());
        (moto, id, secret)
    }

    /// Downloads every object under `prefix` into `dest`.
    fn download(&self, id: &str, secret: &str, prefix: &str, dest: &Path) {
        python(
            r#"
import boto3, os, sys
ep, bucket, prefix, dest, kid, sec = sys.argv[1:7]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                  aws_access_key_id=kid, aws_secret_access_key=sec)
# No Prefix parameter: moto's signature check mishandles the encoded '/' in it.
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
    for o in page.get("Contents", []):
        if not o["Key"].startswith(prefix):
            continue
        path = os.path.join(dest, o["Key"][len(prefix):].lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        s3.download_file(bucket, o["Key"], path)
"#,
            &[
                &self.endpoint,
                BUCKET,
                prefix,
                dest.to_str().unwrap(),
                id,
                secret,
            ],
        );
    }
}

#[test]
fn s3_store_passes_the_same_pull_and_verify_test() {
    let (moto, id, secret) = Moto::start();
    let work = tempfile::tempdir().unwrap();
    let store = format!(
        "[store]\nkind = \"s3\"\nbucket = \"{BUCKET}\"\nendpoint = \"{}\"\nregion = \"us-east-1\"\n\
         access_key_id = \"{id}\"\nsecret_access_key = \"{secret}\"\nallow_http = true\nprefix = \"lineage\"\n",
        moto.endpoint
    );
    let download = work.path().join("download");
    pull_kill_restart_verify(work.path(), &store, &|host| {
        let dest = download.join(host);
        moto.download(&id, &secret, &format!("lineage/{host}/"), &dest);
        dest
    });
}

#[test]
fn collector_pulls_over_tcp_with_mutual_tls() {
    let pki = Pki::new(&["collector-a"]);
    let port = free_port();
    let agent_config = tls_agent_config(&pki, port, &["collector-a"], &[]);
    let agent = Agent::start(&[
        "--print",
        "none",
        "--config",
        agent_config.to_str().unwrap(),
    ]);
    agent.wait_for_log(
        "gRPC listening on TCP with mutual TLS",
        Duration::from_secs(5),
    );
    let work = tempfile::tempdir().unwrap();
    let config = format!(
        "[collector]\nname = \"tls-collector\"\nkey_path = \"{}\"\nstatus_path = \"{}\"\n\n{}\n[[agents]]\nname = \"agent-tls\"\n\
         endpoint = \"https://127.0.0.1:{port}\"\nca_cert = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
        work.path().join("witness.key").display(),
        work.path().join("status.json").display(),
        fs_store(work.path()),
        pki.path("ca.pem"),
        pki.path("collector-a.pem"),
        pki.path("collector-a.key"),
    );
    let mut c = Collector::start(work.path(), &config);
    c.wait_for(
        "two segments stored over mTLS",
        Duration::from_secs(60),
        |c| {
            activity(2);
            cursor(c) >= 2
        },
    );
    let (_, st) = c.stop();
    let run = agent.stop();
    assert_eq!(st["segments_fetched"], st["segments_stored"], "{st:#}");
    let host = host_id(&run.data_dir);
    let (code, report) = verify_with_key(
        &work.path().join("store").join(&host),
        &run.data_dir.join("keys/agent.pub"),
    );
    assert!(
        code == 0 || code == 3,
        "the collected store verifies: {report:#}"
    );
}

/// One collector per store (issue 18): a second collector on a store in use is refused with
/// the first's pid, and the first keeps pulling.
#[test]
fn a_second_collector_on_a_store_in_use_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let agent = Agent::start(&["--print", "none"]);
    let store = fs_store(work.path());
    let mut first = Collector::start(work.path(), &config(work.path(), &store, &agent));
    first.wait_for("a stored segment", Duration::from_secs(60), |c| {
        activity(1);
        cursor(c) >= 1
    });
    // Its own key and status file; the same store.
    let other = tempfile::tempdir().unwrap();
    let mut second = Collector::start(other.path(), &config(other.path(), &store, &agent));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = second.try_wait() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the second collector on a store in use is still running; log:\n{}",
            second.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "second collector exited with {status}");
    let log = second.log();
    assert!(
        log.contains(&format!("is in use by pid {}", first.pid())),
        "the refusal names the first collector's pid: {log}"
    );
    let before = cursor(&first);
    first.wait_for("progress after the refusal", Duration::from_secs(60), |c| {
        activity(1);
        cursor(c) > before
    });
    first.stop();
    drop(agent);
}
