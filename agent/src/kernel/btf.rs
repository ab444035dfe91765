//! Just enough of a BTF reader to find struct member offsets in the running kernel.
//!
//! Rust eBPF has no CO-RE relocations, so the agent resolves the few `task_struct` and `cred`
//! offsets its programs need here and passes them in as globals. The format is the kernel's
//! `Documentation/bpf/btf.rst`: a header, a type section of variable-size records, a string
//! section. Anonymous struct/union members are searched through, as the kernel nests fields.

use std::collections::HashMap;

use lineage_common::{CaptureOffsets, KernelOffsets};

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF at {path}: {source} (the kernel needs CONFIG_DEBUG_INFO_BTF=y)"
    )]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel BTF is malformed: {0}")]
    Malformed(&'static str),
    #[error("kernel BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("kernel BTF has no member `{member}` in struct `{strukt}`")]
    NoMember { strukt: String, member: String },
}

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

#[derive(Clone, Debug)]
struct Member {
    name: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// Referenced type for modifiers and typedefs.
    type_id: u32,
    members: Vec<Member>,
}

/// Parsed BTF: types indexed by id (id 0 is `void`).
pub struct Btf {
    strings: Vec<u8>,
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Malformed("truncated"))
}

impl Btf {
    pub fn from_file(path: &str) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&data)
    }

    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        if data.len() < 24 || u16::from_le_bytes([data[0], data[1]]) != MAGIC {
            return Err(BtfError::Malformed(
                "bad magic (big-endian BTF is not supported)",
            ));
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let (type_off, type_len) = (u32_at(data, 8)? as usize, u32_at(data, 12)? as usize);
        let (str_off, str_len) = (u32_at(data, 16)? as usize, u32_at(data, 20)? as usize);
        let section = |off: usize, len: usize| {
            let start = hdr_len
                .checked_add(off)
                .ok_or(BtfError::Malformed("offset"))?;
            let end = start
                .checked_add(len)
                .ok_or(BtfError::Malformed("offset"))?;
            data.get(start..end)
                .ok_or(BtfError::Malformed("section out of bounds"))
        };
        let type_data = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();

        let mut types = vec![Type {
            name: 0,
            kind: 0,
            type_id: 0,
            members: Vec::new(),
        }];
        let mut at = 0;
        while at < type_data.len() {
            let name = u32_at(type_data, at)?;
            let info = u32_at(type_data, at + 4)?;
            let size_or_type = u32_at(type_data, at + 8)?;
            at += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let mut members = Vec::new();
            let extra = match kind {
                1 | 14 | 17 => 4, // INT, VAR, DECL_TAG
                3 => 12,          // ARRAY
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let m = at + i * 12;
                        let raw_offset = u32_at(type_data, m + 8)?;
                        members.push(Member {
                            name: u32_at(type_data, m)?,
                            type_id: u32_at(type_data, m + 4)?,
                            bit_offset: if kind_flag {
                                raw_offset & 0x00ff_ffff
                            } else {
                                raw_offset
                            },
                        });
                    }
                    12 * vlen
                }
                6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO
                15 | 19 => 12 * vlen,      // DATASEC, ENUM64
                2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            at += extra;
            types.push(Type {
                name,
                kind,
                type_id: size_or_type,
                members,
            });
        }
        let mut btf = Btf {
            strings,
            types,
            structs_by_name: HashMap::new(),
        };
        for (id, t) in btf.types.iter().enumerate() {
            if t.kind == KIND_STRUCT && t.name != 0 {
                let name = btf.name(t.name).to_owned();
                // Keep the first definition; duplicates of the same struct agree on layout.
                btf.structs_by_name.entry(name).or_insert(id as u32);
            }
        }
        Ok(btf)
    }

    fn name(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    /// Strips typedefs and modifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..32 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.type_id
                }
                _ => return Some(t),
            }
        }
        None
    }

    fn find_member(&self, t: &Type, member: &str, depth: u32) -> Option<u32> {
        for m in &t.members {
            if m.name != 0 && self.name(m.name) == member {
                return Some(m.bit_offset);
            }
        }
        if depth == 0 {
            return None;
        }
        for m in t.members.iter().filter(|m| m.name == 0) {
            let inner = self.resolve(m.type_id)?;
            if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                if let Some(off) = self.find_member(inner, member, depth - 1) {
                    return Some(m.bit_offset + off);
                }
            }
        }
        None
    }

    /// Byte offset of `member` in `struct strukt`.
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        Ok(self.member_bit_offset(strukt, member)? / 8)
    }

    /// Bit offset of `member` (a bitfield's own bit) in `struct strukt`.
    pub fn member_bit_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(strukt)
            .ok_or_else(|| BtfError::NoStruct(strukt.into()))?;
        let t = &self.types[id as usize];
        let bits = self
            .find_member(t, member, 4)
            .ok_or_else(|| BtfError::NoMember {
                strukt: strukt.into(),
                member: member.into(),
            })?;
        Ok(bits)
    }

    /// Every offset the kernel programs read.
    pub fn kernel_offsets(&self) -> Result<KernelOffsets, BtfError> {
        let task = |m| self.member_offset("task_struct", m);
        let cred = |m| self.member_offset("cred", m);
        let sk = |m| self.member_offset("sock_common", m);
        Ok(KernelOffsets {
            valid: 1,
            task_pid: task("pid")?,
            task_tgid: task("tgid")?,
            task_real_parent: task("real_parent")?,
            task_group_leader: task("group_leader")?,
            task_start_boottime: task("start_boottime")?,
            task_exit_code: task("exit_code")?,
            task_cred: task("cred")?,
            cred_euid: cred("euid")?,
            cred_egid: cred("egid")?,
            task_files: task("files")?,
            files_fdt: self.member_offset("files_struct", "fdt")?,
            fdtable_fd: self.member_offset("fdtable", "fd")?,
            file_private_data: self.member_offset("file", "private_data")?,
            socket_sk: self.member_offset("socket", "sk")?,
            skc_daddr: sk("skc_daddr")?,
            skc_rcv_saddr: sk("skc_rcv_saddr")?,
            skc_dport: sk("skc_dport")?,
            skc_num: sk("skc_num")?,
            skc_family: sk("skc_family")?,
            skc_v6_daddr: sk("skc_v6_daddr")?,
            skc_v6_rcv_saddr: sk("skc_v6_rcv_saddr")?,
            fdtable_max_fds: self.member_offset("fdtable", "max_fds")?,
            file_f_path: self.member_offset("file", "f_path")?,
            file_f_inode: self.member_offset("file", "f_inode")?,
            path_mnt: self.member_offset("path", "mnt")?,
            path_dentry: self.member_offset("path", "dentry")?,
            dentry_d_parent: self.member_offset("dentry", "d_parent")?,
            dentry_d_name: self.member_offset("dentry", "d_name")?,
            dentry_d_hash_pprev: self.member_offset("dentry", "d_hash")?
                + self.member_offset("hlist_bl_node", "pprev")?,
            qstr_len: self.member_offset("qstr", "len")?,
            qstr_name: self.member_offset("qstr", "name")?,
            vfsmount_mnt_root: self.member_offset("vfsmount", "mnt_root")?,
            mount_mnt: self.member_offset("mount", "mnt")?,
            mount_mnt_parent: self.member_offset("mount", "mnt_parent")?,
            mount_mnt_mountpoint: self.member_offset("mount", "mnt_mountpoint")?,
            inode_i_ino: self.member_offset("inode", "i_ino")?,
            inode_i_sb: self.member_offset("inode", "i_sb")?,
            sb_s_dev: self.member_offset("super_block", "s_dev")?,
            inode_i_size: self.member_offset("inode", "i_size")?,
            inode_i_mtime_sec: self.member_offset("inode", "i_mtime_sec")?,
            inode_i_mtime_nsec: self.member_offset("inode", "i_mtime_nsec")?,
            task_fs: task("fs")?,
            fs_pwd: self.member_offset("fs_struct", "pwd")?,
            task_mm: task("mm")?,
            mm_arg_start: self.member_offset("mm_struct", "arg_start")?,
            mm_arg_end: self.member_offset("mm_struct", "arg_end")?,
            mm_exe_file: self.member_offset("mm_struct", "exe_file")?,
            task_loginuid: task("loginuid")?,
            task_sessionid: task("sessionid")?,
            task_signal: task("signal")?,
            signal_tty: self.member_offset("signal_struct", "tty")?,
            tty_name: self.member_offset("tty_struct", "name")?,
            regs_arg: [
                self.member_offset("pt_regs", "di")?,
                self.member_offset("pt_regs", "si")?,
                self.member_offset("pt_regs", "dx")?,
                self.member_offset("pt_regs", "r10")?,
                self.member_offset("pt_regs", "r8")?,
            ],
        })
    }

    /// Offsets for the compat, credential and io_uring probes. A kernel without the io_uring
    /// structs (or with renamed members) gets `io_uring_valid = 0` and a warning: those probes
    /// then record opcodes without paths instead of the agent failing.
    pub fn capture_offsets(&self) -> Result<CaptureOffsets, BtfError> {
        let cred = |m| self.member_offset("cred", m);
        let regs = |m| self.member_offset("pt_regs", m);
        let mut off = CaptureOffsets {
            valid: 1,
            ti_status: self.member_offset("task_struct", "thread_info")?
                + self.member_offset("thread_info", "status")?,
            regs_bx: regs("bx")?,
            regs_cx: regs("cx")?,
            regs_dx: regs("dx")?,
            regs_si: regs("si")?,
            regs_di: regs("di")?,
            regs_bp: regs("bp")?,
            regs_orig_ax: regs("orig_ax")?,
            task_comm: self.member_offset("task_struct", "comm")?,
            task_in_execve_bit: self.member_bit_offset("task_struct", "in_execve")?,
            cred_uid: cred("uid")?,
            cred_gid: cred("gid")?,
            cred_suid: cred("suid")?,
            cred_sgid: cred("sgid")?,
            cred_euid: cred("euid")?,
            cred_egid: cred("egid")?,
            cred_fsuid: cred("fsuid")?,
            cred_fsgid: cred("fsgid")?,
            cred_cap_effective: cred("cap_effective")?,
            file_inode: self.member_offset("file", "f_inode")?,
            inode_ino: self.member_offset("inode", "i_ino")?,
            ..Default::default()
        };
        match self.fill_io_uring(&mut off) {
            Ok(()) => off.io_uring_valid = 1,
            Err(e) => tracing::warn!(
                error = %e,
                "io_uring requests will be recorded by opcode only, without paths or addresses"
            ),
        }
        Ok(off)
    }

    fn fill_io_uring(&self, o: &mut CaptureOffsets) -> Result<(), BtfError> {
        let m = |s, f| self.member_offset(s, f);
        o.kiocb_async_data = m("io_kiocb", "async_data")?;
        o.kiocb_fd = m("io_kiocb", "cqe")? + m("io_cqe", "fd")?;
        o.filename_name = m("filename", "name")?;
        o.open_dfd = m("io_open", "dfd")?;
        o.open_filename = m("io_open", "filename")?;
        o.open_how = m("io_open", "how")? + m("open_how", "flags")?;
        o.rename_old_dfd = m("io_rename", "old_dfd")?;
        o.rename_new_dfd = m("io_rename", "new_dfd")?;
        o.rename_oldpath = m("io_rename", "oldpath")?;
        o.rename_newpath = m("io_rename", "newpath")?;
        o.rename_flags = m("io_rename", "flags")?;
        o.link_old_dfd = m("io_link", "old_dfd")?;
        o.link_new_dfd = m("io_link", "new_dfd")?;
        o.link_oldpath = m("io_link", "oldpath")?;
        o.link_newpath = m("io_link", "newpath")?;
        o.link_flags = m("io_link", "flags")?;
        o.unlink_dfd = m("io_unlink", "dfd")?;
        o.unlink_flags = m("io_unlink", "flags")?;
        o.unlink_filename = m("io_unlink", "filename")?;
        o.mkdir_dfd = m("io_mkdir", "dfd")?;
        o.mkdir_mode = m("io_mkdir", "mode")?;
        o.mkdir_filename = m("io_mkdir", "filename")?;
        o.msg_addr = m("io_async_msghdr", "addr")?;
        o.msg_name = m("io_async_msghdr", "msg")? + m("msghdr", "msg_name")?;
        o.xattr_filename = m("io_xattr", "filename")?;
        o.xattr_kname = m("io_xattr", "ctx")? + m("kernel_xattr_ctx", "kname")?;
        o.ftrunc_len = m("io_ftrunc", "len")?;
        o.listen_backlog = m("io_listen", "backlog")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `struct s { int a; union { int b; }; }` plus an int type.
    fn sample() -> Vec<u8> {
        let strings = b"\0int\0s\0a\0b\0".to_vec(); // int@1 s@5 a@7 b@9
        let mut types = Vec::new();
        let mut push = |words: &[u32]| words.iter().for_each(|w| types.extend(w.to_le_bytes()));
        push(&[1, 1 << 24, 4, 32]); // id 1: INT "int"
        push(&[0, (KIND_UNION << 24) | 1, 4, 9, 1, 0]); // id 2: union { int b; }
        push(&[5, (KIND_STRUCT << 24) | 2, 8, 7, 1, 0, 0, 2, 32]); // id 3: struct s
        let mut out = Vec::new();
        out.extend(MAGIC.to_le_bytes());
        out.extend([1u8, 0]);
        for w in [
            24u32,
            0,
            types.len() as u32,
            types.len() as u32,
            strings.len() as u32,
        ] {
            out.extend(w.to_le_bytes());
        }
        out.extend(types);
        out.extend(strings);
        out
    }

    #[test]
    fn finds_direct_and_nested_members() {
        let btf = Btf::parse(&sample()).unwrap();
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("s", "b").unwrap(), 4);
        assert!(matches!(
            btf.member_offset("s", "c"),
            Err(BtfError::NoMember { .. })
        ));
        assert!(matches!(
            btf.member_offset("t", "a"),
            Err(BtfError::NoStruct(_))
        ));
    }

    #[test]
    fn rejects_truncated_and_garbage_input() {
        let blob = sample();
        for cut in 0..blob.len() {
            // Any prefix either parses (when the cut falls after the sections) or errors; never panics.
            let _ = Btf::parse(&blob[..cut]);
        }
        assert!(Btf::parse(b"not btf at all, definitely not").is_err());
    }

    #[test]
    fn running_kernel_offsets_resolve_when_btf_exists() {
        let path = "/sys/kernel/btf/vmlinux";
        if !std::path::Path::new(path).exists() {
            eprintln!("SKIPPED: {path} missing: this kernel has no BTF");
            return;
        }
        let off = Btf::from_file(path).unwrap().kernel_offsets().unwrap();
        assert!(
            off.task_tgid > off.task_pid,
            "tgid follows pid in task_struct"
        );
        assert!(off.cred_egid > off.cred_euid);
        assert!(
            off.skc_dport != off.skc_num,
            "ports live in one union but at different offsets"
        );
        assert!(off.socket_sk > 0 && off.fdtable_fd > 0);
        let cap = Btf::from_file(path).unwrap().capture_offsets().unwrap();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(cap.regs_bx, 40, "pt_regs is fixed x86_64 ABI");
        assert!(cap.cred_fsgid > cap.cred_uid);
        assert_eq!(cap.io_uring_valid, 1, "this kernel has io_uring's structs");
        assert!(cap.open_filename > cap.open_dfd);
    }
}
