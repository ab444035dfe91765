//! Generates the `lineage.v1` code from `lineage/v1/*.proto`: prost messages and tonic
//! services, serde impls in the canonical protobuf JSON mapping (pbjson, proto field names),
//! and the table of event kind names read from `Event.kind`. protox parses the protos in
//! Rust, so no `protoc` binary is needed on any machine.

use std::{fmt::Write as _, path::PathBuf};

use prost::Message as _;

const PROTOS: [&str; 2] = ["lineage/v1/agent.proto", "lineage/v1/event.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["."])?;
    std::fs::write(out.join("kinds.rs"), kinds_table(&fds)?)?;
    let descriptors = fds.encode_to_vec();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Our own Timestamp, so its JSON can be the canonical RFC 3339 form (timestamp.rs).
        .extern_path(".google.protobuf.Timestamp", "crate::timestamp::Timestamp")
        // Undecodable requests are INVALID_ARGUMENT, not INTERNAL (src/codec.rs).
        .codec_path("crate::codec::LineageCodec")
        .compile_fds(fds)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .preserve_proto_field_names()
        // Readers stay lenient: a newer agent's fields must not break an older CLI.
        .ignore_unknown_fields()
        .build(&[".lineage.v1"])?;
    Ok(())
}

/// `impl event::Kind { fn name }` and `KINDS`, from the `Event.kind` oneof, so that adding a
/// kind to event.proto is the only change its name needs.
fn kinds_table(fds: &prost_types::FileDescriptorSet) -> Result<String, Box<dyn std::error::Error>> {
    let event = fds
        .file
        .iter()
        .filter(|f| f.package() == "lineage.v1")
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == "Event")
        .ok_or("event.proto has no Event message")?;
    let oneof = event
        .oneof_decl
        .iter()
        .position(|o| o.name() == "kind")
        .ok_or("Event has no `kind` oneof")? as i32;
    let names: Vec<&str> = event
        .field
        .iter()
        .filter(|f| f.oneof_index == Some(oneof) && !f.proto3_optional())
        .map(|f| f.name())
        .collect();
    let mut s = String::from(
        "/// Every event kind, as named in `Event.kind` (event.proto), in field-number order.\n",
    );
    writeln!(s, "pub const KINDS: [&str; {}] = {names:?};", names.len())?;
    s.push_str("impl event::Kind {\n    /// The kind's name: its field name in `Event.kind`.\n");
    s.push_str("    pub fn name(&self) -> &'static str {\n        match self {\n");
    for n in &names {
        writeln!(s, "            event::Kind::{}(_) => {n:?},", camel(n))?;
    }
    s.push_str("        }\n    }\n}\n");
    Ok(s)
}

/// prost's variant name for a oneof field (`exec_failed` -> `ExecFailed`).
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
