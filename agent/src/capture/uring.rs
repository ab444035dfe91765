//! io_uring records → events. A request is recorded at submission (with the kernel's copy of
//! its path or address) and its result at completion; the two are joined here by the request
//! pointer, so the chain holds one event per request, in completion order. Requests still
//! waiting when the table is full or the agent stops are emitted without a result
//! (`incomplete`), never dropped.

use std::{collections::HashMap, path::Path};

use lineage_common::{
    io_uring_flags, FileOpRecord, IoUringDoneRecord, IoUringRecord, NetRecord, IO_URING_NET,
};

use crate::capture::{
    decode::FileOp,
    event::{Detail, IoUringOp},
    fileops, names,
};

/// Requests in flight kept at most; beyond it the oldest are emitted without a result.
const IN_FLIGHT_MAX: usize = 8192;
/// `path_flags` bit set when `prep` refused the request (see agent-ebpf io_uring.rs).
const PREP_FAILED: u32 = 1 << 9;
/// `IOSQE_FIXED_FILE` in the SQE flags.
const IOSQE_FIXED_FILE: u32 = 1;

#[derive(Default)]
pub struct InFlight {
    /// Submissions by request pointer, with an arrival number for oldest-first eviction.
    requests: HashMap<u64, (u64, Box<IoUringRecord>)>,
    arrivals: u64,
}

impl InFlight {
    /// Keeps a submission; returns requests pushed out by the size bound (to emit as-is).
    pub fn submit(&mut self, rec: Box<IoUringRecord>) -> Vec<IoUringRecord> {
        let mut evicted = Vec::new();
        if self.requests.len() >= IN_FLIGHT_MAX {
            let mut all: Vec<_> = self.requests.drain().map(|(_, v)| v).collect();
            all.sort_by_key(|(n, _)| *n);
            let keep = all.split_off(all.len() / 2);
            evicted = all.into_iter().map(|(_, r)| *r).collect();
            self.requests = keep.into_iter().map(|(n, r)| (r.req, (n, r))).collect();
        }
        self.arrivals += 1;
        // A pointer reused before we saw the old request complete: emit the old one first.
        if let Some((_, old)) = self.requests.insert(rec.req, (self.arrivals, rec)) {
            evicted.push(*old);
        }
        evicted
    }

    /// The submission a completion belongs to.
    pub fn complete(&mut self, done: &IoUringDoneRecord) -> Option<Box<IoUringRecord>> {
        self.requests.remove(&done.req).map(|(_, r)| r)
    }

    /// Everything still waiting (at shutdown), oldest first.
    pub fn drain(&mut self) -> Vec<IoUringRecord> {
        let mut all: Vec<_> = self.requests.drain().map(|(_, v)| v).collect();
        all.sort_by_key(|(n, _)| *n);
        all.into_iter().map(|(_, r)| *r).collect()
    }
}

/// The event of one request; `res` is the CQE result, `None` if no completion was seen.
pub fn detail(rec: &IoUringRecord, res: Option<i64>, proc_root: &Path) -> Detail {
    let info = IoUringOp {
        opcode: names::io_uring_opcode(rec.opcode),
        user_data: rec.user_data,
        ring: format!("{:#x}", rec.ctx),
        sq_thread: rec.sq_thread != 0,
        fixed_file: rec.sqe_flags & IOSQE_FIXED_FILE != 0,
        refused: rec.trunc & PREP_FAILED != 0,
        undecoded: rec.trunc & io_uring_flags::UNDECODED != 0,
        incomplete: res.is_none(),
    };
    let result = res.unwrap_or(0);
    if rec.op == 0 || info.refused || info.undecoded {
        let (errno, error) = fileops::errno_of(result);
        return Detail::IoUringRequest {
            io_uring: info,
            fd: (rec.fd >= 0).then_some(rec.fd),
            result: res,
            errno,
            error,
        };
    }
    if rec.op & IO_URING_NET != 0 {
        // SAFETY: all-zero is a valid NetRecord (integers and byte arrays only).
        let mut n: NetRecord = unsafe { std::mem::zeroed() };
        n.header = rec.header;
        n.op = rec.op & 0xff;
        n.result = result;
        n.fd = rec.fd;
        n.family = rec.family;
        n.remote_port = rec.port;
        n.addr_len = rec.addr_len;
        n.addr = rec.addr;
        if n.op == lineage_common::net_op::LISTEN {
            n.remote_port = rec.mode.min(u32::from(u16::MAX)) as u16;
        }
        let mut d = fileops::net_detail(&n);
        match &mut d {
            Detail::Connect { io_uring, .. }
            | Detail::Accept { io_uring, .. }
            | Detail::Socket { io_uring, .. } => *io_uring = Some(info),
            _ => {}
        }
        return d;
    }
    // SAFETY: as above.
    let mut f: FileOpRecord = unsafe { std::mem::zeroed() };
    f.header = rec.header;
    f.op = rec.op;
    f.result = result;
    f.flags = rec.flags;
    f.mode = rec.mode;
    f.dirfd = rec.dirfd;
    f.dirfd2 = rec.dirfd2;
    (f.uid, f.gid) = (u32::MAX, u32::MAX);
    if f.op == lineage_common::file_op::TRUNCATE {
        // ftruncate: the length travels in mode (low) and flags (high); the fd names the file.
        (f.uid, f.gid, f.flags, f.mode) = (rec.mode, rec.flags, lineage_common::AT_EMPTY_PATH, 0);
        f.dirfd = rec.fd;
    } else if rec.path_len == 0 && rec.fd >= 0 && f.op == lineage_common::file_op::SETXATTR {
        f.flags |= lineage_common::AT_EMPTY_PATH;
        f.dirfd = rec.fd;
    }
    f.trunc = rec.trunc & 0xff;
    // The names are the kernel's copies (struct filename) but still as given: relative ones are
    // joined to the directory in userspace.
    f.source = lineage_common::path_source::GIVEN;
    f.given_len = rec.path_len;
    f.given2_len = rec.path2_len;
    f.given = rec.path;
    f.given2 = rec.path2;
    let mut d = fileops::file_detail(&FileOp::from_record(f), proc_root);
    if let Detail::File {
        io_uring, syscall, ..
    } = &mut d
    {
        *io_uring = Some(info);
        *syscall = None;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use lineage_common::{file_op, RecordHeader, RecordKind};

    fn rec(req: u64, op: u32, opcode: u32, path: &[u8]) -> Box<IoUringRecord> {
        // SAFETY: plain old data.
        let mut r: Box<IoUringRecord> = Box::new(unsafe { std::mem::zeroed() });
        r.header = RecordHeader {
            kind: RecordKind::IoUring as u32,
            tgid: 1,
            ..Default::default()
        };
        (r.req, r.op, r.opcode, r.fd, r.dirfd) = (req, op, opcode, -1, -100);
        r.path[..path.len()].copy_from_slice(path);
        r.path_len = path.len() as u32;
        r
    }

    #[test]
    fn joins_submission_and_completion() {
        let mut f = InFlight::default();
        assert!(f
            .submit(rec(7, file_op::OPEN, 18, b"/etc/hostname"))
            .is_empty());
        let done = IoUringDoneRecord {
            req: 7,
            res: 5,
            ..Default::default()
        };
        let sub = f.complete(&done).expect("joined");
        match detail(&sub, Some(i64::from(done.res)), Path::new("/proc")) {
            Detail::File {
                op,
                path,
                fd,
                io_uring,
                ..
            } => {
                assert_eq!((op, path.as_str(), fd), ("open", "/etc/hostname", Some(5)));
                assert_eq!(io_uring.unwrap().opcode, "openat");
            }
            other => panic!("{other:?}"),
        }
        assert!(f.complete(&done).is_none(), "a completion joins once");
    }

    #[test]
    fn bounded_and_drained_never_dropped() {
        let mut f = InFlight::default();
        let mut out = 0;
        for i in 0..(IN_FLIGHT_MAX as u64 + 10) {
            out += f.submit(rec(i, file_op::UNLINK, 36, b"x")).len();
        }
        out += f.drain().len();
        assert_eq!(out, IN_FLIGHT_MAX + 10);
    }
}
