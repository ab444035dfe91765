//! Printing a lineage: one tree from the oldest ancestor down through the image asked about
//! to its descendants, each image followed by its newest events; or one JSON object.
//!
//! A forked child that exec'd at once is two images (the fork, still running the parent's
//! program, and the exec). The fork image is noise in a tree, so it is folded away when an
//! exec replaced it and it has no children of its own; `--json` keeps every image.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Value};

use super::model::{Lineage, Node, Origin, State};
use crate::clock::{local_boot_id, Clock};
use crate::event::{self, parse_exec_id, Event};
use crate::style::{Paint, Style};

/// How event times are shown: converted when the event is from this boot.
pub struct Times {
    local_tag: Option<String>,
}

impl Times {
    pub fn local() -> Times {
        Times {
            local_tag: local_boot_id().map(|b| {
                b.chars()
                    .filter(|c| c.is_ascii_hexdigit())
                    .take(8)
                    .collect()
            }),
        }
    }

    #[cfg(test)]
    pub fn none() -> Times {
        Times { local_tag: None }
    }

    fn format(&self, ev: &Event) -> String {
        let boot = parse_exec_id(&ev.exec_id).map(|p| p.boot);
        let clock = match (boot, self.local_tag.as_deref()) {
            (Some(b), Some(l)) if b == l => Clock::Local,
            _ => Clock::Estimated(None),
        };
        event::time_of(ev, &clock)
    }
}

/// Children of each image among the node and its descendants, oldest first, with replaced
/// childless fork images folded away.
fn children_of(l: &Lineage) -> HashMap<&str, Vec<&Node>> {
    let mut children: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in &l.descendants {
        if let Some(p) = n.parent_exec_id.as_deref() {
            children.entry(p).or_default().push(n);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| (a.start_ns(), &a.exec_id).cmp(&(b.start_ns(), &b.exec_id)));
    }
    let has_children: HashSet<&str> = children
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    for list in children.values_mut() {
        list.retain(|n| {
            !(n.origin != Origin::Exec
                && n.origin != Origin::Snapshot
                && n.state == State::Replaced
                && !has_children.contains(n.exec_id.as_str()))
        });
    }
    children
}

fn label(n: &Node, target: bool, style: Style) -> String {
    let name = format!(
        "{}({})",
        if n.comm.is_empty() { "?" } else { &n.comm },
        n.tgid
    );
    let mut s = style
        .paint(if target { Paint::Bold } else { Paint::Cyan }, &name)
        .into_owned();
    if !n.binary.is_empty() {
        s.push(' ');
        s.push_str(&n.binary);
    }
    if !n.argv.is_empty() {
        s.push(' ');
        s.push_str(&event::quote_argv(&n.argv));
    }
    let state = format!("[{}]", n.state.word());
    s.push(' ');
    s.push_str(&style.paint(
        match n.state {
            State::Running => Paint::Green,
            _ => Paint::Dim,
        },
        &state,
    ));
    if target {
        s.push_str(&format!("  ◀ {}", n.exec_id));
    }
    s
}

struct Printer<'a> {
    children: HashMap<&'a str, Vec<&'a Node>>,
    times: &'a Times,
    style: Style,
    events: usize,
    target: &'a str,
    out: Vec<String>,
}

impl<'a> Printer<'a> {
    /// One image: its line, its events, then its children.
    fn node(
        &mut self,
        n: &'a Node,
        next: Option<&'a Node>,
        prefix: &str,
        connector: &str,
        child_prefix: &str,
    ) {
        let kids: Vec<&Node> = match next {
            Some(k) => vec![k],
            None => self
                .children
                .get(n.exec_id.as_str())
                .cloned()
                .unwrap_or_default(),
        };
        self.out.push(format!(
            "{prefix}{connector}{}",
            label(n, n.exec_id == self.target, self.style)
        ));
        let bar = if kids.is_empty() { "   " } else { "│  " };
        let skip = n.events.len().saturating_sub(self.events);
        for ev in n.events.iter().skip(skip) {
            let text = format!(
                "{} {} {}",
                self.style.paint(Paint::Dim, &self.times.format(ev)),
                event::kind_word(ev, self.style),
                event::details(ev)
            );
            self.out
                .push(format!("{child_prefix}{bar} {}", text.trim_end()));
        }
        if next.is_some() {
            return;
        }
        let count = kids.len();
        for (i, k) in kids.into_iter().enumerate() {
            let last = i + 1 == count;
            let (c, p) = if last {
                ("└─ ", "   ")
            } else {
                ("├─ ", "│  ")
            };
            self.node(k, None, child_prefix, c, &format!("{child_prefix}{p}"));
        }
    }
}

/// The text tree, one line per image or event.
pub fn text(l: &Lineage, events: usize, times: &Times, style: Style) -> Vec<String> {
    let mut p = Printer {
        children: children_of(l),
        times,
        style,
        events,
        target: &l.node.exec_id,
        out: Vec::new(),
    };
    // Ancestors root first, each the only child of the one before; then the node's subtree.
    let mut path: Vec<&Node> = l.ancestors.iter().rev().collect();
    path.push(&l.node);
    let mut prefix = String::new();
    for (i, n) in path.iter().enumerate() {
        let next = path.get(i + 1).copied();
        let connector = if i == 0 { "" } else { "└─ " };
        let child_prefix = if i == 0 {
            String::new()
        } else {
            format!("{prefix}   ")
        };
        p.node(n, next, &prefix, connector, &child_prefix);
        prefix = child_prefix;
    }
    p.out
}

fn node_json(n: &Node, events: usize) -> Value {
    let mut v = serde_json::to_value(n).unwrap_or(Value::Null);
    let skip = n.events.len().saturating_sub(events);
    v["events"] = n
        .events
        .iter()
        .skip(skip)
        .map(|e| {
            serde_json::to_value(e)
                .unwrap_or_else(|e| json!({ "unprintable_event": e.to_string() }))
        })
        .collect();
    v
}

fn subtree_json(n: &Node, children: &HashMap<&str, Vec<&Node>>, events: usize) -> Value {
    let mut v = node_json(n, events);
    v["children"] = children
        .get(n.exec_id.as_str())
        .into_iter()
        .flatten()
        .map(|c| subtree_json(c, children, events))
        .collect();
    v
}

/// `{"ancestors": [root first], "node": {..., "children": [...]}}`; every image is kept.
pub fn json(l: &Lineage, events: usize) -> Value {
    let mut children: HashMap<&str, Vec<&Node>> = HashMap::new();
    for n in &l.descendants {
        if let Some(p) = n.parent_exec_id.as_deref() {
            children.entry(p).or_default().push(n);
        }
    }
    for list in children.values_mut() {
        list.sort_by(|a, b| (a.start_ns(), &a.exec_id).cmp(&(b.start_ns(), &b.exec_id)));
    }
    json!({
        "ancestors": l.ancestors.iter().rev().map(|n| node_json(n, events)).collect::<Vec<_>>(),
        "node": subtree_json(&l.node, &children, events),
    })
}

#[cfg(test)]
mod tests {
    use super::super::model::{tests::known_chain, Images};
    use super::*;

    fn lineage(id: &str) -> Lineage {
        let mut images = Images::new(8);
        for e in known_chain() {
            images.feed(e);
        }
        images.lineage(id).unwrap()
    }

    #[test]
    fn the_tree_nests_children_under_parents() {
        let lines = text(&lineage("b-20-3"), 0, &Times::none(), Style::PLAIN);
        assert_eq!(
            lines,
            [
                "bash(10) /bin/bash bash [no exit seen]",
                r#"└─ sh(20) /usr/bin/dash sh -c 'sh -c "/bin/echo x"' [exited]  ◀ b-20-3"#,
                "   └─ sh(30) /usr/bin/dash sh -c '/bin/echo x' [exited]",
                "      └─ echo(40) /bin/echo /bin/echo x [exited]",
            ],
            "{lines:#?}"
        );
    }

    #[test]
    fn events_follow_their_image() {
        let lines = text(&lineage("b-30-5"), 8, &Times::none(), Style::PLAIN);
        let joined = lines.join("\n");
        assert!(!joined.contains('\x1b'));
        let i = lines.iter().position(|l| l.contains("sh(30)")).unwrap();
        assert!(lines[i + 1].contains("exec     /usr/bin/dash"), "{joined}");
        assert!(lines[i + 1].starts_with("      │   boot+"), "{joined}");
        assert!(lines[i + 2].contains("fork     child 40"), "{joined}");
        assert!(lines[i + 3].contains("exit     code 0"), "{joined}");
        assert!(lines[i + 4].contains("└─ echo(40)"), "{joined}");
    }

    #[test]
    fn json_keeps_every_image_nested() {
        let v = json(&lineage("b-20-3"), 1);
        assert_eq!(v["ancestors"][0]["exec_id"], "b-10-1");
        let node = &v["node"];
        assert_eq!(node["exec_id"], "b-20-3");
        assert_eq!(node["events"].as_array().unwrap().len(), 1);
        let kids: Vec<&str> = node["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["exec_id"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["b-30-4", "b-30-5"], "the fork image is kept in JSON");
        assert_eq!(node["children"][1]["children"][1]["exec_id"], "b-40-7");
        assert_eq!(node["children"][0]["state"], "replaced");
    }
}
