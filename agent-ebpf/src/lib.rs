//! Empty on purpose: the agent depends on this crate as a build-dependency so cargo rebuilds the
//! agent when the programs change; the programs themselves are the `lineage-probes` binary.
#![no_std]
