//! Rendering events (`lineage.v1.Event`, docs/EVENTS.md) for people.
//!
//! The schema is the generated one; this module only words it. Kinds it has no wording for
//! (added to event.proto after this version) are shown generically as `key=value` from their
//! JSON mapping, so a newer agent never breaks the CLI. `tail` and `tree` share it.

use std::collections::{HashMap, VecDeque};

use lineage_proto::payload;
pub use lineage_proto::v1::Event;
use lineage_proto::v1::{event::Kind, Exec, Snapshot};

/// An event as the agent's API sends it today (a schema 1 JSON object, docs/EVENTS.md),
/// read as the typed message.
pub fn parse(json: &str) -> Result<Event, payload::PayloadError> {
    payload::decode(payload::SCHEMA_JSON, json.as_bytes())
}

use crate::clock::{format_hms, utc_offset_secs, Clock};
use crate::style::{Paint, Style};

/// The parts of an exec id `<boot tag>-<tgid>-<start ns>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecIdParts<'a> {
    pub boot: &'a str,
    pub tgid: u32,
    pub start_ns: u64,
}

pub fn parse_exec_id(id: &str) -> Option<ExecIdParts<'_>> {
    let mut it = id.splitn(3, '-');
    let boot = it.next()?;
    let tgid = it.next()?.parse().ok()?;
    let start_ns = it.next()?.parse().ok()?;
    (!boot.is_empty() && boot.bytes().all(|b| b.is_ascii_hexdigit())).then_some(ExecIdParts {
        boot,
        tgid,
        start_ns,
    })
}

/// Shell-like quoting of one argument, so argv reads unambiguously on one line.
pub fn quote_arg(a: &str) -> String {
    let plain = !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%^".contains(&b));
    if plain {
        a.to_owned()
    } else if !a.contains('\'') && !a.chars().any(char::is_control) {
        format!("'{a}'")
    } else {
        // Debug quoting escapes quotes and control characters.
        format!("{a:?}")
    }
}

pub fn quote_argv(argv: &[String]) -> String {
    argv.iter()
        .map(|a| quote_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kind's name, or `?` for an event without one.
pub fn kind_name(ev: &Event) -> &'static str {
    ev.kind.as_ref().map_or("?", Kind::name)
}

/// The kind word, padded and coloured.
pub fn kind_word(ev: &Event, style: Style) -> String {
    let (word, paint) = match &ev.kind {
        Some(Kind::Exec(_)) => ("exec", Paint::Green),
        Some(Kind::ExecFailed(_)) => ("exec!", Paint::Red),
        Some(Kind::Fork(f)) if f.thread => ("thread", Paint::Blue),
        Some(Kind::Fork(_)) => ("fork", Paint::Blue),
        Some(Kind::Exit(x)) if x.signal.is_some() || x.code.is_some_and(|c| c != 0) => {
            ("exit", Paint::Red)
        }
        Some(Kind::Exit(_)) => ("exit", Paint::Yellow),
        Some(Kind::Snapshot(_)) => ("snapshot", Paint::Magenta),
        Some(Kind::Loss(_)) => ("LOSS", Paint::Red),
        Some(Kind::Enforcement(_)) => ("ENFORCE", Paint::Red),
        Some(Kind::SignalToAgent(_)) => ("SIGNAL", Paint::Red),
        _ => (kind_name(ev), Paint::Bold),
    };
    let padded = format!("{word:<8}");
    style.paint(paint, &padded).into_owned()
}

/// What happened, after the kind word: binary and argv, exit status, child, loss counts.
pub fn details(ev: &Event) -> String {
    match &ev.kind {
        Some(Kind::Exec(x)) => {
            let mut s = format!("{} {}", or_unknown(&x.binary), quote_argv(&x.argv));
            if x.args_truncated {
                s.push_str(" [argv truncated]");
            }
            if !x.args_captured {
                s.push_str(" [argv not captured]");
            }
            s
        }
        Some(Kind::Snapshot(x)) => format!("{} {}", or_unknown(&x.binary), quote_argv(&x.argv)),
        Some(Kind::ExecFailed(x)) => format!(
            "{} {}: {}",
            or_unknown(&x.filename),
            quote_argv(&x.argv),
            if x.error.is_empty() {
                format!("errno {}", x.errno)
            } else {
                x.error.clone()
            }
        ),
        Some(Kind::Fork(f)) if f.thread => format!("new thread {}", f.child_pid),
        Some(Kind::Fork(f)) => format!("child {}", f.child_tgid),
        Some(Kind::Exit(x)) => {
            let mut s = match (x.code, x.signal) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(c), None) => format!("code {c}"),
                (None, None) => "?".into(),
            };
            if x.core_dumped {
                s.push_str(" (core dumped)");
            }
            if !x.process {
                s.push_str(" [thread]");
            }
            s
        }
        Some(Kind::Loss(l)) => {
            let mut s = format!("cpu {}: {} record(s) missing", l.cpu, l.missing);
            if !l.failures.is_empty() {
                let f: Vec<String> = l
                    .failures
                    .iter()
                    .map(|f| format!("{} {}", f.kind, f.count))
                    .collect();
                s.push_str(&format!(", reservation failures: {}", f.join(", ")));
            }
            if l.unexplained > 0 {
                s.push_str(&format!(", {} UNEXPLAINED", l.unexplained));
            }
            s
        }
        // Files, sockets, syscalls, enforcement; a kind newer than this CLI: its fields.
        _ => crate::actions::summary(ev).unwrap_or_else(|| generic(ev)),
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "?"
    } else {
        s
    }
}

/// `key=value …` of the kind's fields, from its JSON mapping (defaults are left out there).
fn generic(ev: &Event) -> String {
    let Ok(serde_json::Value::Object(mut all)) = serde_json::to_value(ev) else {
        return String::new();
    };
    let Some(serde_json::Value::Object(body)) = all.remove(kind_name(ev)) else {
        return String::new();
    };
    body.iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={}", quote_arg(s)),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The event's time as `HH:MM:SS.mmm` local time: from its wall-clock stamp, or (events
/// without one, from agents before typed events) converted from the boot clock.
pub fn time_of(ev: &Event, clock: &Clock) -> String {
    match &ev.wall_time {
        Some(w) => {
            let ns = w.unix_ns();
            format_hms(ns, utc_offset_secs(w.seconds))
        }
        None => clock.format(ev.time_ns),
    }
}

/// Most names remembered by a live tail (oldest forgotten first).
const NAMES_KEPT: usize = 65_536;

/// exec id → comm, learned from the events seen (and from lineage answers).
#[derive(Debug, Default)]
pub struct Names {
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Names {
    pub fn insert(&mut self, exec_id: &str, comm: &str) {
        if comm.is_empty() {
            return;
        }
        if self
            .map
            .insert(exec_id.to_owned(), comm.to_owned())
            .is_none()
        {
            self.order.push_back(exec_id.to_owned());
            while self.order.len() > NAMES_KEPT {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    pub fn get(&self, exec_id: &str) -> Option<&str> {
        self.map.get(exec_id).map(String::as_str)
    }

    pub fn contains(&self, exec_id: &str) -> bool {
        self.map.contains_key(exec_id)
    }

    /// Learns the names an event reveals: an exec's or snapshot's own image, and a forked
    /// child (which runs its parent's program, so has its parent's name).
    pub fn learn(&mut self, ev: &Event) {
        if ev.exec_id.is_empty() {
            return;
        }
        let id = ev.exec_id.as_str();
        match &ev.kind {
            Some(Kind::Exec(Exec { binary, .. }) | Kind::Snapshot(Snapshot { binary, .. })) => {
                let comm = if ev.comm.is_empty() {
                    basename(binary)
                } else {
                    &ev.comm
                };
                self.insert(id, comm);
            }
            Some(Kind::Fork(f)) if !f.child_exec_id.is_empty() => {
                if let Some(name) = self.get(id).map(str::to_owned) {
                    self.insert(&f.child_exec_id, &name);
                }
            }
            _ => {}
        }
    }

    /// `comm(tgid)`, or `?(tgid)` when the name was never seen.
    pub fn label(&self, exec_id: &str, fallback_tgid: Option<u32>) -> String {
        let tgid = parse_exec_id(exec_id)
            .map(|p| p.tgid)
            .or(fallback_tgid)
            .map_or("?".into(), |t| t.to_string());
        format!("{}({tgid})", self.get(exec_id).unwrap_or("?"))
    }
}

pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Ancestors shown before the process itself in a chain.
pub const CHAIN_ANCESTORS: usize = 3;

/// `bash(1200) → python3(1300) → curl(1310)`: at most the three nearest ancestors, oldest
/// first, then the acting image.
pub fn chain(ev: &Event, names: &Names, style: Style) -> String {
    let mut parts: Vec<String> = ev
        .ancestors
        .iter()
        .take(CHAIN_ANCESTORS)
        .rev()
        .map(|id| names.label(id, None))
        .collect();
    let own = match &ev.kind {
        _ if !ev.exec_id.is_empty() => names.label(&ev.exec_id, Some(ev.tgid)),
        Some(Kind::Loss(_)) => String::new(),
        _ => format!("?({})", ev.tgid),
    };
    if !own.is_empty() {
        parts.push(style.paint(Paint::Bold, &own).into_owned());
    }
    parts.join(" → ")
}

/// The compact one-line view: time, host, chain, kind, details.
pub fn line(ev: &Event, host: &str, names: &Names, clock: &Clock, style: Style) -> String {
    let time = time_of(ev, clock);
    let chain = chain(ev, names, style);
    let mut s = format!(
        "{} {} ",
        style.paint(Paint::Dim, &time),
        style.paint(Paint::Cyan, host)
    );
    if !chain.is_empty() {
        s.push_str(&chain);
        s.push(' ');
    }
    s.push_str(&kind_word(ev, style));
    s.push(' ');
    s.push_str(&details(ev));
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixtures are written in schema 1 JSON: it reads as the same message.
    fn ev(json: &str) -> Event {
        lineage_proto::payload::decode(lineage_proto::payload::SCHEMA_JSON, json.as_bytes())
            .unwrap()
    }

    #[test]
    fn exec_ids_parse() {
        assert_eq!(
            parse_exec_id("0a1b2c3d-1310-123456789"),
            Some(ExecIdParts {
                boot: "0a1b2c3d",
                tgid: 1310,
                start_ns: 123_456_789
            })
        );
        assert_eq!(parse_exec_id("x-1-2"), None);
        assert_eq!(parse_exec_id("0a1b-1"), None);
        assert_eq!(parse_exec_id("0a1b-p-2"), None);
    }

    #[test]
    fn chain_shows_three_ancestors_oldest_first() {
        let mut names = Names::default();
        for (id, comm) in [
            ("b-1-1", "systemd"),
            ("b-900-9", "sshd"),
            ("b-1200-12", "bash"),
            ("b-1300-13", "python3"),
        ] {
            names.learn(&ev(&format!(
                r#"{{"kind":"exec","exec_id":"{id}","comm":"{comm}"}}"#
            )));
        }
        let curl = ev(r#"{"kind":"exec","time_ns":1,"pid":1310,"tgid":1310,
            "exec_id":"b-1310-131","comm":"curl","binary":"/usr/bin/curl",
            "argv":["curl","-s","http://x/a b"],
            "ancestors":["b-1300-13","b-1200-12","b-900-9","b-1-1"]}"#);
        names.learn(&curl);
        assert_eq!(
            chain(&curl, &names, Style::PLAIN),
            "sshd(900) → bash(1200) → python3(1300) → curl(1310)",
            "systemd, the fourth ancestor, is left out"
        );
        let mut short = curl.clone();
        short.ancestors.truncate(2);
        assert_eq!(
            chain(&short, &names, Style::PLAIN),
            "bash(1200) → python3(1300) → curl(1310)"
        );
        // Unknown ancestors fall back to the tgid in their exec id.
        let orphan = ev(r#"{"kind":"exit","tgid":7,"exec_id":"b-7-70",
            "ancestors":["b-6-60"],"code":0,"process":true}"#);
        assert_eq!(chain(&orphan, &names, Style::PLAIN), "?(6) → ?(7)");
    }

    #[test]
    fn forked_children_inherit_the_parent_name() {
        let mut names = Names::default();
        names.learn(&ev(r#"{"kind":"snapshot","exec_id":"b-5-5","comm":"",
            "binary":"/usr/bin/bash"}"#));
        names.learn(&ev(r#"{"kind":"fork","exec_id":"b-5-5","child_tgid":6,
            "child_exec_id":"b-6-6"}"#));
        assert_eq!(names.label("b-6-6", None), "bash(6)");
    }

    #[test]
    fn details_per_kind() {
        let d = |j: &str| details(&ev(j));
        assert_eq!(
            d(
                r#"{"kind":"exec","binary":"/bin/sh","argv":["sh","-c","echo 'hi'"],
                "args_truncated":true,"args_captured":true}"#
            ),
            r#"/bin/sh sh -c "echo 'hi'" [argv truncated]"#
        );
        assert_eq!(
            d(
                r#"{"kind":"exec_failed","filename":"/nope","argv":["/nope"],"errno":2,
                "error":"ENOENT"}"#
            ),
            "/nope /nope: ENOENT"
        );
        assert_eq!(d(r#"{"kind":"exit","code":3,"process":true}"#), "code 3");
        assert_eq!(
            d(r#"{"kind":"exit","signal":11,"core_dumped":true,"process":true}"#),
            "killed by signal 11 (core dumped)"
        );
        assert_eq!(
            d(r#"{"kind":"fork","child_tgid":42,"thread":false}"#),
            "child 42"
        );
        assert_eq!(
            d(r#"{"kind":"file","op":"open","path":"/etc/a b","fd":3,"cpu":1,"seq":9}"#),
            "'/etc/a b' fd=3"
        );
        assert_eq!(
            d(
                r#"{"kind":"loss","loss_cpu":2,"missing":5,"failures":[["exec",3]],
                "unexplained":0}"#
            ),
            "cpu 2: 5 record(s) missing, reservation failures: exec 3"
        );
    }

    #[test]
    fn a_plain_line_has_no_escape_codes() {
        let names = Names::default();
        let e = ev(r#"{"kind":"exec","time_ns":5,"tgid":9,"exec_id":"b-9-9",
            "binary":"/bin/true","argv":["true"],"args_captured":true}"#);
        let plain = line(
            &e,
            "host-a",
            &names,
            &Clock::Estimated(Some(0)),
            Style::PLAIN,
        );
        assert!(!plain.contains('\x1b'), "{plain:?}");
        assert!(
            plain.ends_with("host-a ?(9) exec     /bin/true true"),
            "{plain}"
        );
        let coloured = line(
            &e,
            "host-a",
            &names,
            &Clock::Estimated(Some(0)),
            Style { colour: true },
        );
        assert!(coloured.contains("\x1b[32mexec"), "{coloured:?}");
    }

    #[test]
    fn arguments_are_quoted_unambiguously() {
        assert_eq!(quote_arg("plain-arg_1.txt"), "plain-arg_1.txt");
        assert_eq!(quote_arg("a b"), "'a b'");
        assert_eq!(quote_arg(""), "''");
        assert_eq!(quote_arg("it's"), r#""it's""#);
        assert_eq!(quote_arg("a\nb"), r#""a\nb""#);
    }
}
