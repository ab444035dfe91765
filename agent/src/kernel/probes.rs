//! Loading the embedded kernel programs and attaching each one on its own.
//!
//! The registry below is the single list of probes: a verifier rejection or a missing
//! tracepoint is reported for that probe with the kernel's reason and does not take the others
//! down. Only the probes without which lineage is meaningless are required.

use std::{fmt, path::Path};

use aya::{
    maps::{MapType, PerCpuArray},
    programs::{RawTracePoint, TracePoint},
    Ebpf, EbpfLoader,
};
use lineage_common::{CaptureOffsets, IoUringTpFields, KernelOffsets, KIND_SLOTS};

use crate::cause::{self, Cap, Privileges};

/// The kernel programs, built by `build.rs` and embedded: the agent is one file to deploy.
static PROBES_ELF: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lineage-probes"));

#[derive(Clone, Copy, Debug)]
pub enum Hook {
    TracePoint {
        category: &'static str,
        name: &'static str,
    },
    RawTracePoint {
        name: &'static str,
    },
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::TracePoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Hook::RawTracePoint { name } => write!(f, "raw_tracepoint/{name}"),
        }
    }
}

#[derive(Clone, Copy)]
pub struct ProbeSpec {
    /// Function name in `agent-ebpf`.
    pub program: &'static str,
    pub hook: Hook,
    /// Without it the agent refuses to run.
    pub required: bool,
}

/// Lineage probes: without the first three there is no process tree.
const LINEAGE_PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: "sched_process_exec",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exec",
        },
        required: true,
    },
    ProbeSpec {
        program: "task_newtask",
        hook: Hook::RawTracePoint {
            name: "task_newtask",
        },
        required: true,
    },
    ProbeSpec {
        program: "sched_process_exit",
        hook: Hook::TracePoint {
            category: "sched",
            name: "sched_process_exit",
        },
        required: true,
    },
    ProbeSpec {
        program: "sys_enter_execve",
        hook: Hook::TracePoint {
            category: "syscalls",
            name: "sys_enter_execve",
        },
        required: false,
    },
    ProbeSpec {
        program: "sys_enter_execveat",
        hook: Hook::TracePoint {
            category: "syscalls",
            name: "sys_enter_execveat",
        },
        required: false,
    },
    ProbeSpec {
        program: "sys_exit_execve",
        hook: Hook::TracePoint {
            category: "syscalls",
            name: "sys_exit_execve",
        },
        required: false,
    },
    ProbeSpec {
        program: "sys_exit_execveat",
        hook: Hook::TracePoint {
            category: "syscalls",
            name: "sys_exit_execveat",
        },
        required: false,
    },
];

/// File syscalls: one entry and one exit program, attached to each syscall's tracepoints.
/// A kernel without one of them (e.g. `fchmodat2` before 6.6) reports that hook as failed.
const FILE_SYSCALLS: &[(&str, &str)] = &[
    ("sys_enter_open", "sys_exit_open"),
    ("sys_enter_creat", "sys_exit_creat"),
    ("sys_enter_openat", "sys_exit_openat"),
    ("sys_enter_openat2", "sys_exit_openat2"),
    ("sys_enter_unlink", "sys_exit_unlink"),
    ("sys_enter_unlinkat", "sys_exit_unlinkat"),
    ("sys_enter_rename", "sys_exit_rename"),
    ("sys_enter_renameat", "sys_exit_renameat"),
    ("sys_enter_renameat2", "sys_exit_renameat2"),
    ("sys_enter_chmod", "sys_exit_chmod"),
    ("sys_enter_fchmodat", "sys_exit_fchmodat"),
    ("sys_enter_fchmodat2", "sys_exit_fchmodat2"),
    ("sys_enter_chown", "sys_exit_chown"),
    ("sys_enter_lchown", "sys_exit_lchown"),
    ("sys_enter_fchownat", "sys_exit_fchownat"),
    ("sys_enter_link", "sys_exit_link"),
    ("sys_enter_linkat", "sys_exit_linkat"),
    ("sys_enter_symlink", "sys_exit_symlink"),
    ("sys_enter_symlinkat", "sys_exit_symlinkat"),
    ("sys_enter_mkdir", "sys_exit_mkdir"),
    ("sys_enter_mkdirat", "sys_exit_mkdirat"),
    ("sys_enter_rmdir", "sys_exit_rmdir"),
    ("sys_enter_mknod", "sys_exit_mknod"),
    ("sys_enter_mknodat", "sys_exit_mknodat"),
    ("sys_enter_truncate", "sys_exit_truncate"),
    ("sys_enter_ftruncate", "sys_exit_ftruncate"),
    ("sys_enter_fchmod", "sys_exit_fchmod"),
    ("sys_enter_fchown", "sys_exit_fchown"),
    ("sys_enter_setxattr", "sys_exit_setxattr"),
    ("sys_enter_lsetxattr", "sys_exit_lsetxattr"),
    ("sys_enter_fsetxattr", "sys_exit_fsetxattr"),
    ("sys_enter_setxattrat", "sys_exit_setxattrat"),
    ("sys_enter_removexattr", "sys_exit_removexattr"),
    ("sys_enter_lremovexattr", "sys_exit_lremovexattr"),
    ("sys_enter_fremovexattr", "sys_exit_fremovexattr"),
    ("sys_enter_removexattrat", "sys_exit_removexattrat"),
    ("sys_enter_utime", "sys_exit_utime"),
    ("sys_enter_utimes", "sys_exit_utimes"),
    ("sys_enter_futimesat", "sys_exit_futimesat"),
    ("sys_enter_utimensat", "sys_exit_utimensat"),
];

const NET_SYSCALLS: &[(&str, &str)] = &[
    ("sys_enter_connect", "sys_exit_connect"),
    ("sys_enter_accept", "sys_exit_accept"),
    ("sys_enter_accept4", "sys_exit_accept4"),
    ("sys_enter_bind", "sys_exit_bind"),
    ("sys_enter_listen", "sys_exit_listen"),
    ("sys_enter_sendto", "sys_exit_sendto"),
    ("sys_enter_sendmsg", "sys_exit_sendmsg"),
];

/// Credential changes, ptrace, bpf(), mounts, namespaces, memfd. Module load/unload
/// (`init_module`, `finit_module`, `delete_module`) is decoded by `sys_enter_sec` but not
/// attached: kernels built without modules (like the test machines) lack those tracepoints, and
/// a probe that cannot attach there would make every start report a failure.
const SEC_SYSCALLS: &[(&str, &str)] = &[
    ("sys_enter_setuid", "sys_exit_setuid"),
    ("sys_enter_setgid", "sys_exit_setgid"),
    ("sys_enter_setreuid", "sys_exit_setreuid"),
    ("sys_enter_setregid", "sys_exit_setregid"),
    ("sys_enter_setresuid", "sys_exit_setresuid"),
    ("sys_enter_setresgid", "sys_exit_setresgid"),
    ("sys_enter_setgroups", "sys_exit_setgroups"),
    ("sys_enter_setfsuid", "sys_exit_setfsuid"),
    ("sys_enter_setfsgid", "sys_exit_setfsgid"),
    ("sys_enter_capset", "sys_exit_capset"),
    ("sys_enter_ptrace", "sys_exit_ptrace"),
    ("sys_enter_bpf", "sys_exit_bpf"),
    ("sys_enter_mount", "sys_exit_mount"),
    ("sys_enter_umount", "sys_exit_umount"),
    ("sys_enter_pivot_root", "sys_exit_pivot_root"),
    ("sys_enter_unshare", "sys_exit_unshare"),
    ("sys_enter_setns", "sys_exit_setns"),
    ("sys_enter_memfd_create", "sys_exit_memfd_create"),
];

/// io_uring requests, ring set-up, 32-bit syscalls, signals to the agent and comm changes.
/// Completion before submission: a completion probe attached late would only miss results.
const OTHER_PROBES: &[ProbeSpec] = &[
    ProbeSpec {
        program: "io_uring_complete",
        hook: Hook::TracePoint {
            category: "io_uring",
            name: "io_uring_complete",
        },
        required: false,
    },
    ProbeSpec {
        program: "io_uring_submit_req",
        hook: Hook::TracePoint {
            category: "io_uring",
            name: "io_uring_submit_req",
        },
        required: false,
    },
    ProbeSpec {
        program: "io_uring_req_failed",
        hook: Hook::TracePoint {
            category: "io_uring",
            name: "io_uring_req_failed",
        },
        required: false,
    },
    ProbeSpec {
        program: "io_uring_create",
        hook: Hook::TracePoint {
            category: "io_uring",
            name: "io_uring_create",
        },
        required: false,
    },
    ProbeSpec {
        program: "io_uring_register",
        hook: Hook::TracePoint {
            category: "io_uring",
            name: "io_uring_register",
        },
        required: false,
    },
    ProbeSpec {
        program: "compat_sys_exit",
        hook: Hook::RawTracePoint { name: "sys_exit" },
        required: false,
    },
    ProbeSpec {
        program: "compat_sys_enter",
        hook: Hook::RawTracePoint { name: "sys_enter" },
        required: false,
    },
    ProbeSpec {
        program: "signal_generate",
        hook: Hook::RawTracePoint {
            name: "signal_generate",
        },
        required: false,
    },
    ProbeSpec {
        program: "task_rename",
        hook: Hook::RawTracePoint {
            name: "task_rename",
        },
        required: false,
    },
];

/// Every probe, in attach order: lineage first, so the process tree is complete before file
/// and network events refer to it.
pub fn all_probes() -> Vec<ProbeSpec> {
    let mut probes: Vec<ProbeSpec> = LINEAGE_PROBES.to_vec();
    for (table, enter, exit) in [
        (FILE_SYSCALLS, "sys_enter_file", "sys_exit_file"),
        (NET_SYSCALLS, "sys_enter_net", "sys_exit_net"),
        (SEC_SYSCALLS, "sys_enter_sec", "sys_exit_sec"),
    ] {
        for (enter_tp, exit_tp) in table {
            // Exit first: an entry without its exit probe would only fill the pending map.
            probes.push(ProbeSpec {
                program: exit,
                hook: Hook::TracePoint {
                    category: "syscalls",
                    name: exit_tp,
                },
                required: false,
            });
            probes.push(ProbeSpec {
                program: enter,
                hook: Hook::TracePoint {
                    category: "syscalls",
                    name: enter_tp,
                },
                required: false,
            });
        }
    }
    probes.extend_from_slice(OTHER_PROBES);
    probes
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub hook: String,
    pub required: bool,
    pub attached: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("loading the eBPF object failed: {source}{cause}")]
    Load {
        source: Box<aya::EbpfError>,
        /// ": <why>" when a refused system call is behind it, else empty.
        cause: String,
    },
    #[error("required probe {program} ({hook}) did not attach: {error}")]
    Required {
        program: &'static str,
        hook: String,
        error: String,
    },
    #[error("map {0} missing from the eBPF object")]
    MissingMap(&'static str),
    #[error("reading map {map}: {source}")]
    Map {
        map: &'static str,
        source: aya::maps::MapError,
    },
}

pub struct LoadParams {
    pub agent_tgid: u32,
    pub offsets: KernelOffsets,
    pub capture_offsets: CaptureOffsets,
    pub io_uring_fields: IoUringTpFields,
    pub ring_buffer_bytes: u32,
}

/// Loads the object with load-time globals and the configured ring buffer size.
pub fn load(params: &LoadParams) -> Result<Ebpf, LoadError> {
    // Wake the reader early once a quarter of the ring is left, well before anything is lost.
    let wakeup_bytes = u64::from(params.ring_buffer_bytes / 4);
    let ebpf = EbpfLoader::new()
        .override_global("AGENT_TGID", &params.agent_tgid, true)
        .override_global("OFFSETS", &params.offsets, true)
        .override_global("CAPTURE_OFFSETS", &params.capture_offsets, true)
        .override_global("IO_URING_TP", &params.io_uring_fields, true)
        .override_global("WAKEUP_BYTES", &wakeup_bytes, true)
        .map_max_entries("EVENTS", params.ring_buffer_bytes)
        .load(PROBES_ELF)
        .map_err(|source| LoadError::Load {
            cause: cause::explain_aya(&source)
                .map(|c| format!(": {c}"))
                .unwrap_or_default(),
            source: Box::new(source),
        })?;
    Ok(ebpf)
}

/// An aya error with the reason behind a refused system call, when there is one.
fn with_cause(e: &aya::programs::ProgramError) -> String {
    match cause::explain_aya(e) {
        Some(why) => format!("{e}: {why}"),
        None => format!("{e:#}"),
    }
}

fn attach_one(ebpf: &mut Ebpf, spec: &ProbeSpec) -> Result<(), String> {
    let program = ebpf
        .program_mut(spec.program)
        .ok_or("program missing from the eBPF object")?;
    match spec.hook {
        // One program may serve several hooks: load it the first time only.
        Hook::TracePoint { category, name } => {
            let tp: &mut TracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            if tp.fd().is_err() {
                tp.load().map_err(|e| with_cause(&e))?;
            }
            tp.attach(category, name).map_err(|e| with_cause(&e))?;
        }
        Hook::RawTracePoint { name } => {
            let tp: &mut RawTracePoint = program.try_into().map_err(|e| format!("{e}"))?;
            if tp.fd().is_err() {
                tp.load().map_err(|e| with_cause(&e))?;
            }
            tp.attach(name).map_err(|e| with_cause(&e))?;
        }
    }
    Ok(())
}

/// Attaches every probe; fails only when a required one could not be attached.
pub fn attach_all(ebpf: &mut Ebpf) -> Result<Vec<ProbeStatus>, LoadError> {
    let probes = all_probes();
    let mut statuses = Vec::with_capacity(probes.len());
    for spec in &probes {
        let result = attach_one(ebpf, spec);
        let status = ProbeStatus {
            program: spec.program,
            hook: spec.hook.to_string(),
            required: spec.required,
            attached: result.is_ok(),
            error: result.err(),
        };
        // Each attach at debug; a failure is worth a line of its own at start.
        match &status.error {
            None => tracing::debug!(probe = spec.program, hook = %spec.hook, "probe attached"),
            Some(e) => {
                tracing::warn!(probe = spec.program, hook = %spec.hook, error = %e, "probe failed to attach")
            }
        }
        if spec.required && !status.attached {
            return Err(LoadError::Required {
                program: spec.program,
                hook: status.hook,
                error: status.error.unwrap_or_default(),
            });
        }
        statuses.push(status);
    }
    let failed: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.attached)
        .map(|s| s.program)
        .collect();
    let attached = statuses.len() - failed.len();
    if failed.is_empty() {
        tracing::info!("all {attached} probes attached");
    } else {
        tracing::info!(
            "{attached} of {} probes attached; not attached: {}",
            statuses.len(),
            failed.join(", ")
        );
    }
    Ok(statuses)
}

/// Detaches every program (links are released when their programs unload), so a final drain
/// sees everything that was ever submitted.
pub fn detach_all(ebpf: &mut Ebpf) {
    for spec in all_probes() {
        if let Some(program) = ebpf.program_mut(spec.program) {
            let _ = match program {
                aya::programs::Program::TracePoint(p) => p.unload(),
                aya::programs::Program::RawTracePoint(p) => p.unload(),
                _ => Ok(()),
            };
        }
    }
}

/// Per-CPU values of one slot of a per-CPU counter map.
fn per_cpu(ebpf: &Ebpf, map: &'static str, index: u32) -> Result<Vec<u64>, LoadError> {
    let m = ebpf.map(map).ok_or(LoadError::MissingMap(map))?;
    let array =
        PerCpuArray::<_, u64>::try_from(m).map_err(|source| LoadError::Map { map, source })?;
    let values = array
        .get(&index, 0)
        .map_err(|source| LoadError::Map { map, source })?;
    Ok(values.iter().copied().collect())
}

/// `failures[cpu][kind]`: cumulative failed reservations.
pub fn reservation_failures(ebpf: &Ebpf) -> Result<Vec<Vec<u64>>, LoadError> {
    let mut by_cpu: Vec<Vec<u64>> = Vec::new();
    for kind in 0..KIND_SLOTS {
        for (cpu, n) in per_cpu(ebpf, "RESERVE_FAILURES", kind)?
            .into_iter()
            .enumerate()
        {
            if by_cpu.len() <= cpu {
                by_cpu.resize(cpu + 1, vec![0; KIND_SLOTS as usize]);
            }
            by_cpu[cpu][kind as usize] = n;
        }
    }
    Ok(by_cpu)
}

/// The next sequence number each CPU will hand out.
pub fn next_sequences(ebpf: &Ebpf) -> Result<Vec<u64>, LoadError> {
    per_cpu(ebpf, "SEQUENCE", 0)
}

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "lineage-agent (uid {uid}) lacks {missing}, needed to load and attach eBPF programs; \
         run it as root or grant them (systemd: AmbientCapabilities=, Kubernetes: \
         securityContext.capabilities.add)"
    )]
    Privileges { uid: u32, missing: String },
    #[error(
        "this kernel exposes no BTF type information at {path} (it needs CONFIG_DEBUG_INFO_BTF=y): \
         the agent uses it to find kernel struct offsets"
    )]
    NoBtf { path: String },
    #[error("cannot read the kernel's BTF at {path}: {}", cause::describe(.source))]
    BtfAccess {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "this kernel does not support BPF ring buffers (Linux 5.8 or newer is needed): creating \
         one failed with EINVAL"
    )]
    NoRingBuf,
    #[error("creating a BPF ring buffer was refused: {0}")]
    RingBufRefused(String),
    #[error("tracefs at {path} is mounted but closed to the agent (it is mode 0700, owned by root): {reason}")]
    TracefsAccess { path: String, reason: String },
    #[error("tracefs is not mounted at {path}, and the agent could not mount it: {reason}")]
    TracefsMount { path: String, reason: String },
}

/// Checks what the kernel and our privileges must offer before touching anything, so a missing
/// piece is named instead of surfacing as an opaque EPERM later.
pub fn preflight(btf_path: &Path) -> Result<(), PreflightError> {
    let privileges = Privileges::current();
    let missing: Vec<_> = [Cap::Bpf, Cap::Perfmon]
        .into_iter()
        .filter(|&c| !privileges.has(c) && !privileges.has(Cap::SysAdmin))
        .map(Cap::name)
        .collect();
    if !missing.is_empty() {
        return Err(PreflightError::Privileges {
            uid: privileges.uid,
            missing: missing.join(" and "),
        });
    }
    let path = btf_path.display().to_string();
    match std::fs::File::open(btf_path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PreflightError::NoBtf { path })
        }
        Err(source) => return Err(PreflightError::BtfAccess { path, source }),
    }
    match aya::sys::is_map_supported(MapType::RingBuf) {
        Ok(true) => Ok(()),
        // aya maps EINVAL (unknown map type) to "unsupported".
        Ok(false) => Err(PreflightError::NoRingBuf),
        Err(e) => Err(PreflightError::RingBufRefused(cause::explain(
            "bpf",
            &e.io_error,
            &[Cap::Bpf],
        ))),
    }
}

/// Mounts tracefs where the classic tracepoints expect it, if it is not there yet.
pub fn ensure_tracefs(path: &Path) -> Result<(), PreflightError> {
    match std::fs::metadata(path.join("events")) {
        Ok(m) if m.is_dir() => return Ok(()),
        // Mounted but closed to us (tracefs is 0700 root): mounting again would not help.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(PreflightError::TracefsAccess {
                path: path.display().to_string(),
                reason: cause::explain("stat", &e, &[Cap::DacReadSearch]),
            });
        }
        _ => {}
    }
    let fail = |reason: String| PreflightError::TracefsMount {
        path: path.display().to_string(),
        reason,
    };
    std::fs::create_dir_all(path)
        .map_err(|e| fail(format!("creating the mount point: {}", cause::describe(&e))))?;
    let target = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| fail(e.to_string()))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let reason = match e.raw_os_error() {
            Some(libc::ENODEV) => "mount() failed with ENODEV: this kernel has no tracefs \
                                   (CONFIG_TRACING)"
                .to_owned(),
            _ => cause::explain("mount", &e, &[Cap::SysAdmin]),
        };
        return Err(fail(format!(
            "{reason}. Mount it on the host before starting the agent (systemd: \
             sys-kernel-tracing.mount; Kubernetes: on the node)"
        )));
    }
    tracing::info!(path = %path.display(), "mounted tracefs");
    Ok(())
}

/// Raising RLIMIT_MEMLOCK matters only on kernels before 5.11 (memcg accounting): a failure is
/// a warning, not an error.
pub fn raise_memlock() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not raise RLIMIT_MEMLOCK; fine on kernels that charge BPF memory to memcg");
    }
}

/// The embedded eBPF object, for its digest in AGENT_START.
pub fn object_bytes() -> &'static [u8] {
    PROBES_ELF
}

/// The kernel's tag (a hash of the verified instructions) of a loaded program.
pub fn kernel_tag(ebpf: &Ebpf, program: &str) -> Option<u64> {
    ebpf.program(program)?.info().ok().map(|i| i.tag())
}

/// Bytes waiting in the ring buffer as last seen by a producer (largest over CPUs).
pub fn ring_fill(ebpf: &Ebpf) -> Result<u64, LoadError> {
    Ok(per_cpu(ebpf, "RING_FILL", 0)?
        .into_iter()
        .max()
        .unwrap_or(0))
}
