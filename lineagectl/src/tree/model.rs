//! The lineage of one image: its ancestors, itself and its descendants, each with its recent
//! events — built either from an agent's GetLineage answer or from the events on a chain.
//!
//! Both sources use the agent's model (README, docs/EVENTS.md): every image has an exec id;
//! an image's parent is the image its process's parent ran when the process was created; a
//! fork creates an image running the parent's program, which an exec then replaces
//! (`previous_exec_id`).

use std::collections::{HashMap, HashSet, VecDeque};

use lineage_proto::v1::{event::Kind, LineageNode, LineageResponse};
use serde::Serialize;

use crate::event::{basename, parse_exec_id, Event};

/// Most ancestors followed (the agent's own limit).
const MAX_ANCESTRY: usize = 64;
/// Most descendants collected from a chain.
const MAX_DESCENDANTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The image runs now (the agent said so).
    Running,
    /// Its process exited while running it.
    Exited,
    /// Its process exec'd another program.
    Replaced,
    /// Not known: no exit on the chain (still running, or the agent stopped first).
    Unknown,
}

impl State {
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Exited => "exited",
            State::Replaced => "replaced",
            State::Unknown => "no exit seen",
        }
    }
}

/// How an image came to be, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Exec,
    Snapshot,
    Fork,
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub exec_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_exec_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_exec_id: Option<String>,
    pub tgid: u32,
    pub comm: String,
    pub binary: String,
    pub argv: Vec<String>,
    pub state: State,
    pub origin: Origin,
    /// The newest events of this image, oldest first.
    #[serde(skip)]
    pub events: VecDeque<Event>,
}

impl Node {
    fn stub(exec_id: &str, tgid: Option<u32>) -> Node {
        Node {
            exec_id: exec_id.into(),
            parent_exec_id: None,
            previous_exec_id: None,
            tgid: tgid
                .or_else(|| parse_exec_id(exec_id).map(|p| p.tgid))
                .unwrap_or(0),
            comm: String::new(),
            binary: String::new(),
            argv: Vec::new(),
            state: State::Unknown,
            origin: Origin::Unknown,
            events: VecDeque::new(),
        }
    }

    /// When the image started (from its exec id), for ordering siblings.
    pub fn start_ns(&self) -> u64 {
        parse_exec_id(&self.exec_id).map_or(0, |p| p.start_ns)
    }

    fn set_image(&mut self, ev: &Event, binary: &str, argv: &[String]) {
        self.tgid = ev.tgid;
        if !ev.comm.is_empty() {
            self.comm = ev.comm.clone();
        }
        self.binary = binary.into();
        if self.comm.is_empty() {
            self.comm = basename(binary).into();
        }
        self.argv = argv.to_vec();
        if !ev.parent_exec_id.is_empty() {
            self.parent_exec_id = Some(ev.parent_exec_id.clone());
        }
    }
}

/// An image with its relatives.
#[derive(Debug, Clone)]
pub struct Lineage {
    /// Nearest first.
    pub ancestors: Vec<Node>,
    pub node: Node,
    pub descendants: Vec<Node>,
}

impl Lineage {
    /// From an agent's answer. The agent says whether each image runs; an image another one
    /// names as `previous_exec_id` was replaced by an exec.
    pub fn from_response(r: LineageResponse) -> Option<Lineage> {
        let node = from_proto(r.node?);
        let mut l = Lineage {
            ancestors: r.ancestors.into_iter().map(from_proto).collect(),
            node,
            descendants: r.descendants.into_iter().map(from_proto).collect(),
        };
        // An image's own exec event (with `previous_exec_id`) may have fallen out of the few
        // events the agent keeps per image. A process runs one image at a time, so of the
        // images of one tgid under one parent, every one but the newest was replaced.
        let mut replaced: HashSet<String> =
            l.all().filter_map(|n| n.previous_exec_id.clone()).collect();
        let mut newest: HashMap<(Option<&str>, u32), (u64, &str)> = HashMap::new();
        for n in l.all() {
            let k = (n.parent_exec_id.as_deref(), n.tgid);
            let v = (n.start_ns(), n.exec_id.as_str());
            let e = newest.entry(k).or_insert(v);
            if v > *e {
                replaced.insert(e.1.to_owned());
                *e = v;
            } else if v < *e {
                replaced.insert(v.1.to_owned());
            }
        }
        for n in l.all_mut() {
            if n.state == State::Exited && replaced.contains(&n.exec_id) {
                n.state = State::Replaced;
            }
        }
        Some(l)
    }

    pub fn all(&self) -> impl Iterator<Item = &Node> {
        self.ancestors
            .iter()
            .chain(std::iter::once(&self.node))
            .chain(self.descendants.iter())
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Node> {
        self.ancestors
            .iter_mut()
            .chain(std::iter::once(&mut self.node))
            .chain(self.descendants.iter_mut())
    }
}

fn from_proto(n: LineageNode) -> Node {
    let mut node = Node {
        exec_id: n.exec_id,
        parent_exec_id: Some(n.parent_exec_id).filter(|p| !p.is_empty()),
        previous_exec_id: None,
        tgid: n.tgid,
        comm: n.comm,
        binary: n.binary,
        argv: n.argv,
        state: if n.running {
            State::Running
        } else {
            State::Exited
        },
        origin: Origin::Unknown,
        events: n
            .events_json
            .iter()
            .filter_map(|j| crate::event::parse(j).ok())
            .collect(),
    };
    // The image's own exec or snapshot event says how it started and what it replaced.
    for ev in &node.events {
        if ev.exec_id != node.exec_id {
            continue;
        }
        match &ev.kind {
            Some(Kind::Exec(x)) => {
                node.origin = Origin::Exec;
                node.previous_exec_id = Some(x.previous_exec_id.clone()).filter(|p| !p.is_empty());
                break;
            }
            Some(Kind::Snapshot(_)) => {
                node.origin = Origin::Snapshot;
                break;
            }
            _ => {}
        }
    }
    node
}

/// Every image a chain's events describe, with the newest `keep` events of each.
#[derive(Debug)]
pub struct Images {
    nodes: HashMap<String, Node>,
    keep: usize,
}

impl Images {
    pub fn new(keep: usize) -> Images {
        Images {
            nodes: HashMap::new(),
            keep,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    fn entry(&mut self, exec_id: &str, tgid: Option<u32>) -> &mut Node {
        self.nodes
            .entry(exec_id.to_owned())
            .or_insert_with(|| Node::stub(exec_id, tgid))
    }

    /// Takes one event (chain order). Events without an exec id (loss) are ignored.
    pub fn feed(&mut self, ev: Event) {
        if ev.exec_id.is_empty() {
            return;
        }
        let id = ev.exec_id.clone();
        match &ev.kind {
            Some(Kind::Exec(x)) => {
                let n = self.entry(&id, Some(ev.tgid));
                n.set_image(&ev, &x.binary, &x.argv);
                n.origin = Origin::Exec;
                n.previous_exec_id = Some(x.previous_exec_id.clone()).filter(|p| !p.is_empty());
                if let Some(p) = self.nodes.get_mut(&x.previous_exec_id) {
                    p.state = State::Replaced;
                }
            }
            Some(Kind::Snapshot(x)) => {
                let n = self.entry(&id, Some(ev.tgid));
                n.set_image(&ev, &x.binary, &x.argv);
                n.origin = Origin::Snapshot;
            }
            Some(Kind::Fork(f)) if !f.thread && !f.child_exec_id.is_empty() => {
                // The child runs its parent's program until it execs.
                let parent = self.entry(&id, Some(ev.tgid)).clone();
                let c = self.entry(&f.child_exec_id, Some(f.child_tgid));
                if c.origin == Origin::Unknown {
                    c.origin = Origin::Fork;
                    c.parent_exec_id = Some(id.clone());
                    c.comm = parent.comm;
                    c.binary = parent.binary;
                    c.argv = parent.argv;
                }
            }
            Some(Kind::Exit(x)) if x.process => {
                self.entry(&id, Some(ev.tgid)).state = State::Exited;
            }
            _ => {}
        }
        let keep = self.keep;
        let n = self.entry(&id, Some(ev.tgid));
        if n.parent_exec_id.is_none() && !ev.parent_exec_id.is_empty() {
            n.parent_exec_id = Some(ev.parent_exec_id.clone());
        }
        if keep > 0 {
            if n.events.len() == keep {
                n.events.pop_front();
            }
            n.events.push_back(ev);
        }
    }

    /// The lineage of `exec_id`, if any event named it.
    pub fn lineage(&self, exec_id: &str) -> Option<Lineage> {
        let node = self.nodes.get(exec_id)?.clone();
        let mut ancestors = Vec::new();
        let mut seen = HashSet::from([exec_id.to_owned()]);
        let mut cur = node.parent_exec_id.clone();
        while let Some(id) = cur {
            if ancestors.len() >= MAX_ANCESTRY || !seen.insert(id.clone()) {
                break;
            }
            match self.nodes.get(&id) {
                Some(n) => {
                    cur = n.parent_exec_id.clone();
                    ancestors.push(n.clone());
                }
                None => {
                    // Named as a parent but never seen: show what its id tells.
                    ancestors.push(Node::stub(&id, None));
                    cur = None;
                }
            }
        }
        let mut children: HashMap<&str, Vec<&Node>> = HashMap::new();
        for n in self.nodes.values() {
            if let Some(p) = n.parent_exec_id.as_deref() {
                children.entry(p).or_default().push(n);
            }
        }
        let mut descendants = Vec::new();
        let mut queue = VecDeque::from([exec_id]);
        while let Some(id) = queue.pop_front() {
            for c in children.get(id).into_iter().flatten() {
                if descendants.len() >= MAX_DESCENDANTS || !seen.insert(c.exec_id.clone()) {
                    continue;
                }
                descendants.push((*c).clone());
                queue.push_back(&c.exec_id);
            }
        }
        Some(Lineage {
            ancestors,
            node,
            descendants,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The events of `sh -c 'sh -c "/bin/echo x"'` started by a shell b-10-1, as the agent
    /// records them: each sh forks a child that execs.
    pub fn known_chain() -> Vec<Event> {
        [
            r#"{"kind":"snapshot","time_ns":1,"tgid":10,"exec_id":"b-10-1","comm":"bash","binary":"/bin/bash","argv":["bash"]}"#,
            r#"{"kind":"fork","time_ns":2,"tgid":10,"exec_id":"b-10-1","child_tgid":20,"child_exec_id":"b-20-2"}"#,
            r#"{"kind":"exec","time_ns":3,"tgid":20,"exec_id":"b-20-3","parent_exec_id":"b-10-1","previous_exec_id":"b-20-2","comm":"sh","binary":"/usr/bin/dash","argv":["sh","-c","sh -c \"/bin/echo x\""]}"#,
            r#"{"kind":"fork","time_ns":4,"tgid":20,"exec_id":"b-20-3","parent_exec_id":"b-10-1","child_tgid":30,"child_exec_id":"b-30-4"}"#,
            r#"{"kind":"exec","time_ns":5,"tgid":30,"exec_id":"b-30-5","parent_exec_id":"b-20-3","previous_exec_id":"b-30-4","comm":"sh","binary":"/usr/bin/dash","argv":["sh","-c","/bin/echo x"]}"#,
            r#"{"kind":"fork","time_ns":6,"tgid":30,"exec_id":"b-30-5","parent_exec_id":"b-20-3","child_tgid":40,"child_exec_id":"b-40-6"}"#,
            r#"{"kind":"exec","time_ns":7,"tgid":40,"exec_id":"b-40-7","parent_exec_id":"b-30-5","previous_exec_id":"b-40-6","comm":"echo","binary":"/bin/echo","argv":["/bin/echo","x"]}"#,
            r#"{"kind":"exit","time_ns":8,"tgid":40,"exec_id":"b-40-7","parent_exec_id":"b-30-5","code":0,"process":true}"#,
            r#"{"kind":"exit","time_ns":9,"tgid":30,"exec_id":"b-30-5","parent_exec_id":"b-20-3","code":0,"process":true}"#,
            r#"{"kind":"exit","time_ns":10,"tgid":20,"exec_id":"b-20-3","parent_exec_id":"b-10-1","code":0,"process":true}"#,
        ]
        .iter()
        .map(|j| schema1(j))
        .collect()
    }

    /// Fixtures are schema 1 JSON (what older agents wrote): they read as the same message.
    pub fn schema1(json: &str) -> Event {
        lineage_proto::payload::decode(lineage_proto::payload::SCHEMA_JSON, json.as_bytes())
            .unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn images_are_rebuilt_from_events() {
        let mut images = Images::new(8);
        for e in known_chain() {
            images.feed(e);
        }
        let l = images.lineage("b-30-5").unwrap();
        assert_eq!(l.node.comm, "sh");
        assert_eq!(l.node.argv, ["sh", "-c", "/bin/echo x"]);
        assert_eq!(l.node.state, State::Exited);
        assert_eq!(l.node.events.len(), 3, "exec, fork, exit");
        let anc: Vec<&str> = l.ancestors.iter().map(|n| n.exec_id.as_str()).collect();
        assert_eq!(anc, ["b-20-3", "b-10-1"]);
        let desc: HashSet<&str> = l.descendants.iter().map(|n| n.exec_id.as_str()).collect();
        assert_eq!(desc, HashSet::from(["b-40-6", "b-40-7"]));

        let fork = images.lineage("b-40-6").unwrap().node;
        assert_eq!(fork.origin, Origin::Fork);
        assert_eq!(fork.state, State::Replaced);
        assert_eq!(fork.comm, "sh", "a forked child runs its parent's program");
        assert_eq!(fork.parent_exec_id.as_deref(), Some("b-30-5"));

        let root = images.lineage("b-10-1").unwrap();
        assert!(root.ancestors.is_empty());
        assert_eq!(root.node.state, State::Unknown);
        assert_eq!(root.descendants.len(), 6);
    }

    #[test]
    fn an_unseen_parent_is_a_stub() {
        let mut images = Images::new(0);
        images.feed(schema1(
            r#"{"kind":"exit","tgid":5,"exec_id":"b-5-5","parent_exec_id":"b-4-4","process":true}"#,
        ));
        let l = images.lineage("b-5-5").unwrap();
        assert_eq!(l.ancestors.len(), 1);
        assert_eq!(l.ancestors[0].tgid, 4);
        assert!(l.node.events.is_empty(), "keep 0 keeps no events");
        assert!(images.lineage("b-9-9").is_none());
    }

    #[test]
    fn agent_answers_mark_replaced_images() {
        let node = |id: &str, parent: &str, running: bool, events: Vec<&str>| LineageNode {
            exec_id: id.into(),
            parent_exec_id: parent.into(),
            tgid: parse_exec_id(id).unwrap().tgid,
            binary: "/usr/bin/dash".into(),
            argv: vec!["sh".into()],
            comm: "sh".into(),
            running,
            events_json: events.into_iter().map(String::from).collect(),
        };
        let r = LineageResponse {
            ancestors: vec![],
            node: Some(node("b-20-3", "", false, vec![])),
            descendants: vec![
                node("b-30-4", "b-20-3", false, vec![]),
                node(
                    "b-30-5",
                    "b-20-3",
                    true,
                    vec![r#"{"kind":"exec","exec_id":"b-30-5","previous_exec_id":"b-30-4"}"#],
                ),
            ],
        };
        let mut without_exec_event = r.clone();
        without_exec_event.descendants[1].events_json.clear();
        let l = Lineage::from_response(r).unwrap();
        assert_eq!(l.descendants[0].state, State::Replaced);
        let l2 = Lineage::from_response(without_exec_event).unwrap();
        assert_eq!(
            l2.descendants[0].state,
            State::Replaced,
            "an older image of the same process under the same parent was replaced"
        );
        assert_eq!(l.descendants[1].state, State::Running);
        assert_eq!(l.descendants[1].origin, Origin::Exec);
        assert_eq!(l.node.state, State::Exited);
    }
}
