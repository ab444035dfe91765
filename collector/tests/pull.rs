//! The collector's client side of the pull protocol, without root: a small in-test gRPC server
//! serves real segment files (written with the evidence library's `ChainWriter`, real
//! signatures) from a directory, the way the agent does. This is a fixture for the protocol;
//! the end-to-end tests against the real agent are in `tests/tests/collector.rs`.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lineage_collector::config::Config;
use lineage_evidence::chain::ChainWriter;
use lineage_evidence::checkpoint::{Note, VerifierKey};
use lineage_evidence::digest::HostId;
use lineage_evidence::keys::{PublicKey, SecretKey};
use lineage_evidence::store::SegmentStore;
use lineage_evidence::tlog::{self, CheckpointWriter, TlogError};
use lineage_evidence::verify::{verify_dir, FindingKind, Outcome, VerifyOptions};
use lineage_evidence::witnessed::{self, WitnessPolicy};
use lineage_proto::v1::agent_server::{Agent, AgentServer};
use lineage_proto::v1::{
    AckSegmentsRequest, AckSegmentsResponse, AgentInfo, GetCheckpointRequest,
    GetCheckpointResponse, GetInfoRequest, GetLineageRequest, LineageResponse, ListSegmentsRequest,
    ListSegmentsResponse, PullSegmentsRequest, Segment, SubmitCosignatureRequest,
    SubmitCosignatureResponse, TailMessage, TailRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const HOST: HostId = HostId([0x4c; 16]);

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[derive(Clone)]
struct Fixture {
    dir: PathBuf,
    host: HostId,
    served: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<u64>>>,
    /// `refused` of every SubmitCosignature received.
    refusals: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl Agent for Fixture {
    async fn get_info(&self, _: Request<GetInfoRequest>) -> Result<Response<AgentInfo>, Status> {
        let last_segment = SegmentStore::open(&self.dir)
            .ok()
            .and_then(|s| s.last_number().ok().flatten());
        Ok(Response::new(AgentInfo {
            host_id: self.host.0.to_vec(),
            last_segment,
            ..Default::default()
        }))
    }

    async fn get_checkpoint(
        &self,
        request: Request<GetCheckpointRequest>,
    ) -> Result<Response<GetCheckpointResponse>, Status> {
        // What the agent does: the evidence library's reader of its checkpoint directory.
        let old = request.into_inner().old_size;
        let body = tlog::read_published(&tlog::dir_of(&self.dir))
            .and_then(|p| p.add_checkpoint_body(old))
            .map_err(|e| match e {
                TlogError::Empty => Status::not_found(e.to_string()),
                TlogError::OldTooLarge { .. } => Status::out_of_range(e.to_string()),
                e => Status::internal(e.to_string()),
            })?;
        Ok(Response::new(GetCheckpointResponse {
            add_checkpoint: body,
        }))
    }

    async fn submit_cosignature(
        &self,
        request: Request<SubmitCosignatureRequest>,
    ) -> Result<Response<SubmitCosignatureResponse>, Status> {
        let req = request.into_inner();
        let note = Note::parse(req.cosigned_checkpoint.as_bytes())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        tlog::store_cosigned(&tlog::dir_of(&self.dir), &self.host, &note)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if !req.refused.is_empty() {
            self.refusals.lock().unwrap().push(req.refused);
        }
        Ok(Response::new(SubmitCosignatureResponse {}))
    }

    async fn list_segments(
        &self,
        _: Request<ListSegmentsRequest>,
    ) -> Result<Response<ListSegmentsResponse>, Status> {
        Err(Status::unimplemented("fixture"))
    }

    type PullSegmentsStream = Stream_<Segment>;

    async fn pull_segments(
        &self,
        request: Request<PullSegmentsRequest>,
    ) -> Result<Response<Self::PullSegmentsStream>, Status> {
        let req = request.into_inner();
        let store = SegmentStore::open(&self.dir).map_err(|e| Status::internal(e.to_string()))?;
        let served = self.served.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut cursor = req.from_segment;
            loop {
                // The directory may be swapped under us (a rolled-back data dir).
                let Ok(listing) = store.list() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let from = cursor;
                for (n, path) in listing.segments.into_iter().filter(|(n, _)| *n >= from) {
                    let Ok(data) = std::fs::read(path) else { break };
                    served.fetch_add(1, Ordering::SeqCst);
                    let size = data.len() as u64;
                    if tx
                        .send(Ok(Segment {
                            number: n,
                            data,
                            offset: 0,
                            size,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    cursor = n + 1;
                }
                if !req.follow {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn ack_segments(
        &self,
        request: Request<AckSegmentsRequest>,
    ) -> Result<Response<AckSegmentsResponse>, Status> {
        self.acks.lock().unwrap().push(request.into_inner().up_to);
        Ok(Response::new(AckSegmentsResponse::default()))
    }

    type TailStream = Stream_<TailMessage>;

    async fn tail(&self, _: Request<TailRequest>) -> Result<Response<Self::TailStream>, Status> {
        Err(Status::unimplemented("fixture"))
    }

    async fn get_lineage(
        &self,
        _: Request<GetLineageRequest>,
    ) -> Result<Response<LineageResponse>, Status> {
        Err(Status::unimplemented("fixture"))
    }
}

/// A temp world: an "agent" directory with a chain, a fixture server on a socket, a store.
struct World {
    tmp: tempfile::TempDir,
    writer: ChainWriter,
    checkpoints: CheckpointWriter,
    key: SecretKey,
    next_seal: u64,
    fixture: Fixture,
    stop_server: watch::Sender<bool>,
}

impl World {
    async fn new() -> World {
        Self::with(tempfile::tempdir().unwrap(), "agent", HOST).await
    }

    /// A fixture agent `name` (its directory and socket in `tmp`) serving host `host`.
    async fn with(tmp: tempfile::TempDir, name: &str, host: HostId) -> World {
        let agent = tmp.path().join(name);
        let store = SegmentStore::create(&agent).unwrap();
        let checkpoints = CheckpointWriter::open(&agent, host, &store).unwrap();
        let fixture = Fixture {
            dir: agent,
            host,
            served: Arc::default(),
            acks: Arc::default(),
            refusals: Arc::default(),
        };
        let listener =
            tokio::net::UnixListener::bind(tmp.path().join(format!("{name}.sock"))).unwrap();
        let (stop_server, mut stopped) = watch::channel(false);
        let svc = AgentServer::new(fixture.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
        });
        World {
            tmp,
            writer: ChainWriter::new(host),
            checkpoints,
            key: SecretKey::from_seed([9; 32]),
            next_seal: 1,
            fixture,
            stop_server,
        }
    }

    fn seal(&mut self, n: usize) {
        let store = SegmentStore::create(&self.fixture.dir).unwrap();
        for _ in 0..n {
            self.writer
                .append_event(1, format!("event {}", self.next_seal).as_bytes())
                .unwrap();
            let sealed = self.writer.seal(self.next_seal, &self.key);
            store.write(&sealed).unwrap();
            self.checkpoints.append(&sealed.header, &self.key).unwrap();
            self.next_seal += 1;
        }
    }

    /// Replaces the agent's directory with `older` (a copy taken earlier) and resumes its
    /// chain and checkpoints from there: a rolled-back data dir.
    fn roll_back_to(&mut self, older: &Path) {
        std::fs::remove_dir_all(&self.fixture.dir).unwrap();
        copy_dir(older, &self.fixture.dir);
        let store = SegmentStore::open(&self.fixture.dir).unwrap();
        self.writer = ChainWriter::resume(&store, self.fixture.host).unwrap();
        self.checkpoints =
            CheckpointWriter::open(&self.fixture.dir, self.fixture.host, &store).unwrap();
    }

    /// A copy of the agent's directory, now.
    fn snapshot(&self) -> PathBuf {
        let to = self.tmp.path().join(format!("snapshot-{}", self.next_seal));
        copy_dir(&self.fixture.dir, &to);
        to
    }

    fn vkey(&self) -> VerifierKey {
        let text = std::fs::read_to_string(self.tmp.path().join("store/witness.vkey")).unwrap();
        VerifierKey::parse(&text).unwrap()
    }

    /// Sizes of the cosigned checkpoints the agent holds.
    fn agent_cosigned(&self) -> Vec<u64> {
        tlog::read_cosigned(&tlog::dir_of(&self.fixture.dir))
            .unwrap()
            .into_iter()
            .filter_map(|(_, n)| n.ok())
            .filter_map(|n| lineage_evidence::checkpoint::Checkpoint::parse_body(&n.text).ok())
            .map(|c| c.size)
            .collect()
    }

    fn status(&self) -> serde_json::Value {
        std::fs::read(self.tmp.path().join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn config(&self) -> Config {
        let t = self.tmp.path();
        Config::parse(&format!(
            "[collector]\nname = \"c1\"\nkey_path = \"{}\"\nstatus_path = \"{}\"\n\
             [store]\nkind = \"fs\"\npath = \"{}\"\n\
             [[agents]]\nname = \"fixture\"\nendpoint = \"unix://{}\"\n",
            t.join("witness.key").display(),
            t.join("status.json").display(),
            t.join("store").display(),
            t.join("agent.sock").display()
        ))
        .unwrap()
    }

    fn host_dir(&self) -> PathBuf {
        self.tmp.path().join("store").join(HOST.to_string())
    }

    fn cursor(&self) -> u64 {
        std::fs::read(self.host_dir().join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["cursor"].as_u64())
            .unwrap_or(0)
    }

    fn served(&self) -> u64 {
        self.fixture.served.load(Ordering::SeqCst)
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start(cfg: Config) -> Running {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        lineage_collector::app::run(cfg, stopped).await.unwrap();
    });
    Running { stop, task }
}

impl Running {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.task.await.unwrap();
    }
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn witness_key(root: &Path) -> PublicKey {
    PublicKey::load_file(&root.join("witness.pub")).unwrap()[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_verifies_and_resumes_without_downloading_twice() {
    let mut w = World::new().await;
    w.seal(5);
    let c = start(w.config());
    wait_until("5 segments", || w.cursor() == 5).await;
    // New segments while connected are followed.
    w.seal(2);
    wait_until("7 segments", || w.cursor() == 7).await;
    c.stop().await;
    assert_eq!(w.served(), 7, "each segment fetched once");
    assert_eq!(w.fixture.acks.lock().unwrap().last(), Some(&6));

    // Restart: resume at the cursor.
    w.seal(3);
    let c = start(w.config());
    wait_until("10 segments", || w.cursor() == 10).await;
    c.stop().await;
    assert_eq!(w.served(), 10, "nothing fetched twice across a restart");

    // The store is a verifiable log with the agent's layout, witnessed segment by segment.
    let report = verify_dir(
        &w.host_dir(),
        &VerifyOptions {
            trusted_keys: vec![w.key.public()],
            known_head: None,
        },
    )
    .unwrap();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.findings);
    assert_eq!(report.segments_ok, 10);
    let wk = witness_key(&w.tmp.path().join("store"));
    for (n, path) in SegmentStore::open(&w.host_dir())
        .unwrap()
        .list()
        .unwrap()
        .segments
    {
        let bytes = std::fs::read(path).unwrap();
        let view = lineage_evidence::SegmentView::parse(&bytes).unwrap();
        let sig = std::fs::read(w.host_dir().join(format!("witness/{n:020}.sig"))).unwrap();
        assert!(lineage_collector::witness::verify(
            &wk,
            &view.header.digest(),
            &sig
        ));
    }
    let pinned = PublicKey::load_file(&w.host_dir().join("pinned.pub")).unwrap();
    assert_eq!(pinned, vec![w.key.public()], "first key pinned");
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_modified_segment_is_quarantined_and_not_accepted() {
    let mut w = World::new().await;
    w.seal(4);
    let victim = w.fixture.dir.join("segments/00000000000000000002.seg");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    let c = start(w.config());
    let finding = w
        .host_dir()
        .join("quarantine/00000000000000000002.finding.json");
    wait_until("a quarantined segment", || finding.exists()).await;
    // Give the status board its tick.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.stop().await;
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&finding).unwrap()).unwrap();
    assert_eq!(f["kind"], "MODIFIED");
    assert_eq!(f["segment"], 2);
    assert_eq!(w.cursor(), 2);
    assert_eq!(
        std::fs::read(w.host_dir().join("quarantine/00000000000000000002.seg")).unwrap(),
        bytes
    );
    assert!(!w
        .host_dir()
        .join("segments/00000000000000000002.seg")
        .exists());
    assert!(!w
        .host_dir()
        .join("segments/00000000000000000003.seg")
        .exists());
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.tmp.path().join("status.json")).unwrap()).unwrap();
    assert_eq!(status["agents"][0]["findings"]["MODIFIED"], 1, "{status:#}");
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_prefix_is_reported_as_a_gap() {
    let mut w = World::new().await;
    w.seal(5);
    for n in 0..2 {
        std::fs::remove_file(w.fixture.dir.join(format!("segments/{n:020}.seg"))).unwrap();
    }
    let c = start(w.config());
    wait_until("5 segments", || w.cursor() == 5).await;
    c.stop().await;
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(w.host_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["gaps"],
        serde_json::json!([{"first": 0, "last": 1, "declared": false}])
    );
    assert_eq!(w.served(), 3);
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_is_refused_after_pinning() {
    let mut w = World::new().await;
    w.seal(2);
    let c = start(w.config());
    wait_until("2 segments", || w.cursor() == 2).await;
    // The agent's key is swapped without a KEY_ROTATION entry.
    w.key = SecretKey::from_seed([10; 32]);
    w.seal(1);
    let finding = w
        .host_dir()
        .join("quarantine/00000000000000000002.finding.json");
    wait_until("a quarantined segment", || finding.exists()).await;
    c.stop().await;
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&finding).unwrap()).unwrap();
    assert_eq!(f["kind"], "UNKNOWN_KEY");
    assert_eq!(w.cursor(), 2);
    let _ = w.stop_server.send(true);
}

fn policy(keys: Vec<VerifierKey>, quorum: usize, extra: Vec<PathBuf>) -> WitnessPolicy {
    WitnessPolicy {
        witnesses: keys,
        quorum,
        extra,
    }
}

fn kinds(r: &witnessed::WitnessReport) -> Vec<FindingKind> {
    r.findings.iter().map(|f| f.kind).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_cosigned_and_handed_back_to_the_agent() {
    let mut w = World::new().await;
    w.seal(5);
    let c = start(w.config());
    wait_until("the agent holds a cosigned checkpoint of 5", || {
        w.agent_cosigned() == vec![5]
    })
    .await;
    w.seal(3);
    wait_until("the agent holds a cosigned checkpoint of 8", || {
        w.agent_cosigned() == vec![8]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.stop().await;
    // Both the agent's data dir and the collector's copy verify against the witness key,
    // with no head kept by hand.
    let p = policy(vec![w.vkey()], 1, vec![]);
    for dir in [w.fixture.dir.clone(), w.host_dir()] {
        let r = witnessed::check(&dir, HOST, &p).unwrap();
        assert_eq!(kinds(&r), vec![], "{}: {:?}", dir.display(), r.findings);
        assert_eq!((r.witnessed_size, r.behind), (8, 0));
    }
    assert!(w.fixture.refusals.lock().unwrap().is_empty());
    let st = w.status();
    assert_eq!(st["agents"][0]["witnessed_size"], 8, "{st:#}");
    assert_eq!(st["agents"][0]["witness_behind"], 0, "{st:#}");
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_agent_is_refused_and_its_own_data_dir_shows_it() {
    let mut w = World::new().await;
    w.seal(3);
    let older = w.snapshot();
    w.seal(3);
    let c = start(w.config());
    wait_until("cosigned 6", || w.agent_cosigned() == vec![6]).await;
    // Root puts back the older copy of the data dir; the agent carries on from there and
    // seals a different segment 3, 4, ...
    w.roll_back_to(&older);
    assert_eq!(
        w.agent_cosigned(),
        Vec::<u64>::new(),
        "the old copy has no cosignature"
    );
    w.seal(4);
    wait_until("the witness's refusal reaches the agent", || {
        !w.fixture.refusals.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.stop().await;
    let refusal = w.fixture.refusals.lock().unwrap()[0].clone();
    assert!(refusal.contains("422"), "{refusal}");
    let st = w.status();
    assert!(
        st["agents"][0]["findings"]["FORK"].as_u64().unwrap_or(0) >= 1,
        "{st:#}"
    );
    assert_eq!(st["agents"][0]["witnessed_size"], 6, "{st:#}");
    // The collector did not take the new history.
    assert_eq!(w.cursor(), 6);
    // The agent's data dir now holds the witness's checkpoint, which its log contradicts.
    let r = witnessed::check(&w.fixture.dir, HOST, &policy(vec![w.vkey()], 1, vec![])).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Fork, FindingKind::Unwitnessed],
        "{:?}",
        r.findings
    );
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_agent_is_a_rollback() {
    let mut w = World::new().await;
    w.seal(5);
    let c = start(w.config());
    wait_until("cosigned 5", || w.agent_cosigned() == vec![5]).await;
    c.stop().await;
    // While the agent is stopped, root deletes its newest two segments (and their leaves).
    for n in [3u64, 4] {
        std::fs::remove_file(w.fixture.dir.join(format!("segments/{n:020}.seg"))).unwrap();
    }
    let leaves = tlog::dir_of(&w.fixture.dir).join(tlog::LEAVES_FILE);
    let b = std::fs::read(&leaves).unwrap();
    std::fs::write(&leaves, &b[..3 * 32]).unwrap();
    let older = w.snapshot();
    w.roll_back_to(&older);
    w.seal(1);
    let c = start(w.config());
    wait_until("a refusal", || {
        !w.fixture.refusals.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    c.stop().await;
    let st = w.status();
    assert!(
        st["agents"][0]["findings"]["ROLLBACK"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{st:#}"
    );
    let r = witnessed::check(&w.fixture.dir, HOST, &policy(vec![w.vkey()], 1, vec![])).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Truncated, FindingKind::Unwitnessed],
        "{:?}",
        r.findings
    );
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_histories_shown_to_two_witnesses_fail_the_quorum_and_fork() {
    // One data dir, copied at time T; each copy goes on as its own agent with its own
    // collector (a split view).
    let mut a = World::new().await;
    a.seal(3);
    let fork_at = a.snapshot();
    let tmp_b = tempfile::tempdir().unwrap();
    let mut b = World::with(tmp_b, "agent", HOST).await;
    b.roll_back_to(&fork_at);
    a.seal(3);
    b.seal(2);
    let ca = start(a.config());
    let cb = start(b.config());
    wait_until("A cosigned", || a.agent_cosigned() == vec![6]).await;
    wait_until("B cosigned", || b.agent_cosigned() == vec![5]).await;
    ca.stop().await;
    cb.stop().await;
    let both = vec![a.vkey(), b.vkey()];
    // Each log alone satisfies its own witness, never a quorum of both.
    let r = witnessed::check(&a.fixture.dir, HOST, &policy(both.clone(), 2, vec![])).unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Unwitnessed],
        "{:?}",
        r.findings
    );
    // Given the other collector's cosigned checkpoint, the fork is named.
    let r = witnessed::check(
        &a.fixture.dir,
        HOST,
        &policy(both.clone(), 2, vec![b.host_dir()]),
    )
    .unwrap();
    assert_eq!(
        kinds(&r),
        vec![FindingKind::Fork, FindingKind::Unwitnessed],
        "{:?}",
        r.findings
    );
    // B's log is shorter than what A's witness saw: the other history shows as missing.
    let r = witnessed::check(&b.host_dir(), HOST, &policy(both, 1, vec![a.host_dir()])).unwrap();
    assert!(
        kinds(&r).contains(&FindingKind::Truncated),
        "{:?}",
        r.findings
    );
    let _ = a.stop_server.send(true);
    let _ = b.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_number_2_pow_64_minus_1_does_not_wrap_the_cursor() {
    let mut w = World::new().await;
    w.seal(2);
    let c = start(w.config());
    wait_until("2 segments", || w.cursor() == 2).await;
    // A validly signed segment continuing the chain, numbered u64::MAX.
    let mut state = *w.writer.state();
    state.next_segment = u64::MAX;
    let mut last = ChainWriter::from_state(state);
    last.append_event(1, b"the last segment").unwrap();
    let sealed = last.seal(99, &w.key);
    SegmentStore::open(&w.fixture.dir)
        .unwrap()
        .write(&sealed)
        .unwrap();
    let finding = w
        .host_dir()
        .join(format!("quarantine/{:020}.finding.json", u64::MAX));
    wait_until("a finding", || finding.exists()).await;
    c.stop().await;
    let f: serde_json::Value = serde_json::from_slice(&std::fs::read(&finding).unwrap()).unwrap();
    assert_eq!(f["kind"], "MALFORMED", "{f:#}");
    assert_eq!(w.cursor(), 2, "the cursor neither moved nor wrapped");
    let _ = w.stop_server.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_host_id_is_refused_and_the_owner_still_collected() {
    let mut victim = World::new().await;
    victim.seal(2);
    let c = start(victim.config());
    wait_until("victim stored", || victim.cursor() == 2).await;
    c.stop().await;
    // Another node claims the victim's host id with its own history.
    let mut evil = World::with(tempfile::tempdir().unwrap(), "evil", HOST).await;
    evil.key = SecretKey::from_seed([66; 32]);
    evil.seal(4);
    let t = victim.tmp.path();
    let two_agents = format!(
        "[collector]\nname = \"c1\"\nkey_path = \"{}\"\nstatus_path = \"{}\"\n\
         [store]\nkind = \"fs\"\npath = \"{}\"\n\
         [[agents]]\nname = \"evil\"\nendpoint = \"unix://{}\"\n\
         [[agents]]\nname = \"fixture\"\nendpoint = \"unix://{}\"\n",
        t.join("witness.key").display(),
        t.join("status.json").display(),
        t.join("store").display(),
        evil.tmp.path().join("evil.sock").display(),
        t.join("agent.sock").display()
    );
    let c = start(Config::parse(&two_agents).unwrap());
    victim.seal(2);
    wait_until("victim still collected", || victim.cursor() == 4).await;
    wait_until("the conflict in the status", || {
        victim.status()["agents"][0]["findings"]["HOST_CONFLICT"] == 1
    })
    .await;
    c.stop().await;
    assert_eq!(evil.served(), 0, "nothing pulled from the squatter");
    assert_eq!(
        victim.status()["agents"][1]["findings"],
        serde_json::json!({})
    );
    let _ = victim.stop_server.send(true);
    let _ = evil.stop_server.send(true);
}
