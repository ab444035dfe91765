//! Where events go until the evidence chain exists: stdout as JSON lines or compact text.

use std::io::{BufWriter, Stdout, Write};

use crate::{
    capture::event::{Detail, Event},
    capture::lineage::ProcessTable,
    config::Print,
};

pub struct Sink {
    format: Print,
    out: BufWriter<Stdout>,
}

impl Sink {
    /// Whether events are printed at all.
    pub fn prints(&self) -> bool {
        self.format != Print::None
    }

    pub fn new(format: Print) -> Self {
        Sink {
            format,
            out: BufWriter::with_capacity(1 << 16, std::io::stdout()),
        }
    }

    pub fn emit(&mut self, event: &Event, table: &ProcessTable) {
        let result = match self.format {
            Print::None => Ok(()),
            Print::Json => serde_json::to_writer(&mut self.out, event)
                .map_err(std::io::Error::from)
                .and_then(|()| self.out.write_all(b"\n")),
            Print::Text => writeln!(self.out, "{}", text_line(event, table)),
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "writing an event to stdout failed");
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

/// `bash(1200) → python3(1300)` for an image and its ancestors, oldest first.
fn chain(event: &Event, table: &ProcessTable) -> String {
    let name = |id: &str| {
        table
            .image(id)
            .map(|i| {
                format!(
                    "{}({})",
                    if i.comm.is_empty() { "?" } else { &i.comm },
                    i.tgid
                )
            })
            .unwrap_or_else(|| "?".into())
    };
    let mut parts: Vec<String> = event
        .ancestors
        .iter()
        .take(3)
        .rev()
        .map(|id| name(id))
        .collect();
    if let Some(id) = &event.exec_id {
        parts.push(name(id));
    }
    parts.join(" → ")
}

fn text_line(event: &Event, table: &ProcessTable) -> String {
    let t = event.time_ns as f64 / 1e9;
    let who = chain(event, table);
    match &event.detail {
        Detail::Exec { argv, binary, .. } => {
            let uid = event.creds.map(|c| c.uid).unwrap_or_default();
            format!("[{t:.6}] exec   {who} {binary} {argv:?} uid={uid}")
        }
        Detail::ExecFailed {
            filename, error, ..
        } => format!("[{t:.6}] exec!  {who} {filename} {error}"),
        Detail::Fork {
            child_tgid,
            child_pid,
            thread,
            ..
        } => {
            let what = if *thread { "thread" } else { "fork  " };
            format!("[{t:.6}] {what} {who} → {child_tgid}/{child_pid}")
        }
        Detail::Exit {
            code,
            signal,
            process,
            ..
        } => {
            let how = match (code, signal) {
                (_, Some(s)) => format!("signal {s}"),
                (Some(c), None) => format!("code {c}"),
                _ => String::new(),
            };
            format!(
                "[{t:.6}] {} {who} {how}",
                if *process { "exit  " } else { "texit " }
            )
        }
        Detail::Snapshot { binary, .. } => format!("[{t:.6}] found  {who} {binary}"),
        Detail::File {
            op,
            path,
            path2,
            error,
            ..
        } => {
            let shown = path;
            let to = path2
                .as_deref()
                .map(|p| format!(" → {p}"))
                .unwrap_or_default();
            format!("[{t:.6}] {op:<6} {who} {shown}{to} {}", error.unwrap_or(""))
        }
        Detail::Connect {
            address,
            port,
            path,
            result,
            error,
            ..
        } => {
            let target = match (address, port, path) {
                (Some(a), Some(p), _) => format!("{a}:{p}"),
                (_, _, Some(p)) => p.clone(),
                _ => "?".into(),
            };
            format!(
                "[{t:.6}] connect {who} {target} {result} {}",
                error.unwrap_or("")
            )
        }
        Detail::Accept {
            peer_address,
            peer_port,
            local_port,
            error,
            ..
        } => {
            let peer = match (peer_address, peer_port) {
                (Some(a), Some(p)) => format!("{a}:{p}"),
                _ => "?".into(),
            };
            format!(
                "[{t:.6}] accept {who} {peer} on :{} {}",
                local_port.unwrap_or(0),
                error.unwrap_or("")
            )
        }
        Detail::Socket {
            op,
            address,
            port,
            path,
            error,
            ..
        } => {
            let target = match (address, port, path) {
                (Some(a), Some(p), _) => format!("{a}:{p}"),
                (_, _, Some(p)) => p.clone(),
                _ => "?".into(),
            };
            format!("[{t:.6}] {op:<6} {who} {target} {}", error.unwrap_or(""))
        }
        Detail::IoUringRequest {
            io_uring, error, ..
        } => format!(
            "[{t:.6}] uring  {who} {} {}",
            io_uring.opcode,
            error.unwrap_or("")
        ),
        Detail::IoUringSetup { op, ring, .. } => format!("[{t:.6}] uring  {who} {op} {ring}"),
        Detail::Syscall {
            syscall,
            compat,
            result,
            ..
        } => {
            let abi = if *compat { " (32-bit)" } else { "" };
            format!("[{t:.6}] sys    {who} {syscall}{abi} = {result}")
        }
        Detail::SignalToAgent { signal, .. } => {
            format!("[{t:.6}] SIGNAL {who} sent signal {signal} to the agent")
        }
        Detail::CommChange {
            old_comm, new_comm, ..
        } => format!("[{t:.6}] comm   {who} {old_comm} → {new_comm}"),
        Detail::Loss {
            loss_cpu,
            missing,
            unexplained,
            ..
        } => {
            format!("[{t:.6}] LOSS   cpu {loss_cpu}: {missing} records missing, {unexplained} unexplained")
        }
    }
}
