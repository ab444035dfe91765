//! Operations plumbing shared by the agent and the collector, so both follow the same
//! conventions without two copies drifting apart:
//!
//! - [`exposition`]: the Prometheus text format, with the naming rules enforced where a page
//!   is built (one family per name, counters end in `_total`, escaped label values).
//! - [`system`]: the standard `process_*` gauges and a directory's filesystem space.
//! - [`listen`]: plain HTTP listens on loopback only.
//! - [`endpoint`]: `/metrics`, `/healthz`, `/readyz`; every other path is 404.
//! - [`logging`]: text or JSON logs, colour only on a terminal, a strict `LINEAGE_LOG`.

pub mod endpoint;
pub mod exposition;
pub mod listen;
pub mod logging;
pub mod system;

pub use endpoint::{serve, Endpoint, Health};
pub use exposition::{Histogram, Page};
pub use listen::{loopback_address, ListenError};
pub use logging::LogFormat;
