//! The typed event of a security-relevant syscall, from what the kernel record holds (its op
//! name, raw arguments, credentials and strings). One constructor for the agent, which builds
//! it from kernel records, and for schema 1 payloads, which stored the same raw fields.

use crate::v1::{
    event::Kind, Bpf, CompatSyscall, Credentials, Ids, MemfdCreate, Module, Mount, PivotRoot,
    Ptrace, Setns, SyscallCall, Umount, Unshare,
};

/// The raw fields of a security-syscall record, as the kernel side fills them
/// (agent-common `SyscallRecord`).
#[derive(Debug, Clone, Default)]
pub struct Raw {
    pub call: SyscallCall,
    /// creds/capset: `[uid, gid, suid, sgid, euid, egid, fsuid, fsgid]` before and after.
    pub old_ids: [u32; 8],
    pub new_ids: [u32; 8],
    /// creds/capset: effective capabilities before and after.
    pub old_caps: u64,
    pub new_caps: u64,
    /// mount: source; pivot_root: new root; module_load: parameters; module_unload and
    /// memfd_create: the name; bpf: the program or map name.
    pub str1: String,
    /// mount, umount: target; pivot_root: put_old.
    pub str2: String,
}

fn ids(a: [u32; 8]) -> Ids {
    let [uid, gid, suid, sgid, euid, egid, fsuid, fsgid] = a;
    Ids {
        uid,
        gid,
        suid,
        sgid,
        euid,
        egid,
        fsuid,
        fsgid,
    }
}

/// The kind named `op` (`creds`, `capset`, `ptrace`, `module_load`, `module_unload`, `bpf`,
/// `mount`, `umount`, `pivot_root`, `unshare`, `setns`, `memfd_create`, `compat_other`), with
/// its typed fields read from the raw arguments; `None` for another name.
pub fn kind(op: &str, raw: Raw) -> Option<Kind> {
    let arg = |i: usize| raw.call.args.get(i).copied().unwrap_or_default();
    let call = Some(raw.call.clone());
    Some(match op {
        "creds" | "capset" => {
            let c = Credentials {
                call,
                old_ids: Some(ids(raw.old_ids)),
                new_ids: Some(ids(raw.new_ids)),
                old_caps: raw.old_caps,
                new_caps: raw.new_caps,
            };
            if op == "creds" {
                Kind::Creds(c)
            } else {
                Kind::Capset(c)
            }
        }
        // ptrace(request, pid, addr, data)
        "ptrace" => Kind::Ptrace(Ptrace {
            call,
            request: arg(0),
            target_pid: arg(1) as i32,
            addr: arg(2),
            data: arg(3),
        }),
        "module_load" => Kind::ModuleLoad(Module {
            call,
            name: raw.str1,
        }),
        "module_unload" => Kind::ModuleUnload(Module {
            call,
            name: raw.str1,
        }),
        // bpf(cmd, attr, size)
        "bpf" => Kind::Bpf(Bpf {
            call,
            command: arg(0) as u32,
            name: raw.str1,
        }),
        // mount(source, target, fstype, flags, data)
        "mount" => Kind::Mount(Mount {
            call,
            source: raw.str1,
            target: raw.str2,
            flags: arg(3),
        }),
        // umount2(target, flags); umount(target) leaves flags 0.
        "umount" => Kind::Umount(Umount {
            call,
            target: raw.str2,
            flags: arg(1),
        }),
        "pivot_root" => Kind::PivotRoot(PivotRoot {
            call,
            new_root: raw.str1,
            put_old: raw.str2,
        }),
        "unshare" => Kind::Unshare(Unshare {
            call,
            flags: arg(0),
        }),
        // setns(fd, nstype)
        "setns" => Kind::Setns(Setns {
            call,
            fd: arg(0) as i32,
            nstype: arg(1),
        }),
        // memfd_create(name, flags)
        "memfd_create" => Kind::MemfdCreate(MemfdCreate {
            call,
            name: raw.str1,
            flags: arg(1),
        }),
        "compat_other" => Kind::CompatOther(CompatSyscall { call }),
        _ => return None,
    })
}
