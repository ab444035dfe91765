//! The Lineage agent as a library, organised by job: [`kernel`] (load, attach, BTF, probe table,
//! filter maps), [`capture`] (ring → decode → loss reconciliation → lineage join), [`record`]
//! (chain, journal, seal, retention, acknowledgements) and [`serve`] (gRPC, metrics, stdout).
//! [`runtime::run`] wires them together; the `lineage-agent` binary, the benchmarks and the tests
//! all call this code rather than copies of it.

pub mod capture;
pub mod cause;
pub mod cli;
pub mod config;
pub mod enforce;
pub mod kernel;
pub mod record;
pub mod runtime;
pub mod serve;
