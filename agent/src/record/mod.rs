//! Record: the data directory, the hash chain and its journal, sealing into signed segments,
//! retention and acknowledgements.

pub mod datadir;
pub mod recorder;
pub mod report;
pub mod retention;
pub mod wal;
