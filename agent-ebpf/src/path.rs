//! Paths from the kernel's own objects, never from the caller's memory.
//!
//! A `struct path` (mount + dentry) is walked up to the root of its mount namespace, crossing
//! into the parent mount at each mount root through `struct mount` (the vfsmount is embedded in
//! it, so `container_of` is a subtraction), the way the kernel's `d_path` does. Names are
//! written back to front into a per-CPU buffer as large as `PATH_MAX`, then the front
//! `PATH_CAP` bytes are copied into the record: a path that does not fit keeps its root side
//! (which the prefix filters match) and is flagged. The walk is bounded; a deeper path is
//! flagged too.

use aya_ebpf::{
    cty::c_void,
    helpers::generated::{bpf_loop, bpf_probe_read_kernel},
};
use lineage_common::{path_flags, PATH_CAP};

use crate::{
    maps::{offsets, WalkState, WALK_END, WALK_SCRATCH},
    task::Task,
};

/// Components and mount crossings walked at most.
const MAX_STEPS: u32 = 64;
/// `NAME_MAX`: longer dentry names do not exist.
const NAME_MAX: usize = 255;

/// What a walk produced: the bytes written into the record's buffer and [`path_flags`].
pub struct Walked {
    pub len: u32,
    pub flags: u32,
}

/// Resolves the `struct path` at `path` into `out` (`PATH_CAP` bytes).
#[inline(always)]
pub fn resolve(path: Task, out: *mut u8) -> Walked {
    let off = offsets();
    walk(
        path.read_ptr(off.path_mnt),
        path.read_ptr(off.path_dentry),
        out,
    )
}

/// The opened file's path, device and inode.
#[inline(always)]
pub fn resolve_file(file: Task, out: *mut u8) -> (Walked, u32, u64) {
    let off = offsets();
    if file.is_null() {
        return (
            Walked {
                len: 0,
                flags: path_flags::PATH_UNREADABLE,
            },
            0,
            0,
        );
    }
    let walked = resolve(file.plus(off.file_f_path), out);
    let inode = file.read_ptr(off.file_f_inode);
    let dev: u32 = inode.read_ptr(off.inode_i_sb).read(off.sb_s_dev);
    (walked, dev, inode.read(off.inode_i_ino))
}

/// One step of the walk: a mount crossing or one name. `bpf_loop` verifies it as a loop body
/// instead of once per iteration and branch combination (which exceeds the verifier's budget);
/// the state lives in the per-CPU map, not on the stack, so the verifier sees every iteration
/// start alike and converges at once.
#[inline(never)]
extern "C" fn walk_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let off = offsets();
    let Some(scratch) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's slot.
    let st: *mut WalkState = unsafe { &raw mut (*scratch).state };
    let buf: *mut u8 = unsafe { (*scratch).buf.as_mut_ptr() };
    // SAFETY: `ctx` is the caller's WalkState; kernel memory is read through checked helpers.
    unsafe {
        let mnt = Task::from_ptr((*st).mnt as *const u8);
        let dentry = Task::from_ptr((*st).dentry as *const u8);
        if dentry.addr() == mnt.read::<usize>(off.vfsmount_mnt_root) {
            // At the root of this mount: continue from where it is mounted in its parent.
            let mount = mnt.minus(off.mount_mnt);
            let parent = mount.read_ptr(off.mount_mnt_parent);
            if parent.is_null() || parent.addr() == mount.addr() {
                (*st).complete = 1;
                return 1;
            }
            (*st).dentry = mount.read_ptr(off.mount_mnt_mountpoint).addr();
            (*st).mnt = parent.plus(off.mount_mnt).addr();
            return 0;
        }
        let parent = dentry.read_ptr(off.dentry_d_parent);
        if parent.is_null() || parent.addr() == dentry.addr() {
            // The root of a tree outside any mount walk (e.g. a detached mount).
            (*st).complete = 1;
            return 1;
        }
        let qstr = dentry.plus(off.dentry_d_name);
        let len = qstr.read::<u32>(off.qstr_len) as u64;
        let name = qstr.read::<usize>(off.qstr_name);
        let pos = (*st).pos;
        if len == 0 || len > NAME_MAX as u64 || len + 1 > pos || pos > WALK_END as u64 {
            return 1;
        }
        let at = (pos - len) as usize;
        // The destination is inside the per-CPU buffer (masked offset plus at most NAME_MAX
        // bytes, for which the buffer has slack); the helper validates the source.
        bpf_probe_read_kernel(
            buf.wrapping_add(at & (WALK_END - 1)).cast(),
            (len as u32) & NAME_MAX as u32,
            name as *const _,
        );
        let slash = at - 1;
        *buf.wrapping_add(slash & (WALK_END - 1)) = b'/';
        (*st).pos = slash as u64;
        (*st).dentry = parent.addr();
    }
    0
}

#[inline(always)]
fn walk(mnt: Task, dentry: Task, out: *mut u8) -> Walked {
    let off = offsets();
    let Some(scratch) = WALK_SCRATCH.get_ptr_mut(0) else {
        return Walked {
            len: 0,
            flags: path_flags::PATH_UNREADABLE,
        };
    };
    // SAFETY: this CPU's slot.
    let st: *mut WalkState = unsafe { &raw mut (*scratch).state };
    let buf: *mut u8 = unsafe { (*scratch).buf.as_mut_ptr() };
    let mut flags = 0;
    // An unhashed dentry (not the root of its tree) was unlinked: d_path's "(deleted)".
    let parent = dentry.read_ptr(off.dentry_d_parent);
    if parent.addr() != dentry.addr() && dentry.read::<usize>(off.dentry_d_hash_pprev) == 0 {
        flags |= path_flags::PATH_DELETED;
    }
    // SAFETY: `st` is this CPU's slot; the callback follows bpf_loop's contract.
    let (complete, pos) = unsafe {
        *st = WalkState {
            mnt: mnt.addr(),
            dentry: dentry.addr(),
            pos: WALK_END as u64,
            complete: 0,
        };
        bpf_loop(
            MAX_STEPS,
            walk_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        );
        ((*st).complete, (*st).pos as usize)
    };
    if complete == 0 {
        flags |= path_flags::PATH_TRUNCATED;
    }
    if pos >= WALK_END {
        // The mount namespace's root itself.
        // SAFETY: `out` has PATH_CAP bytes.
        unsafe { *out = b'/' };
        return Walked { len: 1, flags };
    }
    let total = WALK_END - pos;
    let n = if total > PATH_CAP - 1 {
        flags |= path_flags::PATH_TRUNCATED;
        PATH_CAP - 1
    } else {
        total
    };
    // SAFETY: `pos < WALK_END` and `n < PATH_CAP`, inside the buffer and its slack; `out` has
    // PATH_CAP bytes.
    unsafe {
        bpf_probe_read_kernel(
            out.cast(),
            (n & (PATH_CAP - 1)) as u32,
            buf.wrapping_add(pos & (WALK_END - 1)) as *const _,
        );
    }
    Walked {
        len: n as u32,
        flags,
    }
}
