//! `Tail`: live events fanned out to clients, each filtered *before* it is queued for a client.
//!
//! The capture thread owns a [`FanOut`] and, per event, tests every client's filter and pushes
//! the event into that client's own bounded single-producer/single-consumer queue. A full queue
//! counts a miss for that client only, and only for an event it asked for; the capture thread
//! never waits. The serving side owns the other end ([`Subscription`]).
//!
//! Memory is bounded per client (events and bytes queued) and in total (streams at once), all
//! set in `[grpc]` (docs/API.md).

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    mpsc, Arc,
};

use lineage_proto::v1::TailFilter;
use ringbuf::{
    traits::{Consumer as _, Producer as _, Split as _},
    HeapCons, HeapProd, HeapRb,
};
use tokio::sync::Notify;

use crate::capture::lineage::ExecId;

/// Event kinds a filter may name: every `Detail::kind()` the capture pipeline produces.
pub const KINDS: &[&str] = &[
    "exec",
    "exec_failed",
    "fork",
    "exit",
    "snapshot",
    "file",
    "connect",
    "accept",
    "loss",
];

/// Longest exec id accepted anywhere in the API (they are `<8 hex>-<tgid>-<ns>`, ~35 bytes).
pub const MAX_EXEC_ID: usize = 64;
/// Most `kinds` entries in one filter.
pub const MAX_KINDS: usize = 16;
/// Longest `binary_pattern`.
pub const MAX_PATTERN: usize = 256;
/// Longest `container` prefix (a container id is 64 hex digits).
pub const MAX_CONTAINER: usize = 128;

/// One event as the capture thread publishes it: the JSON the client receives, plus the fields
/// filters look at, so filtering never parses JSON.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub json: String,
    pub kind: &'static str,
    pub exec_id: Option<ExecId>,
    pub ancestors: Vec<ExecId>,
    pub binary: String,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// Container id, when the process runs in one.
    pub container: Option<String>,
}

impl LiveEvent {
    /// What this event costs a client's queue (its budget is in bytes as well as events).
    fn cost(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.json.len()
            + self.binary.len()
            + self.comm.len()
            + self.ancestors.len() * 48
    }
}

/// A refused filter; the message is safe to return (it never echoes unbounded input).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown event kind {0:?} (known: exec, exec_failed, fork, exit, snapshot, file, connect, accept, loss)")]
    UnknownKind(String),
    #[error("at most {MAX_KINDS} kinds")]
    TooManyKinds,
    #[error("exec_id_subtree: {0}")]
    ExecId(ExecIdError),
    #[error("binary_pattern is longer than {MAX_PATTERN} bytes")]
    PatternTooLong,
    #[error("container must be at most {MAX_CONTAINER} of [A-Za-z0-9._-]")]
    Container,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ExecIdError {
    #[error("an exec id is at most {MAX_EXEC_ID} bytes (got {0})")]
    TooLong(usize),
    #[error("{0:?} is not an exec id (<boot tag>-<tgid>-<start ns>)")]
    Malformed(String),
}

/// At most `n` characters of `s` for an error message, marked when cut.
pub fn shown(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_owned();
    }
    let cut: String = s.chars().take(n).collect();
    format!("{cut}…")
}

/// Checks the form of an exec id: `<1-8 hex digits>-<decimal tgid>-<decimal ns>`.
pub fn check_exec_id(id: &str) -> Result<(), ExecIdError> {
    if id.len() > MAX_EXEC_ID {
        return Err(ExecIdError::TooLong(id.len()));
    }
    let mut parts = id.split('-');
    let ok = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(tag), Some(tgid), Some(ns), None) => {
            (1..=8).contains(&tag.len())
                && tag.bytes().all(|b| b.is_ascii_hexdigit())
                && tgid.parse::<u32>().is_ok()
                && ns.parse::<u64>().is_ok()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ExecIdError::Malformed(shown(id, 32)))
    }
}

/// A checked filter. Kinds are a bit set so a test per event is one AND.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    kinds: u32,
    subtree: Option<String>,
    pattern: Option<String>,
    uid: Option<u32>,
    cgroup_id: Option<u64>,
    container: Option<String>,
}

fn kind_bit(kind: &str) -> Option<u32> {
    KINDS.iter().position(|k| *k == kind).map(|i| 1 << i)
}

impl Filter {
    pub fn parse(f: TailFilter) -> Result<Filter, FilterError> {
        if f.kinds.len() > MAX_KINDS {
            return Err(FilterError::TooManyKinds);
        }
        let mut kinds = 0;
        for k in &f.kinds {
            kinds |= kind_bit(k).ok_or_else(|| FilterError::UnknownKind(shown(k, 32)))?;
        }
        let subtree = (!f.exec_id_subtree.is_empty())
            .then(|| check_exec_id(&f.exec_id_subtree).map(|()| f.exec_id_subtree))
            .transpose()
            .map_err(FilterError::ExecId)?;
        if f.binary_pattern.len() > MAX_PATTERN {
            return Err(FilterError::PatternTooLong);
        }
        if f.container.len() > MAX_CONTAINER
            || !f
                .container
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(FilterError::Container);
        }
        Ok(Filter {
            kinds,
            subtree,
            pattern: (!f.binary_pattern.is_empty()).then_some(f.binary_pattern),
            uid: f.uid,
            cgroup_id: f.cgroup_id,
            container: (!f.container.is_empty()).then_some(f.container),
        })
    }

    /// Whether events of this kind can match at all (cheap test before the event is built).
    pub fn wants_kind(&self, kind: &str) -> bool {
        self.kinds == 0 || kind_bit(kind).is_some_and(|b| self.kinds & b != 0)
    }

    pub fn matches(&self, ev: &LiveEvent) -> bool {
        if !self.wants_kind(ev.kind) {
            return false;
        }
        if let Some(root) = &self.subtree {
            let root = root.as_str();
            let inside = ev.exec_id.as_deref() == Some(root)
                || ev.ancestors.iter().any(|a| a.as_ref() == root);
            if !inside {
                return false;
            }
        }
        if let Some(p) = &self.pattern {
            if !ev.binary.contains(p.as_str()) && !ev.comm.contains(p.as_str()) {
                return false;
            }
        }
        if self.uid.is_some_and(|uid| uid != ev.uid) {
            return false;
        }
        if self.cgroup_id.is_some_and(|id| id != ev.cgroup_id) {
            return false;
        }
        match &self.container {
            None => true,
            Some(c) => ev
                .container
                .as_deref()
                .is_some_and(|id| id.starts_with(c.as_str())),
        }
    }
}

/// Limits on Tail, from `[grpc]`.
#[derive(Debug, Clone, Copy)]
pub struct TailLimits {
    /// Streams open at once; one more is refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Events queued per client.
    pub client_events: usize,
    /// Bytes queued per client.
    pub client_bytes: usize,
}

/// What both ends of one client's queue share.
#[derive(Debug, Default)]
struct Shared {
    /// Matching events dropped because the queue was full, not yet reported.
    missed: AtomicU64,
    queued_bytes: AtomicUsize,
    /// Set by the serving end when the client is gone.
    closed: AtomicBool,
    /// Wakes the serving end after a batch.
    ready: Notify,
}

/// The capture thread's end of one client.
struct Subscriber {
    filter: Filter,
    queue: HeapProd<Arc<LiveEvent>>,
    shared: Arc<Shared>,
    max_bytes: usize,
    /// Something was queued or missed since the last wake.
    pending: bool,
}

/// The serving end of one client: events that matched its filter, in order, and how many
/// matching events were dropped.
pub struct Subscription {
    queue: HeapCons<Arc<LiveEvent>>,
    shared: Arc<Shared>,
    active: Arc<AtomicUsize>,
}

/// What [`Subscription::next`] yields.
#[derive(Debug)]
pub enum Item {
    Event(Arc<LiveEvent>),
    Missed(u64),
}

impl Subscription {
    /// The next event, or the count of events missed since the last report once the queue is
    /// empty. Waits for the capture thread when there is nothing.
    pub async fn next(&mut self) -> Item {
        loop {
            let notified = self.shared.ready.notified();
            if let Some(ev) = self.queue.try_pop() {
                self.shared
                    .queued_bytes
                    .fetch_sub(ev.cost(), Ordering::Relaxed);
                return Item::Event(ev);
            }
            let missed = self.shared.missed.swap(0, Ordering::Relaxed);
            if missed > 0 {
                return Item::Missed(missed);
            }
            notified.await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The serving side's handle: opens subscriptions, within the limits.
#[derive(Clone)]
pub struct TailHub {
    joins: mpsc::SyncSender<Subscriber>,
    active: Arc<AtomicUsize>,
    limits: TailLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("{0}")]
    Filter(#[from] FilterError),
    #[error("{0} Tail streams are open already (grpc.tail_max_streams)")]
    TooMany(usize),
    #[error("the capture thread is not running")]
    Stopped,
}

impl TailHub {
    pub fn subscribe(&self, filter: TailFilter) -> Result<Subscription, SubscribeError> {
        let filter = Filter::parse(filter)?;
        let limits = self.limits;
        let active = self.active.fetch_add(1, Ordering::Relaxed);
        if active >= limits.max_streams {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return Err(SubscribeError::TooMany(active));
        }
        let (prod, cons) = HeapRb::new(limits.client_events.max(1)).split();
        let shared = Arc::new(Shared::default());
        let subscription = Subscription {
            queue: cons,
            shared: shared.clone(),
            active: self.active.clone(),
        };
        self.joins
            .try_send(Subscriber {
                filter,
                queue: prod,
                shared,
                max_bytes: limits.client_bytes,
                pending: false,
            })
            .map_err(|_| SubscribeError::Stopped)?;
        Ok(subscription)
    }
}

/// The capture thread's side: every open client's filter and queue.
pub struct FanOut {
    subscribers: Vec<Subscriber>,
    joins: mpsc::Receiver<Subscriber>,
}

/// A connected pair: the hub for the server, the fan-out for the capture thread.
pub fn channel(limits: TailLimits) -> (TailHub, FanOut) {
    // Joins wait here only until the capture thread's next loop turn.
    let (tx, rx) = mpsc::sync_channel(limits.max_streams.max(1));
    (
        TailHub {
            joins: tx,
            active: Arc::new(AtomicUsize::new(0)),
            limits,
        },
        FanOut {
            subscribers: Vec::new(),
            joins: rx,
        },
    )
}

impl FanOut {
    /// Takes in new clients and forgets departed ones; true if anyone is listening. Call once
    /// per batch, not per event.
    pub fn refresh(&mut self) -> bool {
        while let Ok(s) = self.joins.try_recv() {
            self.subscribers.push(s);
        }
        self.subscribers
            .retain(|s| !s.shared.closed.load(Ordering::Acquire));
        !self.subscribers.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Whether any client could want an event of this kind (so the event is only built for
    /// the live path when someone will look at it).
    pub fn wants_kind(&self, kind: &str) -> bool {
        self.subscribers.iter().any(|s| s.filter.wants_kind(kind))
    }

    /// Offers one event to every client whose filter it matches. Never blocks.
    pub fn publish(&mut self, ev: &Arc<LiveEvent>) {
        let cost = ev.cost();
        for s in &mut self.subscribers {
            if !s.filter.matches(ev) {
                continue;
            }
            s.pending = true;
            let bytes = s.shared.queued_bytes.load(Ordering::Relaxed);
            if bytes + cost > s.max_bytes || s.queue.try_push(ev.clone()).is_err() {
                s.shared.missed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            s.shared.queued_bytes.fetch_add(cost, Ordering::Relaxed);
        }
    }

    /// Wakes the clients that got something since the last call (once per batch: a wake per
    /// event would cost the capture thread a syscall per event).
    pub fn wake(&mut self) {
        for s in &mut self.subscribers {
            if std::mem::take(&mut s.pending) {
                s.shared.ready.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> LiveEvent {
        LiveEvent {
            json: "{}".into(),
            kind: "exec",
            exec_id: Some("b-3-3".into()),
            ancestors: vec!["b-2-2".into(), "b-1-1".into()],
            binary: "/usr/bin/curl".into(),
            comm: "curl".into(),
            uid: 1000,
            cgroup_id: 7,
            container: Some("abcdef".into()),
        }
    }

    fn f(filter: TailFilter) -> bool {
        Filter::parse(filter).unwrap().matches(&ev())
    }

    #[test]
    fn filters_combine() {
        assert!(f(TailFilter::default()));
        assert!(f(TailFilter {
            kinds: vec!["exec".into()],
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            kinds: vec!["exit".into()],
            ..Default::default()
        }));
        assert!(f(TailFilter {
            exec_id_subtree: "b-1-1".into(),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            exec_id_subtree: "b-9-9".into(),
            ..Default::default()
        }));
        assert!(f(TailFilter {
            binary_pattern: "curl".into(),
            uid: Some(1000),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            uid: Some(0),
            ..Default::default()
        }));
        assert!(!f(TailFilter {
            cgroup_id: Some(8),
            ..Default::default()
        }));
        assert!(
            f(TailFilter {
                container: "abc".into(),
                ..Default::default()
            }),
            "a container id prefix matches"
        );
        assert!(!f(TailFilter {
            container: "fff".into(),
            ..Default::default()
        }));
    }

    #[test]
    fn bad_filters_are_refused_without_echoing_them() {
        let p = |filter: TailFilter| Filter::parse(filter).unwrap_err();
        assert_eq!(
            p(TailFilter {
                kinds: vec!["bogus".into()],
                ..Default::default()
            }),
            FilterError::UnknownKind("bogus".into())
        );
        let huge = "x".repeat(1 << 20);
        let e = p(TailFilter {
            kinds: vec![huge.clone()],
            ..Default::default()
        });
        assert!(e.to_string().len() < 200, "{e}");
        let e = p(TailFilter {
            exec_id_subtree: huge.clone(),
            ..Default::default()
        });
        assert!(e.to_string().len() < 200, "{e}");
        assert!(matches!(
            p(TailFilter {
                exec_id_subtree: "no-such-id".into(),
                ..Default::default()
            }),
            FilterError::ExecId(ExecIdError::Malformed(_))
        ));
        assert_eq!(
            p(TailFilter {
                binary_pattern: huge,
                ..Default::default()
            }),
            FilterError::PatternTooLong
        );
        assert_eq!(
            p(TailFilter {
                container: "a/b".into(),
                ..Default::default()
            }),
            FilterError::Container
        );
        assert_eq!(
            p(TailFilter {
                kinds: vec!["exec".into(); MAX_KINDS + 1],
                ..Default::default()
            }),
            FilterError::TooManyKinds
        );
        assert!(check_exec_id("1a2b3c4d-1234-5678901234").is_ok());
    }

    fn limits(events: usize) -> TailLimits {
        TailLimits {
            max_streams: 2,
            client_events: events,
            client_bytes: 1 << 20,
        }
    }

    /// The reason this module exists: a client that asked for execs loses none of them to a
    /// flood of events it did not ask for, and `missed` counts only events it asked for.
    #[tokio::test(flavor = "current_thread")]
    async fn a_client_loses_nothing_to_events_it_did_not_ask_for() {
        let (hub, mut fan) = channel(limits(4));
        let mut execs = hub
            .subscribe(TailFilter {
                kinds: vec!["exec".into()],
                ..Default::default()
            })
            .unwrap();
        let mut all = hub.subscribe(TailFilter::default()).unwrap();
        assert!(fan.refresh());
        let open = Arc::new(LiveEvent {
            kind: "file",
            ..ev()
        });
        let exec = Arc::new(ev());
        for i in 0..1000 {
            fan.publish(&open);
            if i % 500 == 0 {
                fan.publish(&exec);
            }
        }
        fan.wake();
        for _ in 0..2 {
            assert!(matches!(execs.next().await, Item::Event(e) if e.kind == "exec"));
        }
        // Nothing missed: the next poll would wait, not report a miss.
        assert_eq!(execs.shared.missed.load(Ordering::Relaxed), 0);
        // The unfiltered client kept 4 and missed the other 998.
        for _ in 0..4 {
            assert!(matches!(all.next().await, Item::Event(_)));
        }
        assert!(matches!(all.next().await, Item::Missed(998)));
        // Limits: a third stream is refused; a closed one frees its place.
        assert!(matches!(
            hub.subscribe(TailFilter::default()),
            Err(SubscribeError::TooMany(2))
        ));
        drop(all);
        assert!(fan.refresh());
        assert_eq!(fan.subscribers.len(), 1);
        assert!(hub.subscribe(TailFilter::default()).is_ok());
    }
}
