//! Records → lineage events: joins each record with the process table, tracks sequences.
//!
//! Single-threaded and synchronous on purpose: it is the per-event hot path, and ordering
//! matters (the exec-args record must be seen before the exec it belongs to).

use std::{collections::HashMap, time::Instant};

use lineage_common::{exec_flags, RecordKind, CLONE_THREAD, KIND_SLOTS};

use crate::{
    capture::decode::{self, c_str, ExecArgs, Record},
    capture::event::{errno_name, split_exit_code, Creds, Detail, Event},
    capture::fileops,
    capture::lineage::{self, ExecId, ExecInfo, ProcEntry, ProcessTable},
    capture::loss::{LossReport, SequenceTracker},
    capture::stats::Stats,
    capture::{sysops, uring},
};

/// Unjoined exec-args records kept at most (their exec record may have been lost).
const PENDING_ARGS_MAX: usize = 4096;

pub struct Pipeline {
    table: ProcessTable,
    tracker: SequenceTracker,
    /// exec-args records by thread id, waiting for the outcome of that exec.
    pending_args: HashMap<u32, ExecArgs>,
    /// io_uring requests submitted and not yet completed.
    uring: uring::InFlight,
    /// Events produced besides the one `handle` returns (io_uring requests pushed out of the
    /// in-flight table); taken with [`Pipeline::take_extra`].
    extra: Vec<Event>,
    pub stats: Stats,
    /// procfs, for resolving relative paths.
    proc_root: std::path::PathBuf,
}

impl Pipeline {
    pub fn new(boot_id: &str, cpus: usize, grace: std::time::Duration) -> Self {
        Pipeline {
            table: ProcessTable::new(boot_id),
            tracker: SequenceTracker::new(cpus, KIND_SLOTS as usize, grace),
            pending_args: HashMap::new(),
            uring: uring::InFlight::default(),
            extra: Vec::new(),
            stats: Stats::default(),
            proc_root: "/proc".into(),
        }
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    pub fn table_mut(&mut self) -> &mut ProcessTable {
        &mut self.table
    }

    /// Loads the startup snapshot and returns one event per process found.
    pub fn snapshot(&mut self, entries: Vec<ProcEntry>, now_ns: u64) -> Vec<Event> {
        let ids = self.table.load_snapshot(entries);
        for id in &ids {
            if let Some(tgid) = self.table.image(id).map(|i| i.tgid) {
                let container = lineage::container_of(&self.proc_root, tgid);
                self.table.set_container(id, container);
            }
        }
        ids.into_iter()
            .filter_map(|id| {
                let img = self.table.image(&id)?.clone();
                Some(Event {
                    container: img.container.clone(),
                    time_ns: now_ns,
                    pid: img.tgid,
                    tgid: img.tgid,
                    parent_exec_id: img.parent_exec_id.clone(),
                    ancestors: Vec::new(),
                    exec_id: Some(id),
                    cpu: None,
                    seq: None,
                    creds: None,
                    detail: Detail::Snapshot {
                        binary: img.binary,
                        argv: img.argv,
                        comm: img.comm,
                        origin: img.origin,
                    },
                })
            })
            .collect()
    }

    /// One ring-buffer record. Returns the event it produced, if any.
    pub fn handle(&mut self, bytes: &[u8], now: Instant) -> Option<Event> {
        let header = match decode::decode_header(bytes) {
            Ok(h) => h,
            Err(e) => {
                self.stats.decode_error(&e);
                return None;
            }
        };
        // Account the sequence number even if the body turns out malformed.
        self.tracker.observe(header.cpu, header.seq, now);
        let record = match decode::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.stats.decode_error(&e);
                return None;
            }
        };
        self.stats.record(header.kind);
        self.apply(record)
    }

    /// Events made besides the ones `handle` returned (io_uring requests without a completion).
    pub fn take_extra(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.extra)
    }

    /// At shutdown: io_uring requests whose completion never came, as events without a result.
    pub fn drain_in_flight(&mut self) -> Vec<Event> {
        for rec in self.uring.drain() {
            let event = self.uring_event(&rec, None);
            self.extra.push(event);
        }
        self.take_extra()
    }

    fn uring_event(&mut self, rec: &lineage_common::IoUringRecord, res: Option<i64>) -> Event {
        let h = rec.header;
        let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
        let detail = uring::detail(rec, res, &self.proc_root);
        let image = self.table.image(&exec_id);
        Event {
            container: image.and_then(|i| i.container.clone()),
            time_ns: h.ktime_ns,
            pid: h.pid,
            tgid: h.tgid,
            ancestors: Vec::new(),
            parent_exec_id: image.and_then(|i| i.parent_exec_id.clone()),
            exec_id: Some(exec_id),
            cpu: Some(h.cpu),
            seq: Some(h.seq),
            creds: Some(Creds::of(&h)),
            detail,
        }
    }

    fn apply(&mut self, record: Record) -> Option<Event> {
        let h = *record.header();
        let base = |exec_id: Option<ExecId>, table: &ProcessTable, detail: Detail| {
            let image = exec_id.as_ref().and_then(|id| table.image(id));
            let parent = image.and_then(|i| i.parent_exec_id.clone());
            let container = image.and_then(|i| i.container.clone());
            Event {
                container,
                time_ns: h.ktime_ns,
                pid: h.pid,
                tgid: h.tgid,
                // Filled by the outputs only when someone reads it (see agent.rs).
                ancestors: Vec::new(),
                parent_exec_id: parent,
                exec_id,
                cpu: Some(h.cpu),
                seq: Some(h.seq),
                creds: Some(Creds::of(&h)),
                detail,
            }
        };
        match record {
            Record::ExecArgs(args) => {
                if self.pending_args.len() >= PENDING_ARGS_MAX {
                    self.stats.args_unjoined += self.pending_args.len() as u64;
                    self.pending_args.clear();
                }
                self.pending_args.insert(h.pid, args);
                None
            }
            Record::Exec(rec) => {
                // argv comes from the new image itself; the entry-time copy only says whether
                // the call came through the 32-bit entry.
                let args = self.pending_args.remove(&rec.old_tid);
                let binary = String::from_utf8_lossy(rec.exe()).into_owned();
                let filename = String::from_utf8_lossy(rec.filename()).into_owned();
                let argv = rec.argv();
                let comm = c_str(&rec.comm);
                let unset = |v: u32| (v != u32::MAX).then_some(v);
                let tty = rec.tty();
                let image = self.table.on_exec(ExecInfo {
                    tgid: h.tgid,
                    process_start_ns: h.proc_start_ns,
                    exec_ns: h.ktime_ns,
                    parent_tgid: rec.parent_tgid,
                    parent_start_ns: rec.parent_start_ns,
                    binary: binary.clone(),
                    argv: argv.clone(),
                    comm: comm.clone(),
                    uid: h.uid,
                    cgroup_id: rec.cgroup_id,
                    container: lineage::container_of(&self.proc_root, h.tgid),
                });
                let detail = Detail::Exec {
                    binary,
                    dev: fileops::dev_text(rec.exe_dev),
                    ino: rec.exe_ino,
                    binary_deleted: rec.flags & exec_flags::EXE_DELETED != 0,
                    filename,
                    argv,
                    args_truncated: rec.flags & exec_flags::ARGS_TRUNCATED != 0,
                    previous_exec_id: image.previous_exec_id.clone(),
                    comm,
                    ppid: rec.parent_tgid,
                    cgroup_id: rec.cgroup_id,
                    args_captured: rec.flags & exec_flags::ARGS_READ_FAILED == 0,
                    compat: args
                        .as_ref()
                        .is_some_and(|a| a.flags & exec_flags::COMPAT != 0),
                    loginuid: unset(rec.loginuid),
                    sessionid: unset(rec.sessionid),
                    tty: (!tty.is_empty()).then_some(tty),
                };
                Some(base(Some(image.exec_id), &self.table, detail))
            }
            Record::ExecFailed(rec) => {
                let args = self.pending_args.remove(&h.pid);
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                let (filename, argv) = args
                    .map(|a| (String::from_utf8_lossy(&a.filename).into_owned(), a.argv()))
                    .unwrap_or_default();
                let detail = Detail::ExecFailed {
                    filename,
                    argv,
                    errno: rec.errno,
                    error: errno_name(rec.errno),
                };
                Some(base(Some(exec_id), &self.table, detail))
            }
            Record::Fork(rec) => {
                let thread = rec.clone_flags & CLONE_THREAD != 0;
                let (parent, child) = if thread {
                    (self.table.current(h.tgid, h.proc_start_ns, ""), None)
                } else {
                    let (p, c) = self.table.on_fork(
                        h.tgid,
                        h.proc_start_ns,
                        "",
                        rec.child_tgid,
                        rec.child_start_ns,
                    );
                    (p, Some(c))
                };
                let detail = Detail::Fork {
                    child_pid: rec.child_pid,
                    child_tgid: rec.child_tgid,
                    thread,
                    child_exec_id: child,
                    clone_flags: rec.clone_flags,
                };
                Some(base(Some(parent), &self.table, detail))
            }
            Record::FileOp(f) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                let detail = fileops::file_detail(&f, &self.proc_root);
                Some(base(Some(exec_id), &self.table, detail))
            }
            Record::Net(n) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                Some(base(Some(exec_id), &self.table, fileops::net_detail(&n)))
            }
            Record::IoUring(rec) => {
                for old in self.uring.submit(rec) {
                    let event = self.uring_event(&old, None);
                    self.extra.push(event);
                }
                None
            }
            Record::IoUringDone(done) => match self.uring.complete(&done) {
                Some(rec) => Some(self.uring_event(&rec, Some(i64::from(done.res)))),
                // Its submission was lost (declared as LOSS by its sequence gap).
                None => {
                    self.stats.uring_unjoined += 1;
                    None
                }
            },
            Record::IoUringSetup(r) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                let create = r.what == 0;
                let detail = Detail::IoUringSetup {
                    op: if create { "create" } else { "register" },
                    ring: format!("{:#x}", r.ctx),
                    fd: create.then_some(r.fd),
                    sq_entries: create.then_some(r.a),
                    cq_entries: create.then_some(r.b),
                    setup_flags: create.then_some(r.c),
                    register_opcode: (!create).then_some(r.a),
                    result: (!create).then_some(r.ret),
                };
                Some(base(Some(exec_id), &self.table, detail))
            }
            Record::Syscall(r) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                Some(base(Some(exec_id), &self.table, sysops::syscall_detail(&r)))
            }
            Record::Signal(r) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                Some(base(Some(exec_id), &self.table, sysops::signal_detail(&r)))
            }
            Record::CommChange(r) => {
                let exec_id = self.table.current(h.tgid, h.proc_start_ns, "");
                Some(base(Some(exec_id), &self.table, sysops::comm_detail(&r)))
            }
            Record::Exit(rec) => {
                let process = rec.group_dead != 0;
                let exec_id = if process {
                    let id = self.table.on_exit(h.tgid, h.proc_start_ns);
                    self.pending_args.remove(&h.pid);
                    id
                } else {
                    self.table.current(h.tgid, h.proc_start_ns, "").into()
                };
                let (code, signal, core_dumped) = split_exit_code(rec.exit_code);
                let mut event = base(
                    exec_id.clone(),
                    &self.table,
                    Detail::Exit {
                        code,
                        signal,
                        core_dumped,
                        process,
                    },
                );
                if process && event.parent_exec_id.is_none() {
                    // The image was just retired; its record is still retained for ancestry.
                    event.parent_exec_id = exec_id.and_then(|id| {
                        self.table.image(&id).and_then(|i| i.parent_exec_id.clone())
                    });
                }
                Some(event)
            }
        }
    }

    /// Matches confirmed sequence gaps with the kernel's counters (`failures[cpu][kind]`).
    pub fn reconcile(&mut self, failures: &[Vec<u64>], now: Instant, now_ns: u64) -> Vec<Event> {
        let reports = self.tracker.reconcile(failures, now);
        reports
            .into_iter()
            .map(|r| self.loss_event(r, now_ns))
            .collect()
    }

    /// After the final drain: everything the kernel numbered but we never received is loss.
    pub fn close(&mut self, next_seq: &[u64], now: Instant) {
        self.tracker.close(next_seq, now);
    }

    fn loss_event(&mut self, r: LossReport, now_ns: u64) -> Event {
        self.stats.lost_records += r.missing;
        self.stats.unexplained_loss += r.unexplained;
        let failures: Vec<(&'static str, u64)> = r
            .failures_by_kind
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(kind, n)| {
                let name = RecordKind::try_from(kind as u32)
                    .map(RecordKind::name)
                    .unwrap_or("unknown");
                (name, *n)
            })
            .collect();
        let failures_total = r.failures_total;
        for (name, n) in &failures {
            self.stats.reserve_failed(name, *n);
        }
        if r.unexplained > 0 {
            tracing::error!(
                cpu = r.cpu,
                missing = r.missing,
                unexplained = r.unexplained,
                "records lost without a kernel counter explaining them"
            );
        } else {
            let by_kind: Vec<String> = failures.iter().map(|(k, n)| format!("{n} {k}")).collect();
            tracing::warn!(
                cpu = r.cpu,
                missing = r.missing,
                "ring buffer full: records lost and counted ({})",
                by_kind.join(", ")
            );
        }
        Event {
            container: None,
            time_ns: now_ns,
            pid: 0,
            tgid: 0,
            exec_id: None,
            parent_exec_id: None,
            ancestors: Vec::new(),
            cpu: None,
            seq: None,
            creds: None,
            detail: Detail::Loss {
                loss_cpu: r.cpu,
                ranges: r.gaps.iter().map(|g| (g.from, g.to)).collect(),
                missing: r.missing,
                failures,
                failures_total,
                unexplained: r.unexplained,
            },
        }
    }
}
