//! The kernel side as userspace sees it: the embedded programs, the probe table and how each
//! probe is loaded and attached, the running kernel's BTF, and the capture filter's maps.

pub mod btf;
pub mod filter;
pub mod probes;
pub mod tracefs;
