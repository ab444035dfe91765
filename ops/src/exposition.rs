//! Building one page of the Prometheus text exposition format (version 0.0.4).
//!
//! The builder refuses, by panicking, what would make a page break the conventions a scraper
//! relies on: a family name used twice (duplicate series), a counter whose name does not end
//! in `_total`, or a name with characters outside `[a-zA-Z_:][a-zA-Z0-9_:]*`. These are
//! programming errors in the caller, caught by every unit test that renders a page.

use std::{collections::BTreeSet, fmt::Write as _};

/// Label pairs of one sample, e.g. `&[("program", "sys_exit_file"), ("hook", "...")]`.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// One page under construction.
#[derive(Default)]
pub struct Page {
    text: String,
    families: BTreeSet<String>,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_labels(labels: Labels, extra: Option<(&str, &str)>, out: &mut String) {
    if labels.is_empty() && extra.is_none() {
        return;
    }
    out.push('{');
    for (i, (k, v)) in labels.iter().copied().chain(extra).enumerate() {
        assert!(valid_name(k), "metric label name {k:?} is not valid");
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(v, out);
        out.push('"');
    }
    out.push('}');
}

/// A float the way the format spells it (`+Inf`, `NaN`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        assert!(valid_name(name), "metric name {name:?} is not valid");
        assert!(
            self.families.insert(name.to_owned()),
            "metric family {name} rendered twice on one page"
        );
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: Labels, extra: Option<(&str, &str)>, value: f64) {
        self.text.push_str(name);
        write_labels(labels, extra, &mut self.text);
        self.text.push(' ');
        self.text.push_str(&number(value));
        self.text.push('\n');
    }

    /// A counter family: monotonic since the process started. Every label set the caller
    /// knows of should be passed, at zero if nothing happened yet, so rates work from the
    /// first scrape.
    pub fn counter(&mut self, name: &str, help: &str, samples: &[(Labels, u64)]) {
        assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family(name, "counter", help);
        for (labels, v) in samples {
            self.sample(name, labels, None, *v as f64);
        }
    }

    /// A gauge family.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(Labels, f64)]) {
        assert!(
            !name.ends_with("_total"),
            "gauge {name} must not end in _total (reserved for counters)"
        );
        self.family(name, "gauge", help);
        for (labels, v) in samples {
            self.sample(name, labels, None, *v);
        }
    }

    /// A gauge with one unlabelled sample.
    pub fn gauge1(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, &[(&[], value)]);
    }

    /// A counter with one unlabelled sample.
    pub fn counter1(&mut self, name: &str, help: &str, value: u64) {
        self.counter(name, help, &[(&[], value)]);
    }

    /// A counter whose value is not an integer (e.g. CPU seconds).
    pub fn counter_f64(&mut self, name: &str, help: &str, value: f64) {
        assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.family(name, "counter", help);
        self.sample(name, &[], None, value);
    }

    /// A histogram family with one unlabelled histogram.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0;
        for (bound, n) in h.bounds.iter().zip(h.counts.iter()) {
            cumulative += n;
            self.sample(
                &bucket,
                &[],
                Some(("le", &number(*bound))),
                cumulative as f64,
            );
        }
        self.sample(&bucket, &[], Some(("le", "+Inf")), h.count as f64);
        self.sample(&format!("{name}_sum"), &[], None, h.sum);
        self.sample(&format!("{name}_count"), &[], None, h.count as f64);
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Most buckets a [`Histogram`] can have (kept fixed so the type is `Copy` and can travel in
/// a `watch` channel without allocating).
pub const MAX_BUCKETS: usize = 16;

/// A cumulative histogram of observations (e.g. seal latency in seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations in (previous bound, this bound]; not cumulative.
    counts: [u64; MAX_BUCKETS],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// `bounds` ascending, at most [`MAX_BUCKETS`]; `+Inf` is implied.
    pub const fn new(bounds: &'static [f64]) -> Self {
        assert!(bounds.len() <= MAX_BUCKETS);
        Histogram {
            bounds,
            counts: [0; MAX_BUCKETS],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_families_labels_and_histograms() {
        let mut p = Page::default();
        p.counter(
            "x_events_total",
            "Events.",
            &[(&[("kind", "exec")], 3), (&[("kind", "a\"b\\c\nd")], 0)],
        );
        p.gauge1("x_up", "Up.", 1.0);
        let mut h = Histogram::new(&[0.01, 0.1]);
        h.observe(0.005);
        h.observe(0.05);
        h.observe(5.0);
        p.histogram("x_seal_seconds", "Seal.", &h);
        let text = p.finish();
        assert!(text.contains("# TYPE x_events_total counter\n"));
        assert!(text.contains("x_events_total{kind=\"exec\"} 3\n"));
        assert!(text.contains("x_events_total{kind=\"a\\\"b\\\\c\\nd\"} 0\n"));
        assert!(text.contains("x_up 1\n"));
        assert!(text.contains("x_seal_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("x_seal_seconds_bucket{le=\"0.1\"} 2\n"));
        assert!(text.contains("x_seal_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("x_seal_seconds_count 3\n"));
        assert!(text.contains("x_seal_seconds_sum 5.055\n"));
    }

    #[test]
    #[should_panic(expected = "rendered twice")]
    fn a_family_twice_is_refused() {
        let mut p = Page::default();
        p.gauge1("x_up", "Up.", 1.0);
        p.gauge1("x_up", "Up.", 1.0);
    }

    #[test]
    #[should_panic(expected = "must end in _total")]
    fn a_counter_without_total_is_refused() {
        Page::default().counter1("x_events", "Events.", 1);
    }
}
