//! io_uring: file and socket requests submitted through a ring never enter the syscalls the
//! other probes watch. They are recorded from the `io_uring` tracepoints:
//!
//! - `io_uring_submit_req` fires after the request was prepared (`io_init_req` → the opcode's
//!   `prep`), before it runs, in the submitter's context (or the SQPOLL thread's, a thread of the
//!   same process). The path or address comes from the kernel's copy in the prepared request:
//!   the `struct filename` that `prep` took with `getname`, or the sockaddr it moved into the
//!   request's `io_async_msghdr`, so user memory changed after submission cannot alter it.
//! - `io_uring_req_failed` fires instead when `prep` refused the request: recorded with its
//!   opcode and no path.
//! - `io_uring_complete` fires when the CQE is posted: the result of a recorded request.
//! - `io_uring_create` / `io_uring_register`: ring set-up and registrations.
//!
//! Tracepoint field offsets come from tracefs (`IO_URING_TP`), struct member offsets from BTF
//! (`CAPTURE_OFFSETS`); without the latter a request is recorded with its opcode and fd only,
//! flagged `UNDECODED`. Checked against Linux 6.18.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel, bpf_probe_read_kernel_buf, generated::bpf_probe_read_kernel_str,
    },
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use lineage_common::{
    builtin_rule, file_op, io_uring_flags, net_op, path_flags, rule_action, IoUringDoneRecord,
    IoUringRecord, IoUringSetupRecord, RecordKind, IO_URING_NET, PATH_CAP,
};

use crate::{
    cap_off,
    emit::{count_failure, header, observed_task, reserve, submit_flags},
    filter,
    maps::{PeerKey, EVENTS, IO_URING_REQS, IO_URING_SCRATCH, PATH_FILTER, SEND_PEERS},
    tp_off,
};

/// `IORING_OP_*` (include/uapi/linux/io_uring.h).
mod opcode {
    pub const SENDMSG: u8 = 9;
    pub const ACCEPT: u8 = 13;
    pub const CONNECT: u8 = 16;
    pub const OPENAT: u8 = 18;
    pub const SEND: u8 = 26;
    pub const OPENAT2: u8 = 28;
    pub const RENAMEAT: u8 = 35;
    pub const UNLINKAT: u8 = 36;
    pub const MKDIRAT: u8 = 37;
    pub const SYMLINKAT: u8 = 38;
    pub const LINKAT: u8 = 39;
    pub const FSETXATTR: u8 = 41;
    pub const SETXATTR: u8 = 42;
    pub const SOCKET: u8 = 45;
    pub const URING_CMD: u8 = 46;
    pub const SEND_ZC: u8 = 47;
    pub const SENDMSG_ZC: u8 = 48;
    pub const FTRUNCATE: u8 = 55;
    pub const BIND: u8 = 56;
    pub const LISTEN: u8 = 57;
}

const AT_REMOVEDIR: u32 = 0x200;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const AF_UNIX: u16 = 1;
/// `path_flags` bit: `prep` refused the request (`io_uring_req_failed`).
const PREP_FAILED: u32 = 1 << 9;

/// The record `op` of an opcode we record; 0 for a recorded but undecoded one (socket,
/// uring_cmd); `None` for reads, writes, polls and the like.
#[inline(always)]
fn op_of(opcode: u8) -> Option<u32> {
    Some(match opcode {
        opcode::OPENAT | opcode::OPENAT2 => file_op::OPEN,
        opcode::RENAMEAT => file_op::RENAME,
        opcode::UNLINKAT => file_op::UNLINK,
        opcode::MKDIRAT => file_op::MKDIR,
        opcode::SYMLINKAT => file_op::SYMLINK,
        opcode::LINKAT => file_op::LINK,
        opcode::FSETXATTR | opcode::SETXATTR => file_op::SETXATTR,
        opcode::FTRUNCATE => file_op::TRUNCATE,
        opcode::CONNECT => IO_URING_NET | net_op::CONNECT,
        opcode::ACCEPT => IO_URING_NET | net_op::ACCEPT,
        opcode::BIND => IO_URING_NET | net_op::BIND,
        opcode::LISTEN => IO_URING_NET | net_op::LISTEN,
        opcode::SEND | opcode::SENDMSG | opcode::SEND_ZC | opcode::SENDMSG_ZC => {
            IO_URING_NET | net_op::SEND
        }
        opcode::SOCKET | opcode::URING_CMD => 0,
        _ => return None,
    })
}

#[inline(always)]
fn kread<T: Default>(base: u64, off: u32) -> T {
    if base == 0 {
        return T::default();
    }
    // SAFETY: the helper validates the kernel address.
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.unwrap_or_default()
}

/// Copies the string of a `struct filename *` into `dst`; returns (length, truncation flag).
#[inline(always)]
fn read_filename(filename: u64, dst: *mut u8, truncated: u32) -> (u32, u32) {
    let name: u64 = kread(filename, cap_off!(filename_name));
    if name == 0 {
        return (0, path_flags::PATH_UNREADABLE);
    }
    // SAFETY: kernel memory through the checked helper, at most PATH_CAP bytes.
    let n = unsafe { bpf_probe_read_kernel_str(dst.cast(), PATH_CAP as u32, name as *const _) };
    if n <= 0 {
        return (0, path_flags::PATH_UNREADABLE);
    }
    let len = (n as u32 - 1) & (PATH_CAP as u32 - 1);
    let over = n as usize == PATH_CAP && kread::<u8>(name, PATH_CAP as u32 - 1) != 0;
    (len, if over { truncated } else { 0 })
}

/// Whether the op passes the op and actor filters.
#[inline(always)]
fn allowed(op: u32) -> bool {
    let cfg = filter::config();
    let bit = if op & IO_URING_NET != 0 {
        16 + (op & 0xff)
    } else {
        op & 0x1f
    };
    if op != 0 && cfg.disabled_ops & (1 << bit) != 0 {
        filter::count(builtin_rule::OP_DISABLED);
        return false;
    }
    filter::actor_allowed(&cfg)
}

#[tracepoint]
pub fn io_uring_submit_req(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx, false);
    0
}

#[tracepoint]
pub fn io_uring_req_failed(ctx: TracePointContext) -> u32 {
    let _ = try_submit(&ctx, true);
    0
}

#[inline(always)]
fn field<T: Default>(ctx: &TracePointContext, off: u32) -> T {
    // SAFETY: offsets come from this kernel's tracefs format of the attached tracepoint.
    unsafe { ctx.read_at::<T>(off as usize) }.unwrap_or_default()
}

#[inline(always)]
fn try_submit(ctx: &TracePointContext, failed: bool) -> Option<()> {
    if tp_off!(valid) == 0 {
        return None;
    }
    let (pid, tgid) = observed_task()?;
    let code: u8 = field(
        ctx,
        if failed {
            tp_off!(failed_opcode)
        } else {
            tp_off!(submit_opcode)
        },
    );
    let op = op_of(code)?;
    if !allowed(op) {
        return None;
    }
    let (ring, req, user_data) = if failed {
        (
            field::<u64>(ctx, tp_off!(failed_ctx)),
            field::<u64>(ctx, tp_off!(failed_req)),
            field::<u64>(ctx, tp_off!(failed_user_data)),
        )
    } else {
        (
            field::<u64>(ctx, tp_off!(submit_ctx)),
            field::<u64>(ctx, tp_off!(submit_req)),
            field::<u64>(ctx, tp_off!(submit_user_data)),
        )
    };
    let rec = IO_URING_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: `rec` is this CPU's scratch slot; kernel memory is read through checked helpers.
    unsafe {
        (*rec).ctx = ring;
        (*rec).req = req;
        (*rec).user_data = user_data;
        (*rec).opcode = code as u32;
        (*rec).op = op;
        (*rec).fd = -1;
        (*rec).sqe_flags = if failed {
            0
        } else {
            field::<u64>(ctx, tp_off!(submit_flags)) as u32
        };
        (*rec).sq_thread = if failed {
            0
        } else {
            field::<u8>(ctx, tp_off!(submit_sq_thread)) as u32
        };
        (*rec).dirfd = -100;
        (*rec).dirfd2 = -100;
        (*rec).flags = 0;
        (*rec).mode = 0;
        (*rec).family = 0;
        (*rec).port = 0;
        (*rec).addr_len = 0;
        (*rec)._pad = 0;
        (*rec).path_len = 0;
        (*rec).path2_len = 0;
        (*rec).path_prefix_bits = 0;
        (*rec).trunc = if failed { PREP_FAILED } else { 0 };
        if !failed {
            if cap_off!(io_uring_valid) == 0 {
                (*rec).trunc |= io_uring_flags::UNDECODED;
            } else {
                (*rec).fd = kread::<i32>(req, cap_off!(kiocb_fd));
                decode(rec, code, req);
            }
        }
        if (*rec).path_len > 0 && !path_allowed(rec) {
            return None;
        }
        if op == IO_URING_NET | net_op::SEND && !failed && !new_peer(rec) {
            return None;
        }
        let len = core::mem::size_of::<IoUringRecord>();
        (*rec).header = header(RecordKind::IoUring, len, pid, tgid);
        let bytes = core::slice::from_raw_parts(rec as *const u8, len);
        if EVENTS.output::<[u8]>(bytes, submit_flags()).is_err() {
            count_failure(RecordKind::IoUring);
        }
    }
    let _ = IO_URING_REQS.insert(&req, &1, 0);
    Some(())
}

/// The path-prefix filter on the request's first path (as for syscalls).
#[inline(always)]
unsafe fn path_allowed(rec: *mut IoUringRecord) -> bool {
    (*rec).path_prefix_bits = (*rec).path_len * 8;
    let key = &*(&raw const (*rec).path_prefix_bits as *const Key<[u8; PATH_CAP]>);
    match PATH_FILTER.get(key).copied() {
        Some(rule) if rule.action == rule_action::EXCLUDE => {
            filter::count(rule.rule_id);
            false
        }
        None if filter::config().path_default_exclude != 0 => {
            filter::count(builtin_rule::PATH_NOT_INCLUDED);
            false
        }
        _ => true,
    }
}

/// Fills paths, fds, flags and addresses from the prepared request.
#[inline(always)]
unsafe fn decode(rec: *mut IoUringRecord, code: u8, req: u64) {
    let p1 = (*rec).path.as_mut_ptr();
    let p2 = (*rec).path2.as_mut_ptr();
    let (mut first, mut second) = (0u64, 0u64);
    match code {
        opcode::OPENAT | opcode::OPENAT2 => {
            (*rec).dirfd = kread(req, cap_off!(open_dfd));
            first = kread(req, cap_off!(open_filename));
            (*rec).flags = kread::<u64>(req, cap_off!(open_how)) as u32;
            (*rec).mode = kread::<u64>(req, cap_off!(open_how) + 8) as u32;
        }
        opcode::RENAMEAT => {
            (*rec).dirfd = kread(req, cap_off!(rename_old_dfd));
            (*rec).dirfd2 = kread(req, cap_off!(rename_new_dfd));
            first = kread(req, cap_off!(rename_oldpath));
            second = kread(req, cap_off!(rename_newpath));
            (*rec).flags = kread(req, cap_off!(rename_flags));
        }
        opcode::UNLINKAT => {
            (*rec).dirfd = kread(req, cap_off!(unlink_dfd));
            (*rec).flags = kread(req, cap_off!(unlink_flags));
            first = kread(req, cap_off!(unlink_filename));
            if (*rec).flags & AT_REMOVEDIR != 0 {
                (*rec).op = file_op::RMDIR;
            }
        }
        opcode::MKDIRAT => {
            (*rec).dirfd = kread(req, cap_off!(mkdir_dfd));
            (*rec).mode = kread::<u16>(req, cap_off!(mkdir_mode)) as u32;
            first = kread(req, cap_off!(mkdir_filename));
        }
        opcode::SYMLINKAT | opcode::LINKAT => {
            if code == opcode::LINKAT {
                (*rec).dirfd = kread(req, cap_off!(link_old_dfd));
                (*rec).flags = kread(req, cap_off!(link_flags));
            }
            (*rec).dirfd2 = kread(req, cap_off!(link_new_dfd));
            first = kread(req, cap_off!(link_oldpath));
            second = kread(req, cap_off!(link_newpath));
        }
        opcode::SETXATTR | opcode::FSETXATTR => {
            if code == opcode::SETXATTR {
                first = kread(req, cap_off!(xattr_filename));
            }
            // The attribute name: `struct xattr_name { char name[256]; }`, a kernel copy.
            let kname: u64 = kread(req, cap_off!(xattr_kname));
            if kname != 0 {
                let n = bpf_probe_read_kernel_str(p2.cast(), PATH_CAP as u32, kname as *const _);
                (*rec).path2_len = if n > 0 {
                    (n as u32 - 1) & (PATH_CAP as u32 - 1)
                } else {
                    0
                };
            }
        }
        opcode::FTRUNCATE => {
            let len: u64 = kread(req, cap_off!(ftrunc_len));
            ((*rec).mode, (*rec).flags) = (len as u32, (len >> 32) as u32);
        }
        opcode::LISTEN => (*rec).mode = kread(req, cap_off!(listen_backlog)),
        opcode::CONNECT | opcode::BIND => read_addr(rec, req, true),
        opcode::SEND | opcode::SENDMSG | opcode::SEND_ZC | opcode::SENDMSG_ZC => {
            read_addr(rec, req, false)
        }
        _ => {}
    }
    if first != 0 {
        let (len, t) = read_filename(first, p1, path_flags::PATH_TRUNCATED);
        (*rec).path_len = len;
        (*rec).trunc |= t;
    }
    if second != 0 {
        let (len, t) = read_filename(second, p2, path_flags::PATH2_TRUNCATED);
        (*rec).path2_len = len;
        (*rec).trunc |= t;
    }
}

/// The sockaddr `prep` copied into the kernel. Sends keep it in their `io_async_msghdr`,
/// pointed to by `msg.msg_name` only when the caller named a destination. Connect and bind keep
/// it as the async data itself on Linux 6.18 (a `sockaddr_storage`), inside an
/// `io_async_msghdr` on earlier kernels: a valid family at offset 0 tells the two apart, since
/// the msghdr layout starts with an aligned pointer whose low bits cannot read as 1, 2 or 10.
#[inline(always)]
unsafe fn read_addr(rec: *mut IoUringRecord, req: u64, connect_or_bind: bool) {
    let amsg: u64 = kread(req, cap_off!(kiocb_async_data));
    if amsg == 0 {
        return;
    }
    let sa = if connect_or_bind {
        match kread::<u16>(amsg, 0) {
            AF_INET | AF_INET6 | AF_UNIX => amsg,
            _ => amsg + cap_off!(msg_addr) as u64,
        }
    } else {
        kread::<u64>(amsg, cap_off!(msg_name))
    };
    if sa == 0 {
        return;
    }
    let family: u16 = kread(sa, 0);
    (*rec).family = family;
    match family {
        AF_INET | AF_INET6 => {
            (*rec).port = u16::from_be(kread::<u16>(sa, 2));
            let (at, n) = if family == AF_INET { (4, 4) } else { (8, 16) };
            let dst = &mut (*rec).addr;
            if bpf_probe_read_kernel_buf((sa + at) as *const u8, &mut dst[..n]).is_ok() {
                (*rec).addr_len = n as u16;
            }
        }
        AF_UNIX => {
            let n = bpf_probe_read_kernel_str(
                (*rec).addr.as_mut_ptr().cast(),
                108,
                (sa + 2) as *const _,
            );
            if n > 1 {
                (*rec).addr_len = ((n - 1) as u16).min(108);
            }
        }
        _ => {}
    }
}

/// Sends with a destination are recorded once per (ring and fd, peer): the socket's file is
/// not attached to the request yet at submit, so the ring and fd stand in for it.
#[inline(always)]
unsafe fn new_peer(rec: *mut IoUringRecord) -> bool {
    if (*rec).family == 0 {
        // No destination: the connected peer, recorded at connect.
        return false;
    }
    let mut key = PeerKey {
        ino: (*rec).ctx ^ ((*rec).fd as u32 as u64),
        family: (*rec).family,
        port: (*rec).port,
        _pad: 0,
        addr: [0; 16],
    };
    let addr = &(*rec).addr;
    key.addr.copy_from_slice(&addr[..16]);
    if SEND_PEERS.get(&key).is_some() {
        return false;
    }
    let _ = SEND_PEERS.insert(&key, &1, 0);
    true
}

#[tracepoint]
pub fn io_uring_complete(ctx: TracePointContext) -> u32 {
    if tp_off!(valid) == 0 {
        return 0;
    }
    let req: u64 = field(&ctx, tp_off!(complete_req));
    // SAFETY: a presence check only.
    if unsafe { IO_URING_REQS.get(&req) }.is_none() {
        return 0;
    }
    let _ = IO_URING_REQS.remove(&req);
    // Completions may run in an io-wq worker or task work: still a thread of the submitter.
    let Some((pid, tgid)) = observed_task() else {
        return 0;
    };
    let hdr = header(
        RecordKind::IoUringDone,
        core::mem::size_of::<IoUringDoneRecord>(),
        pid,
        tgid,
    );
    let Some(mut entry) = reserve::<IoUringDoneRecord>(RecordKind::IoUringDone) else {
        return 0;
    };
    entry.write(IoUringDoneRecord {
        header: hdr,
        ctx: field(&ctx, tp_off!(complete_ctx)),
        req,
        user_data: field(&ctx, tp_off!(complete_user_data)),
        res: field(&ctx, tp_off!(complete_res)),
        cflags: field(&ctx, tp_off!(complete_cflags)),
    });
    entry.submit(submit_flags());
    0
}

#[tracepoint]
pub fn io_uring_create(ctx: TracePointContext) -> u32 {
    setup(&ctx, 0);
    0
}

#[tracepoint]
pub fn io_uring_register(ctx: TracePointContext) -> u32 {
    setup(&ctx, 1);
    0
}

#[inline(always)]
fn setup(ctx: &TracePointContext, what: u32) {
    if tp_off!(valid) == 0 {
        return;
    }
    let Some((pid, tgid)) = observed_task() else {
        return;
    };
    if !filter::actor_allowed(&filter::config()) {
        return;
    }
    let rec = if what == 0 {
        IoUringSetupRecord {
            ctx: field(ctx, tp_off!(create_ctx)),
            what,
            fd: field(ctx, tp_off!(create_fd)),
            a: field(ctx, tp_off!(create_sq_entries)),
            b: field(ctx, tp_off!(create_cq_entries)),
            c: field(ctx, tp_off!(create_flags)),
            ..Default::default()
        }
    } else {
        IoUringSetupRecord {
            ctx: field(ctx, tp_off!(register_ctx)),
            what,
            fd: -1,
            a: field(ctx, tp_off!(register_opcode)),
            b: field(ctx, tp_off!(register_nr_files)),
            c: field(ctx, tp_off!(register_nr_bufs)),
            ret: field(ctx, tp_off!(register_ret)),
            ..Default::default()
        }
    };
    let hdr = header(
        RecordKind::IoUringSetup,
        core::mem::size_of::<IoUringSetupRecord>(),
        pid,
        tgid,
    );
    let Some(mut entry) = reserve::<IoUringSetupRecord>(RecordKind::IoUringSetup) else {
        return;
    };
    entry.write(IoUringSetupRecord { header: hdr, ..rec });
    entry.submit(submit_flags());
}
