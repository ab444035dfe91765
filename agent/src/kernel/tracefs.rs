//! Tracepoint record layouts as the running kernel declares them in tracefs
//! (`events/<group>/<name>/format`), so programs reading classic tracepoint fields use this
//! kernel's offsets instead of ones compiled in.

use std::{collections::HashMap, path::Path};

use lineage_common::IoUringTpFields;

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("reading tracepoint format {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("tracepoint {event} has no field `{field}`")]
    NoField { event: String, field: String },
}

/// Field name → byte offset in one tracepoint's record.
#[derive(Debug, Default)]
pub struct Format {
    event: String,
    fields: HashMap<String, u32>,
}

impl Format {
    /// Parses the text of a `format` file: lines like
    /// `field:unsigned long long user_data; offset:24; size:8; signed:0;` (tab-separated).
    pub fn parse(event: &str, text: &str) -> Format {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let mut decl = None;
            let mut offset = None;
            for part in line.trim().split(';') {
                let part = part.trim();
                if let Some(d) = part.strip_prefix("field:") {
                    decl = Some(d);
                } else if let Some(o) = part.strip_prefix("offset:") {
                    offset = o.trim().parse::<u32>().ok();
                }
            }
            let (Some(decl), Some(offset)) = (decl, offset) else {
                continue;
            };
            // The name is the last word of the declaration, without any array suffix.
            let name = decl
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("");
            if !name.is_empty() {
                fields.insert(name.to_owned(), offset);
            }
        }
        Format {
            event: event.to_owned(),
            fields,
        }
    }

    pub fn read(tracefs: &Path, group: &str, name: &str) -> Result<Format, FormatError> {
        let path = tracefs.join("events").join(group).join(name).join("format");
        let text = std::fs::read_to_string(&path).map_err(|source| FormatError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Format::parse(&format!("{group}/{name}"), &text))
    }

    pub fn offset(&self, field: &str) -> Result<u32, FormatError> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| FormatError::NoField {
                event: self.event.clone(),
                field: field.to_owned(),
            })
    }
}

/// The io_uring tracepoints' field offsets; an error leaves the io_uring probes inert
/// (`valid = 0`), reported by the caller.
pub fn io_uring_fields(tracefs: &Path) -> Result<IoUringTpFields, FormatError> {
    let f = |name| Format::read(tracefs, "io_uring", name);
    let (submit, complete, failed, create, register) = (
        f("io_uring_submit_req")?,
        f("io_uring_complete")?,
        f("io_uring_req_failed")?,
        f("io_uring_create")?,
        f("io_uring_register")?,
    );
    Ok(IoUringTpFields {
        valid: 1,
        submit_ctx: submit.offset("ctx")?,
        submit_req: submit.offset("req")?,
        submit_user_data: submit.offset("user_data")?,
        submit_opcode: submit.offset("opcode")?,
        submit_flags: submit.offset("flags")?,
        submit_sq_thread: submit.offset("sq_thread")?,
        complete_ctx: complete.offset("ctx")?,
        complete_req: complete.offset("req")?,
        complete_user_data: complete.offset("user_data")?,
        complete_res: complete.offset("res")?,
        complete_cflags: complete.offset("cflags")?,
        failed_ctx: failed.offset("ctx")?,
        failed_req: failed.offset("req")?,
        failed_user_data: failed.offset("user_data")?,
        failed_opcode: failed.offset("opcode")?,
        failed_error: failed.offset("error")?,
        create_fd: create.offset("fd")?,
        create_ctx: create.offset("ctx")?,
        create_sq_entries: create.offset("sq_entries")?,
        create_cq_entries: create.offset("cq_entries")?,
        create_flags: create.offset("flags")?,
        register_ctx: register.offset("ctx")?,
        register_opcode: register.offset("opcode")?,
        register_nr_files: register.offset("nr_files")?,
        register_nr_bufs: register.offset("nr_bufs")?,
        register_ret: register.offset("ret")?,
        _pad: 0,
    })
}

/// Whether this kernel runs 32-bit (ia32) syscalls (`int 0x80`): tried in a forked child
/// that issues `getpid` through `int 0x80` (with ia32 emulation off, the kernel kills it with
/// SIGSEGV). `None` on other architectures or when the child could not be run.
pub fn ia32_emulation() -> Option<bool> {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the child only issues two syscalls and `_exit`s: async-signal-safe, so
        // forking a multi-threaded process is sound.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return None;
        }
        if pid == 0 {
            let ret: i64;
            // SAFETY: i386 getpid (20) has no arguments and no memory effects.
            unsafe {
                std::arch::asm!(
                    "int 0x80",
                    inlateout("rax") 20i64 => ret,
                    out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                    options(nostack),
                );
                libc::_exit(if ret == i64::from(libc::getpid()) {
                    0
                } else {
                    1
                });
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child with a valid status pointer.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            return None;
        }
        Some(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBMIT: &str = "name: io_uring_submit_req\nID: 2140\nformat:\n\
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
\tfield:void * req;\toffset:16;\tsize:8;\tsigned:0;\n\
\tfield:unsigned long long user_data;\toffset:24;\tsize:8;\tsigned:0;\n\
\tfield:u8 opcode;\toffset:32;\tsize:1;\tsigned:0;\n\
\tfield:char comm[16];\toffset:40;\tsize:16;\tsigned:0;\n\
\tfield:__data_loc char[] op_str;\toffset:52;\tsize:4;\tsigned:0;\n\
\nprint fmt: \"req %p\", REC->req\n";

    #[test]
    fn parses_field_offsets() {
        let f = Format::parse("io_uring/io_uring_submit_req", SUBMIT);
        assert_eq!(f.offset("req").unwrap(), 16);
        assert_eq!(f.offset("user_data").unwrap(), 24);
        assert_eq!(f.offset("opcode").unwrap(), 32);
        assert_eq!(f.offset("comm").unwrap(), 40);
        assert_eq!(f.offset("op_str").unwrap(), 52);
        assert!(matches!(f.offset("nope"), Err(FormatError::NoField { .. })));
    }

    #[test]
    fn running_kernel_io_uring_formats_parse_when_tracefs_is_mounted() {
        let tracefs = Path::new("/sys/kernel/tracing");
        if !tracefs.join("events/io_uring").exists() {
            eprintln!("SKIPPED: tracefs with io_uring events is not mounted here");
            return;
        }
        let f = io_uring_fields(tracefs).unwrap();
        assert_eq!(f.valid, 1);
        assert!(f.submit_req > 0 && f.complete_res > f.complete_req);
    }
}
