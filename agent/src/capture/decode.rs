//! Ring-buffer bytes → typed records, defensively.
//!
//! The bytes come from our own kernel programs, but a version skew, a kernel quirk or a bug must
//! end in a counted, logged decode error, never a panic or a misread field.

use std::mem::size_of;

use lineage_common::{
    file_op, CommChangeRecord, ExecArgsRecord, ExecFailedRecord, ExecRecord, ExitRecord,
    FileOpRecord, ForkRecord, IoUringDoneRecord, IoUringRecord, IoUringSetupRecord, NetRecord,
    RecordHeader, RecordKind, SignalRecord, SyscallRecord, ARGS_CAP, EXEC_ARGS_FIXED_LEN,
    EXEC_FIXED_LEN, FILE_OP_FIXED_LEN, PATH_CAP,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than the {need}-byte {what}")]
    Short {
        what: &'static str,
        len: usize,
        need: usize,
    },
    #[error("unknown record kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} record declares length {declared} but carries {actual} bytes")]
    LengthMismatch {
        kind: RecordKind,
        declared: usize,
        actual: usize,
    },
    #[error("{field} length {value} exceeds its {cap}-byte capacity")]
    FieldTooLong {
        field: &'static str,
        value: usize,
        cap: usize,
    },
}

impl DecodeError {
    /// Stable label for the decode-error counter.
    /// Every [`DecodeError::label`], so counters start at zero for each.
    pub const LABELS: [&'static str; 4] =
        ["short", "unknown_kind", "length_mismatch", "field_too_long"];

    pub fn label(&self) -> &'static str {
        match self {
            DecodeError::Short { .. } => "short",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::FieldTooLong { .. } => "field_too_long",
        }
    }
}

/// Marker for records that may be copied out of arbitrary bytes.
///
/// # Safety
/// Implementors are `#[repr(C)]`, contain only integers and integer arrays, and have no padding,
/// so every bit pattern is a valid value.
unsafe trait Wire: Copy {}
// SAFETY: all are repr(C) integer-only structs with layouts asserted in agent-common.
unsafe impl Wire for RecordHeader {}
unsafe impl Wire for ExecRecord {}
unsafe impl Wire for ExecFailedRecord {}
unsafe impl Wire for ForkRecord {}
unsafe impl Wire for ExitRecord {}
unsafe impl Wire for NetRecord {}
unsafe impl Wire for IoUringRecord {}
unsafe impl Wire for IoUringDoneRecord {}
unsafe impl Wire for IoUringSetupRecord {}
unsafe impl Wire for SyscallRecord {}
unsafe impl Wire for SignalRecord {}
unsafe impl Wire for CommChangeRecord {}
unsafe impl Wire for FileOpRecord {}

/// A variable-length record: the bytes sent, copied into a zeroed full-size `T` (the unsent
/// tail stays zero).
fn read_prefix<T: Wire>(bytes: &[u8], what: &'static str, fixed: usize) -> Result<T, DecodeError> {
    if bytes.len() < fixed {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need: fixed,
        });
    }
    let mut full = vec![0u8; size_of::<T>()];
    let n = bytes.len().min(full.len());
    full[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: `full` has size_of::<T>() bytes; `T: Wire` accepts every bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(full.as_ptr().cast::<T>()) })
}

fn read<T: Wire>(bytes: &[u8], what: &'static str) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            what,
            len: bytes.len(),
            need: size_of::<T>(),
        });
    }
    // SAFETY: length checked above; `T: Wire` accepts every bit pattern; unaligned read.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// argv as captured at syscall entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    pub header: RecordHeader,
    pub argc: u32,
    pub flags: u32,
    pub dirfd: i32,
    pub filename: Vec<u8>,
    /// NUL-separated argv bytes.
    pub args: Vec<u8>,
}

impl ExecArgs {
    pub fn argv(&self) -> Vec<String> {
        self.args
            .split(|&b| b == 0)
            .take(self.argc as usize)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }
}

/// A file syscall record, with the paths bounded by their lengths.
#[derive(Clone)]
pub struct FileOp(Box<FileOpRecord>);

impl FileOp {
    /// A record built in userspace (an io_uring request in the file-op shape).
    pub fn from_record(rec: FileOpRecord) -> Self {
        FileOp(Box::new(rec))
    }

    /// The kernel's path (see `path_source`).
    pub fn path(&self) -> &[u8] {
        &self.0.path[..self.0.path_len as usize]
    }

    /// The name as the caller passed it.
    pub fn given(&self) -> &[u8] {
        &self.0.given[..self.0.given_len as usize]
    }

    /// The second path's directory (or whole absolute path) for rename/link/symlink; empty for
    /// other operations.
    pub fn path2(&self) -> &[u8] {
        if file_op::has_path2(self.0.op) {
            &self.0.path2[..self.0.path2_len as usize]
        } else {
            &[]
        }
    }

    /// The second name as the caller passed it; empty for operations without one.
    pub fn given2(&self) -> &[u8] {
        if file_op::has_path2(self.0.op) {
            &self.0.given2[..self.0.given2_len as usize]
        } else {
            &[]
        }
    }
}

/// A successful exec, with its strings bounded by their lengths.
#[derive(Clone)]
pub struct Exec(Box<ExecRecord>);

impl Exec {
    /// The filename passed to exec (the kernel's copy).
    pub fn filename(&self) -> &[u8] {
        &self.0.filename[..self.0.filename_len as usize]
    }

    /// The executed file's path, from the kernel.
    pub fn exe(&self) -> &[u8] {
        &self.0.exe[..self.0.exe_len as usize]
    }

    /// argv from the new image.
    pub fn argv(&self) -> Vec<String> {
        let args = &self.0.args[..self.0.args_len as usize];
        let args = args.strip_suffix(&[0]).unwrap_or(args);
        if args.is_empty() {
            return Vec::new();
        }
        args.split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect()
    }

    pub fn tty(&self) -> String {
        c_str(&self.0.tty)
    }
}

impl std::ops::Deref for Exec {
    type Target = ExecRecord;
    fn deref(&self) -> &ExecRecord {
        &self.0
    }
}

impl std::ops::Deref for FileOp {
    type Target = FileOpRecord;
    fn deref(&self) -> &FileOpRecord {
        &self.0
    }
}

#[derive(Clone)]
pub enum Record {
    ExecArgs(ExecArgs),
    Exec(Exec),
    ExecFailed(ExecFailedRecord),
    Fork(ForkRecord),
    Exit(ExitRecord),
    FileOp(FileOp),
    Net(Box<NetRecord>),
    IoUring(Box<IoUringRecord>),
    IoUringDone(IoUringDoneRecord),
    IoUringSetup(IoUringSetupRecord),
    Syscall(Box<SyscallRecord>),
    Signal(SignalRecord),
    CommChange(CommChangeRecord),
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.header();
        write!(
            f,
            "Record {{ kind: {}, cpu: {}, seq: {} }}",
            h.kind, h.cpu, h.seq
        )
    }
}

impl Record {
    pub fn header(&self) -> &RecordHeader {
        match self {
            Record::ExecArgs(r) => &r.header,
            Record::Exec(r) => &r.header,
            Record::ExecFailed(r) => &r.header,
            Record::Fork(r) => &r.header,
            Record::Exit(r) => &r.header,
            Record::FileOp(r) => &r.header,
            Record::Net(r) => &r.header,
            Record::IoUring(r) => &r.header,
            Record::IoUringDone(r) => &r.header,
            Record::IoUringSetup(r) => &r.header,
            Record::Syscall(r) => &r.header,
            Record::Signal(r) => &r.header,
            Record::CommChange(r) => &r.header,
        }
    }
}

/// The header alone: enough to account the record's sequence number even if the body is bad.
pub fn decode_header(bytes: &[u8]) -> Result<RecordHeader, DecodeError> {
    read::<RecordHeader>(bytes, "record header")
}

pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header = decode_header(bytes)?;
    let kind = RecordKind::try_from(header.kind).map_err(|e| DecodeError::UnknownKind(e.0))?;
    let declared = header.len as usize;
    if declared != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            kind,
            declared,
            actual: bytes.len(),
        });
    }
    Ok(match kind {
        RecordKind::ExecArgs => Record::ExecArgs(decode_exec_args(header, bytes)?),
        RecordKind::Exec => Record::Exec(decode_exec(bytes)?),
        RecordKind::ExecFailed => Record::ExecFailed(read(bytes, "exec_failed record")?),
        RecordKind::Fork => Record::Fork(read(bytes, "fork record")?),
        RecordKind::Exit => Record::Exit(read(bytes, "exit record")?),
        RecordKind::FileOp => Record::FileOp(decode_file_op(bytes)?),
        RecordKind::Net => {
            let rec: NetRecord = read(bytes, "net record")?;
            check_len("net address", rec.addr_len as usize, rec.addr.len())?;
            Record::Net(Box::new(rec))
        }
        RecordKind::IoUring => {
            let rec: IoUringRecord = read(bytes, "io_uring record")?;
            check_len("io_uring path", rec.path_len as usize, PATH_CAP - 1)?;
            check_len("io_uring path2", rec.path2_len as usize, PATH_CAP - 1)?;
            check_len("io_uring address", rec.addr_len as usize, rec.addr.len())?;
            Record::IoUring(Box::new(rec))
        }
        RecordKind::IoUringDone => Record::IoUringDone(read(bytes, "io_uring_done record")?),
        RecordKind::IoUringSetup => Record::IoUringSetup(read(bytes, "io_uring_setup record")?),
        RecordKind::Syscall => {
            let rec: SyscallRecord = read(bytes, "syscall record")?;
            check_len("syscall str1", rec.str1_len as usize, PATH_CAP - 1)?;
            check_len("syscall str2", rec.str2_len as usize, PATH_CAP - 1)?;
            Record::Syscall(Box::new(rec))
        }
        RecordKind::Signal => Record::Signal(read(bytes, "signal record")?),
        RecordKind::CommChange => Record::CommChange(read(bytes, "comm_change record")?),
    })
}

fn check_len(field: &'static str, value: usize, cap: usize) -> Result<(), DecodeError> {
    if value > cap {
        return Err(DecodeError::FieldTooLong { field, value, cap });
    }
    Ok(())
}

fn decode_exec_args(header: RecordHeader, bytes: &[u8]) -> Result<ExecArgs, DecodeError> {
    if bytes.len() < EXEC_ARGS_FIXED_LEN {
        return Err(DecodeError::Short {
            what: "exec_args record",
            len: bytes.len(),
            need: EXEC_ARGS_FIXED_LEN,
        });
    }
    let base = size_of::<RecordHeader>();
    let filename_len = le_u32(bytes, base + 12) as usize;
    let args_len = le_u32(bytes, base + 16) as usize;
    check_len("exec_args filename", filename_len, PATH_CAP)?;
    check_len("exec_args argv", args_len, ARGS_CAP)?;
    let filename_at = std::mem::offset_of!(ExecArgsRecord, filename);
    if EXEC_ARGS_FIXED_LEN + args_len != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            kind: RecordKind::ExecArgs,
            declared: EXEC_ARGS_FIXED_LEN + args_len,
            actual: bytes.len(),
        });
    }
    Ok(ExecArgs {
        header,
        argc: le_u32(bytes, base),
        flags: le_u32(bytes, base + 4),
        dirfd: le_u32(bytes, base + 8) as i32,
        filename: bytes[filename_at..filename_at + filename_len].to_vec(),
        args: bytes[EXEC_ARGS_FIXED_LEN..].to_vec(),
    })
}

fn decode_exec(bytes: &[u8]) -> Result<Exec, DecodeError> {
    let rec: ExecRecord = read_prefix(bytes, "exec record", EXEC_FIXED_LEN)?;
    check_len("exec filename", rec.filename_len as usize, PATH_CAP)?;
    check_len("exec exe path", rec.exe_len as usize, PATH_CAP)?;
    check_len("exec argv", rec.args_len as usize, ARGS_CAP)?;
    let expected = EXEC_FIXED_LEN + rec.args_len as usize;
    if expected != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            kind: RecordKind::Exec,
            declared: expected,
            actual: bytes.len(),
        });
    }
    Ok(Exec(Box::new(rec)))
}

fn decode_file_op(bytes: &[u8]) -> Result<FileOp, DecodeError> {
    let rec: FileOpRecord = read_prefix(bytes, "file record", FILE_OP_FIXED_LEN)?;
    for (field, len) in [
        ("file path", rec.path_len),
        ("file given name", rec.given_len),
        ("file path2", rec.path2_len),
        ("file given name2", rec.given2_len),
    ] {
        check_len(field, len as usize, PATH_CAP - 1)?;
    }
    let expected = if file_op::has_path2(rec.op) {
        FILE_OP_FIXED_LEN + 3 * PATH_CAP + rec.given2_len as usize
    } else {
        FILE_OP_FIXED_LEN + PATH_CAP + rec.given_len as usize
    };
    if expected != bytes.len() {
        return Err(DecodeError::LengthMismatch {
            kind: RecordKind::FileOp,
            declared: expected,
            actual: bytes.len(),
        });
    }
    Ok(FileOp(Box::new(rec)))
}

/// A fixed C string field up to its first NUL.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn as_bytes<T: Wire>(v: &T) -> Vec<u8> {
        // SAFETY: T is plain old data without padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn header(kind: RecordKind, len: usize) -> RecordHeader {
        RecordHeader {
            kind: kind as u32,
            len: len as u32,
            seq: 7,
            cpu: 1,
            pid: 10,
            tgid: 10,
            ..Default::default()
        }
    }

    fn exec_args_bytes(args: &[u8]) -> Vec<u8> {
        let len = EXEC_ARGS_FIXED_LEN + args.len();
        let mut out = as_bytes(&header(RecordKind::ExecArgs, len));
        for w in [2u32, 0, (-100i32) as u32, 4, args.len() as u32, 0] {
            out.extend(w.to_le_bytes());
        }
        let mut name = [0u8; PATH_CAP];
        name[..4].copy_from_slice(b"/bin");
        out.extend(name);
        out.extend(args);
        out
    }

    #[test]
    fn decodes_fixed_records() {
        let rec = ExitRecord {
            header: header(RecordKind::Exit, size_of::<ExitRecord>()),
            exit_code: 3 << 8,
            group_dead: 1,
        };
        match decode(&as_bytes(&rec)).unwrap() {
            Record::Exit(e) => assert_eq!((e.exit_code, e.group_dead, e.header.seq), (768, 1, 7)),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn decodes_variable_exec_args() {
        let Record::ExecArgs(a) = decode(&exec_args_bytes(b"echo\0hi\0")).unwrap() else {
            panic!("not exec args");
        };
        assert_eq!(a.argv(), vec!["echo", "hi"]);
        assert_eq!(a.filename, b"/bin");
        assert_eq!(a.dirfd, -100);
    }

    #[test]
    fn rejects_unknown_kind_short_and_lying_records() {
        let mut h = header(RecordKind::Exit, size_of::<ExitRecord>());
        h.kind = 99;
        assert_eq!(
            decode(&as_bytes(&h)).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        assert!(matches!(
            decode(&[0u8; 10]).unwrap_err(),
            DecodeError::Short { .. }
        ));
        // Header claims the exit size but the body is missing.
        let h = header(RecordKind::Exit, size_of::<RecordHeader>());
        assert!(matches!(
            decode(&as_bytes(&h)).unwrap_err(),
            DecodeError::Short { .. }
        ));
        // argv length that disagrees with the record size.
        let mut bytes = exec_args_bytes(b"a\0");
        bytes.push(0);
        let len = bytes.len() as u32;
        bytes[4..8].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            decode(&bytes).unwrap_err(),
            DecodeError::LengthMismatch { .. }
        ));
    }

    fn file_op_bytes(op: u32, path: &[u8], path2: &[u8]) -> Vec<u8> {
        let mut rec: FileOpRecord = unsafe { std::mem::zeroed() };
        rec.op = op;
        rec.path_len = path.len() as u32;
        rec.given_len = path.len() as u32;
        rec.path2_len = path2.len() as u32;
        rec.given2_len = path2.len() as u32;
        rec.path[..path.len()].copy_from_slice(path);
        rec.given[..path.len()].copy_from_slice(path);
        rec.path2[..path2.len()].copy_from_slice(path2);
        rec.given2[..path2.len()].copy_from_slice(path2);
        rec.result = 3;
        let len = if file_op::has_path2(op) {
            FILE_OP_FIXED_LEN + 3 * PATH_CAP + path2.len()
        } else {
            FILE_OP_FIXED_LEN + PATH_CAP + path.len()
        };
        rec.header = header(RecordKind::FileOp, len);
        // SAFETY: plain old data.
        let all = unsafe {
            std::slice::from_raw_parts(
                (&rec as *const FileOpRecord).cast::<u8>(),
                size_of::<FileOpRecord>(),
            )
        };
        all[..len].to_vec()
    }

    #[test]
    fn decodes_file_ops_of_both_shapes() {
        let Record::FileOp(f) = decode(&file_op_bytes(file_op::OPEN, b"/tmp/x", b"")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (f.path(), f.result, f.path2().len()),
            (&b"/tmp/x"[..], 3, 0)
        );
        let Record::FileOp(f) = decode(&file_op_bytes(file_op::RENAME, b"a", b"bb")).unwrap()
        else {
            panic!()
        };
        assert_eq!((f.path(), f.path2()), (&b"a"[..], &b"bb"[..]));
        assert_eq!((f.given(), f.given2()), (&b"a"[..], &b"bb"[..]));
        let mut bad = file_op_bytes(file_op::OPEN, b"/tmp/x", b"");
        bad.pop();
        let len = bad.len() as u32;
        bad[4..8].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            decode(&bad),
            Err(DecodeError::LengthMismatch { .. })
        ));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_on_mutated_valid_records(flip in 0usize..400, value in any::<u8>()) {
            let mut bytes = exec_args_bytes(b"echo\0hello\0world\0");
            let at = flip % bytes.len();
            bytes[at] = value;
            if let Ok(Record::ExecArgs(a)) = decode(&bytes) {
                prop_assert!(a.args.len() <= ARGS_CAP);
                prop_assert!(a.filename.len() <= PATH_CAP);
            }
        }
    }
}
