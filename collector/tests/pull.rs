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
use lineage_evidence::digest::HostId;
use lineage_evidence::keys::{PublicKey, SecretKey};
use lineage_evidence::store::SegmentStore;
use lineage_evidence::verify::{verify_dir, Outcome, VerifyOptions};
use lineage_proto::v1::agent_server::{Agent, AgentServer};
use lineage_proto::v1::{
    AckSegmentsRequest, AckSegmentsResponse, AgentInfo, GetInfoRequest, GetLineageRequest,
    LineageResponse, ListSegmentsRequest, ListSegmentsResponse, PullSegmentsRequest, Segment,
    TailMessage, TailRequest,
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
    served: Arc<AtomicU64>,
    acks: Arc<Mutex<Vec<u64>>>,
}

#[tonic::async_trait]
impl Agent for Fixture {
    async fn get_info(&self, _: Request<GetInfoRequest>) -> Result<Response<AgentInfo>, Status> {
        Ok(Response::new(AgentInfo {
            host_id: HOST.0.to_vec(),
            ..Default::default()
        }))
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
                let listing = store.list().expect("listing");
                let from = cursor;
                for (n, path) in listing.segments.into_iter().filter(|(n, _)| *n >= from) {
                    let data = std::fs::read(path).expect("reading a segment");
                    served.fetch_add(1, Ordering::SeqCst);
                    if tx.send(Ok(Segment { number: n, data })).await.is_err() {
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
        Ok(Response::new(AckSegmentsResponse {}))
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
    key: SecretKey,
    next_seal: u64,
    fixture: Fixture,
    stop_server: watch::Sender<bool>,
}

impl World {
    async fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let agent = tmp.path().join("agent");
        SegmentStore::create(&agent).unwrap();
        let fixture = Fixture {
            dir: agent,
            served: Arc::default(),
            acks: Arc::default(),
        };
        let listener = tokio::net::UnixListener::bind(tmp.path().join("agent.sock")).unwrap();
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
            writer: ChainWriter::new(HOST),
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
            store
                .write(&self.writer.seal(self.next_seal, &self.key))
                .unwrap();
            self.next_seal += 1;
        }
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
