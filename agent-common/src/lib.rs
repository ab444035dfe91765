//! The kernel/user contract: every record the eBPF programs write into the ring buffer.
//!
//! Both sides compile these exact `#[repr(C)]` structs, so a layout change is a compile-time
//! event on both sides at once. Rules that keep the contract safe to decode from untrusted bytes:
//! no implicit padding (explicit `_pad` fields, `const` asserts on sizes and offsets), no `bool`,
//! `char` or data-carrying enums, and record kinds are plain `u32` numbers that are never reused,
//! decoded with `TryFrom` in userspace.
#![no_std]

pub mod record;
pub use record::*;

pub mod enforce;
pub use enforce::*;

/// Runtime knobs the agent writes into the eBPF object's globals before loading it.
pub mod config;
pub use config::*;
