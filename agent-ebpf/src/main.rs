//! Lineage kernel programs. All probes live in one ELF; the agent loads and attaches each on its
//! own so one verifier rejection is reported per probe and does not take the rest down.
//!
//! Hooks are classic and raw tracepoints only: the kernels we target may refuse fentry/LSM and
//! may lack kprobes.
#![no_std]
#![no_main]

mod compat;
mod emit;
mod enforce;
mod exec;
mod exit;
mod file;
mod filter;
mod fork;
mod io_uring;
mod maps;
mod net;
mod path;
mod sec;
mod syscalls;
mod task;
mod task_events;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}
