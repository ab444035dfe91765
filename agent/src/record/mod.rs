//! Record: the data directory, the hash chain and its journal, sealing into signed segments,
//! retention and acknowledgements, all on the writer thread ([`writer`]).

pub mod datadir;
pub mod recorder;
pub mod report;
pub mod retention;
pub mod wal;
pub mod writer;
