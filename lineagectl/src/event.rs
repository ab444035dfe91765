//! Reading schema 1 events (docs/EVENTS.md) and rendering them for people.
//!
//! The view is lenient: every field is optional, unknown fields are ignored, so a newer agent
//! adding fields never breaks the CLI. `tail` and `tree` share the renderings here.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;

use crate::clock::Clock;
use crate::style::{Paint, Style};

/// One event object, as much of it as the CLI shows.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Event {
    pub kind: String,
    pub time_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub exec_id: Option<String>,
    pub parent_exec_id: Option<String>,
    /// Nearest first (live events only; not stored on the chain).
    pub ancestors: Vec<String>,
    // exec, snapshot, exec_failed
    pub binary: Option<String>,
    pub filename: Option<String>,
    pub argv: Vec<String>,
    pub args_truncated: bool,
    pub args_captured: Option<bool>,
    pub previous_exec_id: Option<String>,
    pub comm: Option<String>,
    pub uid: Option<u32>,
    pub error: Option<String>,
    pub errno: Option<i32>,
    // fork
    pub child_pid: Option<u32>,
    pub child_tgid: Option<u32>,
    pub thread: bool,
    pub child_exec_id: Option<String>,
    // exit
    pub code: Option<u32>,
    pub signal: Option<u32>,
    pub core_dumped: bool,
    pub process: bool,
    // loss
    pub loss_cpu: Option<u32>,
    pub missing: u64,
    pub failures: Vec<(String, u64)>,
    pub unexplained: u64,
    /// Fields of kinds this version does not know (file, connect, …), shown generically.
    #[serde(flatten)]
    pub other: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Event {
    pub fn parse(json: &str) -> Result<Event, serde_json::Error> {
        serde_json::from_str(json)
    }
}

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

/// The kind word, padded and coloured.
pub fn kind_word(ev: &Event, style: Style) -> String {
    let (word, paint) = match ev.kind.as_str() {
        "exec" => ("exec", Paint::Green),
        "exec_failed" => ("exec!", Paint::Red),
        "fork" if ev.thread => ("thread", Paint::Blue),
        "fork" => ("fork", Paint::Blue),
        "exit" if ev.signal.is_some() || ev.code.is_some_and(|c| c != 0) => ("exit", Paint::Red),
        "exit" => ("exit", Paint::Yellow),
        "snapshot" => ("snapshot", Paint::Magenta),
        "loss" => ("LOSS", Paint::Red),
        other => (other, Paint::Bold),
    };
    let padded = format!("{word:<8}");
    style.paint(paint, &padded).into_owned()
}

/// What happened, after the kind word: binary and argv, exit status, child, loss counts.
pub fn details(ev: &Event) -> String {
    match ev.kind.as_str() {
        "exec" | "snapshot" => {
            let mut s = format!(
                "{} {}",
                ev.binary.as_deref().unwrap_or("?"),
                quote_argv(&ev.argv)
            );
            if ev.args_truncated {
                s.push_str(" [argv truncated]");
            }
            if ev.args_captured == Some(false) {
                s.push_str(" [argv not captured]");
            }
            s
        }
        "exec_failed" => format!(
            "{} {}: {}",
            ev.filename.as_deref().unwrap_or("?"),
            quote_argv(&ev.argv),
            ev.error
                .clone()
                .or_else(|| ev.errno.map(|e| format!("errno {e}")))
                .unwrap_or_else(|| "?".into())
        ),
        "fork" if ev.thread => format!(
            "new thread {}",
            ev.child_pid.map_or("?".into(), |p| p.to_string())
        ),
        "fork" => format!(
            "child {}",
            ev.child_tgid.map_or("?".into(), |p| p.to_string())
        ),
        "exit" => {
            let mut s = match (ev.code, ev.signal) {
                (_, Some(sig)) => format!("killed by signal {sig}"),
                (Some(c), None) => format!("code {c}"),
                (None, None) => "?".into(),
            };
            if ev.core_dumped {
                s.push_str(" (core dumped)");
            }
            if !ev.process {
                s.push_str(" [thread]");
            }
            s
        }
        "loss" => {
            let mut s = format!(
                "cpu {}: {} record(s) missing",
                ev.loss_cpu.map_or("?".into(), |c| c.to_string()),
                ev.missing
            );
            if !ev.failures.is_empty() {
                let f: Vec<String> = ev
                    .failures
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                s.push_str(&format!(", reservation failures: {}", f.join(", ")));
            }
            if ev.unexplained > 0 {
                s.push_str(&format!(", {} UNEXPLAINED", ev.unexplained));
            }
            s
        }
        _ => generic(ev),
    }
}

/// `key=value …` of the fields a kind this version does not know carries.
fn generic(ev: &Event) -> String {
    ev.other
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "cpu" | "seq"))
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={}", quote_arg(s)),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
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
        let Some(id) = ev.exec_id.as_deref() else {
            return;
        };
        match ev.kind.as_str() {
            "exec" | "snapshot" => {
                let comm = ev
                    .comm
                    .clone()
                    .filter(|c| !c.is_empty())
                    .or_else(|| ev.binary.as_deref().map(basename).map(str::to_owned));
                if let Some(c) = comm {
                    self.insert(id, &c);
                }
            }
            "fork" => {
                if let (Some(child), Some(name)) =
                    (ev.child_exec_id.as_deref(), self.get(id).map(str::to_owned))
                {
                    self.insert(child, &name);
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
    let own = match ev.exec_id.as_deref() {
        Some(id) => names.label(id, Some(ev.tgid)),
        None if ev.kind == "loss" => String::new(),
        None => format!("?({})", ev.tgid),
    };
    if !own.is_empty() {
        parts.push(style.paint(Paint::Bold, &own).into_owned());
    }
    parts.join(" → ")
}

/// The compact one-line view: time, host, chain, kind, details.
pub fn line(ev: &Event, host: &str, names: &Names, clock: &Clock, style: Style) -> String {
    let time = clock.format(ev.time_ns);
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

    fn ev(json: &str) -> Event {
        Event::parse(json).unwrap()
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
                "args_truncated":true}"#
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
            "fd=3 op=open path='/etc/a b'"
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
            "binary":"/bin/true","argv":["true"]}"#);
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
