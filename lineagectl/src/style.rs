//! ANSI colour, only for people: on a terminal, and never when `NO_COLOR` is set
//! (<https://no-color.org>). Pipes and files get plain text.

use std::borrow::Cow;
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paint {
    Dim,
    Bold,
    Red,
    Green,
    Yellow,
    Blue,
    Magenta,
    Cyan,
}

impl Paint {
    fn code(self) -> &'static str {
        match self {
            Paint::Dim => "2",
            Paint::Bold => "1",
            Paint::Red => "31",
            Paint::Green => "32",
            Paint::Yellow => "33",
            Paint::Blue => "34",
            Paint::Magenta => "35",
            Paint::Cyan => "36",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// Colour when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn for_stdout() -> Style {
        Style::decide(
            std::env::var_os("NO_COLOR").as_deref(),
            std::io::stdout().is_terminal(),
        )
    }

    /// The rule itself, testable without a terminal.
    pub fn decide(no_color: Option<&std::ffi::OsStr>, is_terminal: bool) -> Style {
        Style {
            colour: is_terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }

    #[cfg(test)]
    pub const PLAIN: Style = Style { colour: false };

    pub fn paint<'a>(&self, p: Paint, text: &'a str) -> Cow<'a, str> {
        if self.colour && !text.is_empty() {
            Cow::Owned(format!("\x1b[{}m{text}\x1b[0m", p.code()))
        } else {
            Cow::Borrowed(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Style::decide(None, true).colour);
        assert!(!Style::decide(None, false).colour, "not a tty: no colour");
        assert!(!Style::decide(Some(OsStr::new("1")), true).colour);
        assert!(Style::decide(Some(OsStr::new("")), true).colour);
        assert_eq!(Style::PLAIN.paint(Paint::Red, "x"), "x");
        assert_eq!(
            Style { colour: true }.paint(Paint::Red, "x"),
            "\x1b[31mx\x1b[0m"
        );
    }

    #[test]
    fn under_cargo_test_stdout_is_captured_so_no_colour() {
        // `cargo test` captures stdout through a pipe: the real decision must say no.
        if !std::io::stdout().is_terminal() {
            assert!(!Style::for_stdout().colour);
        }
    }
}
