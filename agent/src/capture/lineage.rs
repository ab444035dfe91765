//! The process table: a stable identity for every exec'd image and the links between them.
//!
//! A process is named by (boot id, tgid, start time): pids are reused, start times are not.
//! Every program image a process runs gets its own exec id — the image a process starts with
//! after `fork` (its parent's program), each successful `exec`, or the image found at startup.
//! An image's parent is the image its process's parent was running when the process was
//! created; an exec in place (same pid, new program) keeps the parent and records the image it
//! replaced as `previous`.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

/// Clock ticks per second of `/proc/<pid>/stat` start times (`USER_HZ`, fixed at 100 on Linux).
const USER_HZ_NS: u64 = 10_000_000;
/// Exited images kept so the ancestry of still-running descendants stays resolvable.
const EXITED_RETAINED: usize = 65_536;
/// Most ancestors reported for one image.
const MAX_ANCESTRY: usize = 64;

pub type ExecId = Arc<str>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Found running when the agent started.
    Snapshot,
    /// A child created by fork/clone, still running its parent's program.
    Fork,
    /// A successful exec.
    Exec,
    /// Seen acting before we saw how it started (its fork record was lost or predates us).
    Unknown,
}

/// One program image run by one process.
#[derive(Clone, Debug)]
pub struct Image {
    pub exec_id: ExecId,
    pub parent_exec_id: Option<ExecId>,
    pub previous_exec_id: Option<ExecId>,
    pub tgid: u32,
    pub binary: String,
    pub argv: Vec<String>,
    pub comm: String,
    pub origin: Origin,
    /// Real uid and cgroup id at exec (0 when not known, e.g. from the snapshot).
    pub uid: u32,
    pub cgroup_id: u64,
    /// The newest events of this image as chain JSON, for lineage queries.
    pub recent_events: VecDeque<Arc<str>>,
    /// The container (and pod) the process runs in, from its cgroup.
    pub container: Option<Arc<Container>>,
}

/// Container identity of an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Container {
    pub runtime: &'static str,
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// Reads the container of a live process; `None` when it is in none or already gone.
pub fn container_of(proc_root: &std::path::Path, tgid: u32) -> Option<Arc<Container>> {
    let info = crate::capture::container::read_for_pid(proc_root, tgid)
        .ok()
        .flatten()?;
    Some(Arc::new(Container {
        runtime: info.runtime.as_str(),
        id: info.container_id,
        pod_uid: info.pod_uid,
    }))
}

/// Events kept per image for lineage queries.
const RECENT_EVENTS: usize = 16;

/// An image with its relatives, for a lineage query.
pub struct Lineage<'a> {
    pub ancestors: Vec<&'a Image>,
    pub node: &'a Image,
    pub descendants: Vec<&'a Image>,
}

/// Most descendants reported for one lineage query.
const MAX_DESCENDANTS: usize = 1000;

struct Process {
    start_ns: u64,
    /// False while `start_ns` comes from `/proc` at clock-tick precision.
    exact_start: bool,
    image: ExecId,
    /// The parent's image when this process was created.
    parent_exec_id: Option<ExecId>,
}

/// What the startup snapshot read for one process.
pub struct ProcEntry {
    pub tgid: u32,
    pub ppid: u32,
    pub start_ticks: u64,
    pub comm: String,
    pub binary: String,
    pub argv: Vec<String>,
}

/// The identity and image fields of a successful exec.
pub struct ExecInfo {
    pub tgid: u32,
    pub process_start_ns: u64,
    pub exec_ns: u64,
    pub parent_tgid: u32,
    pub parent_start_ns: u64,
    pub binary: String,
    pub argv: Vec<String>,
    pub comm: String,
    pub uid: u32,
    pub cgroup_id: u64,
    /// Read from /proc by the caller; `None` falls back to the image it replaces.
    pub container: Option<Arc<Container>>,
}

pub struct ProcessTable {
    boot_tag: String,
    running: HashMap<u32, Process>,
    images: HashMap<ExecId, Image>,
    exited: VecDeque<ExecId>,
}

impl ProcessTable {
    /// `boot_id` is `/proc/sys/kernel/random/boot_id`; its first 8 hex digits tag every exec id.
    pub fn new(boot_id: &str) -> Self {
        let boot_tag: String = boot_id
            .chars()
            .filter(|c| c.is_ascii_hexdigit())
            .take(8)
            .collect();
        ProcessTable {
            boot_tag,
            running: HashMap::new(),
            images: HashMap::new(),
            exited: VecDeque::new(),
        }
    }

    fn exec_id(&self, tgid: u32, image_start_ns: u64) -> ExecId {
        format!("{}-{}-{}", self.boot_tag, tgid, image_start_ns).into()
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn image(&self, exec_id: &str) -> Option<&Image> {
        self.images.get(exec_id)
    }

    /// The image the running process `tgid` executes now.
    pub fn image_of_tgid(&self, tgid: u32) -> Option<&Image> {
        self.images.get(&self.running.get(&tgid)?.image)
    }

    /// The image `tgid` runs, if it is the process that started at `start_ns`.
    fn find(&mut self, tgid: u32, start_ns: u64) -> Option<&mut Process> {
        let p = self.running.get_mut(&tgid)?;
        if p.start_ns == start_ns {
            return Some(p);
        }
        if !p.exact_start && p.start_ns / USER_HZ_NS == start_ns / USER_HZ_NS {
            // The snapshot's tick-precision time matches: learn the exact one.
            p.start_ns = start_ns;
            p.exact_start = true;
            return Some(p);
        }
        None
    }

    /// The current exec id of a process, creating an `Unknown` entry if we never saw it start.
    pub fn current(&mut self, tgid: u32, start_ns: u64, comm: &str) -> ExecId {
        if let Some(p) = self.find(tgid, start_ns) {
            return p.image.clone();
        }
        self.add_process(
            tgid,
            start_ns,
            true,
            None,
            None,
            Origin::Unknown,
            String::new(),
            Vec::new(),
            comm.into(),
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one constructor for every origin"
    )]
    fn add_process(
        &mut self,
        tgid: u32,
        start_ns: u64,
        exact_start: bool,
        parent_exec_id: Option<ExecId>,
        previous_exec_id: Option<ExecId>,
        origin: Origin,
        binary: String,
        argv: Vec<String>,
        comm: String,
    ) -> ExecId {
        let exec_id = self.exec_id(tgid, start_ns);
        self.images.insert(
            exec_id.clone(),
            Image {
                exec_id: exec_id.clone(),
                parent_exec_id: parent_exec_id.clone(),
                previous_exec_id,
                tgid,
                binary,
                argv,
                comm,
                origin,
                uid: 0,
                cgroup_id: 0,
                recent_events: VecDeque::new(),
                container: None,
            },
        );
        if let Some(old) = self.running.insert(
            tgid,
            Process {
                start_ns,
                exact_start,
                image: exec_id.clone(),
                parent_exec_id,
            },
        ) {
            // The pid was reused and we missed the old process's exit.
            self.retire(old.image);
        }
        exec_id
    }

    /// Sets the container of an image (snapshot and fork children learn theirs this way).
    pub fn set_container(&mut self, exec_id: &str, container: Option<Arc<Container>>) {
        if let Some(img) = self.images.get_mut(exec_id) {
            img.container = container;
        }
    }

    /// Loads the processes running at startup. Parents are linked after all are known.
    pub fn load_snapshot(&mut self, entries: Vec<ProcEntry>) -> Vec<ExecId> {
        let mut ids = Vec::with_capacity(entries.len());
        let mut parents = Vec::with_capacity(entries.len());
        for e in entries {
            let start_ns = e.start_ticks * USER_HZ_NS;
            let id = self.add_process(
                e.tgid,
                start_ns,
                false,
                None,
                None,
                Origin::Snapshot,
                e.binary,
                e.argv,
                e.comm,
            );
            parents.push((id.clone(), e.ppid));
            ids.push(id);
        }
        for (id, ppid) in parents {
            let parent = self.running.get(&ppid).map(|p| p.image.clone());
            if let Some(img) = self.images.get_mut(&id) {
                img.parent_exec_id = parent.clone();
            }
            if let Some(p) = self.running.get_mut(&self.images[&id].tgid) {
                p.parent_exec_id = parent;
            }
        }
        ids
    }

    /// A new process (not a thread): it starts out running its parent's image.
    pub fn on_fork(
        &mut self,
        parent_tgid: u32,
        parent_start_ns: u64,
        parent_comm: &str,
        child_tgid: u32,
        child_start_ns: u64,
    ) -> (ExecId, ExecId) {
        let parent = self.current(parent_tgid, parent_start_ns, parent_comm);
        if let Some(existing) = self.find(child_tgid, child_start_ns) {
            // Already known (the startup snapshot raced with the fork).
            return (parent, existing.image.clone());
        }
        let (binary, argv, comm, container) = self
            .images
            .get(&parent)
            .map(|i| {
                (
                    i.binary.clone(),
                    i.argv.clone(),
                    i.comm.clone(),
                    i.container.clone(),
                )
            })
            .unwrap_or_default();
        let child = self.add_process(
            child_tgid,
            child_start_ns,
            true,
            Some(parent.clone()),
            None,
            Origin::Fork,
            binary,
            argv,
            comm,
        );
        self.set_container(&child, container);
        (parent, child)
    }

    /// A successful exec: a new image in an existing (or newly discovered) process.
    pub fn on_exec(&mut self, exec: ExecInfo) -> Image {
        let ExecInfo {
            tgid,
            process_start_ns,
            exec_ns,
            parent_tgid,
            parent_start_ns,
            binary,
            argv,
            comm,
            uid,
            cgroup_id,
            container,
        } = exec;
        let (parent, previous) = match self.find(tgid, process_start_ns) {
            Some(p) => (p.parent_exec_id.clone(), Some(p.image.clone())),
            None => (self.running_image(parent_tgid, parent_start_ns), None),
        };
        let exec_id = self.exec_id(tgid, exec_ns);
        // A process that already exited is not in /proc any more: its cgroup is the one it
        // was forked into, i.e. the replaced image's or the parent's.
        let container = container.or_else(|| {
            [previous.as_ref(), parent.as_ref()]
                .into_iter()
                .flatten()
                .find_map(|id| self.images.get(id)?.container.clone())
        });
        let image = Image {
            exec_id: exec_id.clone(),
            parent_exec_id: parent.clone(),
            previous_exec_id: previous.clone(),
            tgid,
            binary,
            argv,
            comm,
            origin: Origin::Exec,
            uid,
            cgroup_id,
            recent_events: VecDeque::new(),
            container,
        };
        self.images.insert(exec_id.clone(), image.clone());
        let replaced = self.running.insert(
            tgid,
            Process {
                start_ns: process_start_ns,
                exact_start: true,
                image: exec_id,
                parent_exec_id: parent,
            },
        );
        if let Some(old) = replaced {
            if Some(&old.image) != previous.as_ref() {
                self.retire(old.image);
            }
        }
        if let Some(prev) = previous {
            self.retire(prev);
        }
        image
    }

    fn running_image(&mut self, tgid: u32, start_ns: u64) -> Option<ExecId> {
        self.find(tgid, start_ns).map(|p| p.image.clone())
    }

    /// The last task of a process exited.
    pub fn on_exit(&mut self, tgid: u32, start_ns: u64) -> Option<ExecId> {
        let id = self.running_image(tgid, start_ns)?;
        self.running.remove(&tgid);
        self.retire(id.clone());
        Some(id)
    }

    /// Keeps an image that no longer runs for a while, for the ancestry of its descendants.
    fn retire(&mut self, id: ExecId) {
        self.exited.push_back(id);
        while self.exited.len() > EXITED_RETAINED {
            if let Some(old) = self.exited.pop_front() {
                let still_running = self.running.values().any(|p| p.image == old);
                if !still_running {
                    self.images.remove(&old);
                }
            }
        }
    }

    /// Keeps an event of an image for lineage queries (the newest few per image).
    pub fn remember(&mut self, exec_id: &str, event_json: Arc<str>) {
        if let Some(img) = self.images.get_mut(exec_id) {
            if img.recent_events.len() == RECENT_EVENTS {
                img.recent_events.pop_front();
            }
            img.recent_events.push_back(event_json);
        }
    }

    /// An image, its ancestors (nearest first) and its known descendants.
    pub fn lineage(&self, exec_id: &str) -> Option<Lineage<'_>> {
        let node = self.images.get(exec_id)?;
        let ancestors = self
            .ancestors(exec_id)
            .iter()
            .filter_map(|id| self.images.get(id))
            .collect();
        // Answered on the capture thread between drains: walk parent links without
        // allocating (the old per-image ancestor vectors made a query cost ~0.5 s).
        let descendants = self
            .images
            .values()
            .filter(|img| img.exec_id.as_ref() != exec_id && self.descends_from(img, exec_id))
            .take(MAX_DESCENDANTS)
            .collect();
        Some(Lineage {
            ancestors,
            node,
            descendants,
        })
    }

    /// Whether `root` is among `img`'s ancestors (at most [`MAX_ANCESTRY`] generations up).
    fn descends_from(&self, img: &Image, root: &str) -> bool {
        let mut cur = img.parent_exec_id.as_deref();
        for _ in 0..MAX_ANCESTRY {
            match cur {
                Some(id) if id == root => return true,
                Some(id) => {
                    cur = self
                        .images
                        .get(id)
                        .and_then(|i| i.parent_exec_id.as_deref())
                }
                None => return false,
            }
        }
        false
    }

    /// Whether `exec_id` currently runs in its process.
    pub fn is_running(&self, img: &Image) -> bool {
        self.running
            .get(&img.tgid)
            .is_some_and(|p| p.image == img.exec_id)
    }

    /// Parent, grandparent, … of an image, nearest first.
    pub fn ancestors(&self, exec_id: &str) -> Vec<ExecId> {
        let mut out = Vec::new();
        let mut cur = self
            .images
            .get(exec_id)
            .and_then(|i| i.parent_exec_id.clone());
        while let Some(id) = cur {
            if out.len() >= MAX_ANCESTRY || out.contains(&id) {
                break;
            }
            cur = self.images.get(&id).and_then(|i| i.parent_exec_id.clone());
            out.push(id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(tgid: u32, start: u64, at: u64, ptgid: u32, pstart: u64, binary: &str) -> ExecInfo {
        ExecInfo {
            tgid,
            process_start_ns: start,
            exec_ns: at,
            parent_tgid: ptgid,
            parent_start_ns: pstart,
            binary: binary.into(),
            argv: vec![],
            comm: binary.rsplit('/').next().unwrap().into(),
            uid: 0,
            cgroup_id: 0,
            container: None,
        }
    }

    #[test]
    fn lineage_query_finds_ancestors_and_descendants() {
        let mut t = table();
        let sh = t.on_exec(exec(100, 1_000, 1_500, 1, 0, "/bin/sh"));
        let (_, child) = t.on_fork(100, 1_000, "sh", 101, 2_000);
        let echo = t.on_exec(exec(101, 2_000, 2_500, 100, 1_000, "/bin/echo"));
        t.remember(&echo.exec_id, "{\"kind\":\"exec\"}".into());
        let l = t.lineage(&sh.exec_id).unwrap();
        let ids: Vec<&str> = l.descendants.iter().map(|i| i.exec_id.as_ref()).collect();
        assert!(ids.contains(&echo.exec_id.as_ref()) && ids.contains(&child.as_ref()));
        let l = t.lineage(&echo.exec_id).unwrap();
        assert_eq!(l.ancestors[0].exec_id, sh.exec_id);
        assert_eq!(l.node.recent_events.len(), 1);
        assert!(t.is_running(l.node));
    }

    fn table() -> ProcessTable {
        ProcessTable::new("0123abcd-0000-0000-0000-000000000000")
    }

    #[test]
    fn fork_then_exec_links_to_parent_image() {
        let mut t = table();
        let sh = t.on_exec(exec(100, 1_000, 1_500, 1, 0, "/bin/sh"));
        let (parent, child) = t.on_fork(100, 1_000, "sh", 101, 2_000);
        assert_eq!(parent, sh.exec_id);
        assert_eq!(
            t.image(&child).unwrap().parent_exec_id.as_ref(),
            Some(&sh.exec_id)
        );
        let echo = t.on_exec(exec(101, 2_000, 2_500, 100, 1_000, "/bin/echo"));
        assert_eq!(echo.parent_exec_id.as_ref(), Some(&sh.exec_id));
        assert_eq!(echo.previous_exec_id.as_ref(), Some(&child));
        assert_eq!(t.ancestors(&echo.exec_id)[0], sh.exec_id);
        assert_eq!(&*echo.exec_id, "0123abcd-101-2500");
    }

    #[test]
    fn pid_reuse_does_not_mislink() {
        let mut t = table();
        let old = t.on_exec(exec(200, 1_000, 1_100, 1, 0, "/a"));
        t.on_exit(200, 1_000);
        // Same pid, later start: a different process.
        let new = t.on_exec(exec(200, 9_000, 9_100, 1, 0, "/b"));
        assert_ne!(old.exec_id, new.exec_id);
        assert_eq!(new.previous_exec_id, None);
        // An exit record for the old process does not retire the new one.
        assert_eq!(t.on_exit(200, 1_000), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn snapshot_processes_match_exact_times_at_tick_precision() {
        let mut t = table();
        let ids = t.load_snapshot(vec![
            ProcEntry {
                tgid: 1,
                ppid: 0,
                start_ticks: 1,
                comm: "init".into(),
                binary: "/sbin/init".into(),
                argv: vec![],
            },
            ProcEntry {
                tgid: 50,
                ppid: 1,
                start_ticks: 123,
                comm: "bash".into(),
                binary: "/bin/bash".into(),
                argv: vec![],
            },
        ]);
        assert_eq!(
            t.image(&ids[1]).unwrap().parent_exec_id.as_ref(),
            Some(&ids[0])
        );
        // The kernel reports bash's start in ns: 1.234_567_89 s lies in tick 123.
        let (parent, child) = t.on_fork(50, 1_234_567_890, "bash", 60, 5_000_000_000);
        assert_eq!(parent, ids[1]);
        assert_eq!(t.ancestors(&child), vec![ids[1].clone(), ids[0].clone()]);
    }
}
