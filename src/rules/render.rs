//! Plain-text rendering of a [`Comparison`] (for `kindred diff` and reports).

use std::borrow::Cow;
use std::fmt::Write;

use super::diff::{Changed, Comparison, Hunk, Line, Op, ServiceDiff, hunks};

/// Lines of unchanged context shown around a change.
pub const CONTEXT: usize = 3;

struct Style {
    color: bool,
}

impl Style {
    /// `s` (text from a dump: its control characters made visible), coloured when asked.
    fn paint(&self, code: &str, s: &str) -> String {
        let s = visible(s);
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.into_owned()
        }
    }
}

/// Text from a dump, a cluster or a recording as it may be shown on a terminal: every control
/// character (ESC, BEL, CR, ...) written as a visible escape such as `\x1b`. Rule comments are
/// anyone's text (whoever names a Service writes them).
pub fn visible(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(o, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(o, "\\u{{{:x}}}", c as u32);
            }
            c => o.push(c),
        }
    }
    Cow::Owned(o)
}

/// Every line of `text` through [`visible`] (for reports built from untrusted text).
pub fn visible_lines(text: &str) -> String {
    let mut o = String::with_capacity(text.len());
    for l in text.split_inclusive('\n') {
        let (body, nl) = match l.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (l, ""),
        };
        o.push_str(&visible(body));
        o.push_str(nl);
    }
    o
}

/// Render for a terminal or a file. `color` adds ANSI colours (green added, red removed, bold
/// for the words that changed inside a rule).
pub fn text(c: &Comparison, color: bool) -> String {
    let mut out = String::new();
    write_text(&mut out, c, color);
    out
}

/// [`text`], written as it is rendered (to standard output, say): the report is never held
/// whole in memory.
pub fn write_text(out: &mut impl Write, c: &Comparison, color: bool) {
    let st = Style { color };
    let changed = c.services.iter().filter(|s| !s.equal).count();
    for s in c.groups() {
        service(out, s, &st);
    }
    let shared = match &c.shared {
        Some(s) if s.equal => "; kube-proxy's shared chains equal",
        Some(_) => "; kube-proxy's shared chains changed",
        None => "",
    };
    if let Some(note) = c.tables_note() {
        let _ = writeln!(out, "{}", st.paint("33", &note));
    }
    let _ = writeln!(
        out,
        "{} service{} compared ({}): {} changed, {} equal{shared}",
        c.services.len(),
        if c.services.len() == 1 { "" } else { "s" },
        if c.normalized { "normalized" } else { "raw" },
        changed,
        c.services.len() - changed
    );
    for n in &c.notes {
        let _ = writeln!(out, "note: {}", visible(n));
    }
    if let Some(m) = &c.modes {
        let _ = writeln!(out, "note: {m}");
    }
}

fn service(out: &mut impl Write, s: &ServiceDiff, st: &Style) {
    if s.equal {
        let _ = writeln!(
            out,
            "{}",
            st.paint(
                "1",
                &format!("=== {} (equal, {} rules)", s.service, s.rules)
            )
        );
        return;
    }
    let side = match (s.in_base, s.in_pr) {
        (true, false) => " (only in base)",
        (false, true) => " (only in PR)",
        _ => "",
    };
    let _ = writeln!(
        out,
        "{}",
        st.paint(
            "1",
            &format!(
                "=== {} (changed, +{} -{}{side})",
                s.service,
                s.added.len(),
                s.removed.len()
            )
        )
    );
    for ch in &s.chains {
        let names = ch.names();
        if ch.equal {
            let _ = writeln!(
                out,
                "{}",
                st.paint(
                    "2",
                    &format!(
                        "  {} {} ({names}): {} rules equal",
                        ch.table,
                        ch.chain,
                        ch.lines.len()
                    )
                )
            );
            continue;
        }
        let _ = writeln!(
            out,
            "{}",
            st.paint("36", &format!("--- {} {} ({names})", ch.table, ch.chain))
        );
        chain_lines(out, &ch.lines, st);
    }
}

fn chain_lines(out: &mut impl Write, lines: &[Line], st: &Style) {
    // Changes, and CONTEXT equal lines around them.
    let near_change = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(lines.len());
        lines[lo..hi].iter().any(|l| l.op != Op::Equal)
    };
    let mut skipped = 0;
    let mut i = 0;
    let flush = |out: &mut dyn Write, skipped: &mut usize| {
        if *skipped > 0 {
            let _ = writeln!(out, "{}", st.paint("2", &format!("  ... {skipped} equal")));
            *skipped = 0;
        }
    };
    for h in hunks(lines) {
        match h {
            Hunk::Equal(l) => {
                if near_change(i) {
                    flush(out, &mut skipped);
                    let _ = writeln!(out, "  {}", visible(l.rule()));
                } else {
                    skipped += 1;
                }
                i += 1;
            }
            Hunk::Change { removed, added } => {
                flush(out, &mut skipped);
                for c in Changed::all(removed, added) {
                    changed_line(out, &c, st);
                }
                i += removed.len() + added.len();
            }
        }
    }
    flush(out, &mut skipped);
}

fn changed_line(out: &mut impl Write, c: &Changed<'_>, st: &Style) {
    let added = c.line.op == Op::Added;
    let (sign, code, strong, who) = if added {
        ('+', "32", "1;32;4", "PR")
    } else {
        ('-', "31", "1;31;4", "base")
    };
    if !st.color {
        // Written as it is, no copies: a rule can be long.
        let _ = writeln!(out, "{sign} {}", visible(c.line.rule()));
        if let Some(r) = c.raw() {
            let _ = writeln!(out, "    {who} line {}: {}", r.line, visible(&r.raw));
        }
        return;
    }
    let text: String = match c.segments() {
        Some(segs) => segs
            .iter()
            .map(|s| st.paint(if s.emphasized { strong } else { code }, &s.text))
            .collect(),
        None => st.paint(code, c.line.rule()),
    };
    let _ = writeln!(out, "{}{text}", st.paint(code, &format!("{sign} ")));
    if let Some(r) = c.raw() {
        let _ = writeln!(
            out,
            "{}",
            st.paint("2", &format!("    {who} line {}: {}", r.line, r.raw))
        );
    }
}
