//! Just enough of a BTF reader to find struct member offsets in the running kernel.
//!
//! Rust eBPF has no CO-RE relocations, so the agent resolves the few `task_struct` and `cred`
//! offsets its programs need here and passes them in as globals. The format is the kernel's
//! `Documentation/bpf/btf.rst`: a header, a type section of variable-size records, a string
//! section. Anonymous struct/union members are searched through, as the kernel nests fields.

use std::collections::HashMap;

use lineage_common::KernelOffsets;

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
        Ok(bits / 8)
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
        })
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
    }
}
