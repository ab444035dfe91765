//! Cleanup when the suite is interrupted (SIGINT, SIGTERM): the agents and auditd it started
//! are stopped and auditd's rules removed, so an interrupted benchmark leaves the host as it
//! found it.

use std::sync::Mutex;

static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// The scratch directory to remove on interruption (when the suite created it).
static SCRATCH: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);

pub fn scratch(dir: std::path::PathBuf) {
    *SCRATCH.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir);
}

pub fn register(pid: u32) {
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
    // Started while the suite is being interrupted: stop it at once.
    if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) != 0 {
        stop_all();
    }
}

fn stop_all() {
    let pids = CHILDREN.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for pid in pids {
        // SAFETY: signalling a child this process started.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
}

pub fn unregister(pid: u32) {
    CHILDREN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: only an atomic store.
    INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
}

/// Installs SIGINT/SIGTERM handlers that only set a flag, and a thread that watches the flag
/// and cleans up. (Blocking the signals instead would be inherited by the children — the
/// agent would then never see its SIGTERM.) Handlers revert to the default on exec, so the
/// children are unaffected. Call first thing in `main`.
pub fn guard() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only stores to an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    std::thread::spawn(|| loop {
        let sig = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
        if sig != 0 {
            eprintln!("lineage-bench: signal {sig}: stopping the agents and auditd it started");
            stop_all();
            crate::auditd::emergency_teardown();
            // Give the agents a moment to seal and exit before we go; anything the main
            // thread started meanwhile is stopped by `register`, or here.
            std::thread::sleep(std::time::Duration::from_secs(1));
            stop_all();
            crate::auditd::emergency_teardown();
            if let Some(dir) = SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    });
}
