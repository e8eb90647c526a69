//! Plain-text rendering of a [`Comparison`] (for `kindred diff` and reports).

use std::fmt::Write;

use super::diff::{Comparison, Line, Op, ServiceDiff, word_diff};

/// Lines of unchanged context shown around a change.
pub const CONTEXT: usize = 3;

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Render for a terminal or a file. `color` adds ANSI colours (green added, red removed, bold
/// for the words that changed inside a rule).
pub fn text(c: &Comparison, color: bool) -> String {
    let st = Style { color };
    let mut out = String::new();
    let changed = c.services.iter().filter(|s| !s.equal).count();
    for s in &c.services {
        service(&mut out, s, &st);
    }
    let _ = writeln!(
        out,
        "{} service{} compared ({}): {} changed, {} equal",
        c.services.len(),
        if c.services.len() == 1 { "" } else { "s" },
        if c.normalized { "normalized" } else { "raw" },
        changed,
        c.services.len() - changed
    );
    out
}

fn service(out: &mut String, s: &ServiceDiff, st: &Style) {
    if s.equal {
        let n: usize = s.chains.iter().map(|c| c.lines.len()).sum();
        let _ = writeln!(
            out,
            "{}",
            st.paint("1", &format!("=== {} (equal, {n} rules)", s.service))
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

fn chain_lines(out: &mut String, lines: &[Line], st: &Style) {
    // Which lines to show: changes and CONTEXT equal lines around them.
    let near_change = |i: usize| {
        let lo = i.saturating_sub(CONTEXT);
        let hi = (i + CONTEXT + 1).min(lines.len());
        lines[lo..hi].iter().any(|l| l.op != Op::Equal)
    };
    let mut skipped = 0;
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        if l.op == Op::Equal {
            if near_change(i) {
                if skipped > 0 {
                    let _ = writeln!(out, "{}", st.paint("2", &format!("  ... {skipped} equal")));
                    skipped = 0;
                }
                let _ = writeln!(out, "  {}", l.rule());
            } else {
                skipped += 1;
            }
            i += 1;
            continue;
        }
        if skipped > 0 {
            let _ = writeln!(out, "{}", st.paint("2", &format!("  ... {skipped} equal")));
            skipped = 0;
        }
        // A run of removed lines followed by added ones: pair them for word-level emphasis.
        let start = i;
        while i < lines.len() && lines[i].op == Op::Removed {
            i += 1;
        }
        let mid = i;
        while i < lines.len() && lines[i].op == Op::Added {
            i += 1;
        }
        let removed = &lines[start..mid];
        let added = &lines[mid..i];
        for (k, r) in removed.iter().enumerate() {
            let partner = added.get(k).map(|a| a.rule());
            changed_line(out, '-', r, partner, st);
        }
        for (k, a) in added.iter().enumerate() {
            let partner = removed.get(k).map(|r| r.rule());
            changed_line(out, '+', a, partner, st);
        }
    }
    if skipped > 0 {
        let _ = writeln!(out, "{}", st.paint("2", &format!("  ... {skipped} equal")));
    }
}

fn changed_line(out: &mut String, sign: char, l: &Line, partner: Option<&str>, st: &Style) {
    let code = if sign == '+' { "32" } else { "31" };
    let strong = if sign == '+' { "1;32;4" } else { "1;31;4" };
    let mut text = String::new();
    match partner {
        Some(p) if st.color => {
            let (o, n) = if sign == '+' {
                word_diff(p, l.rule())
            } else {
                word_diff(l.rule(), p)
            };
            let segs = if sign == '+' { n } else { o };
            for s in segs {
                text.push_str(&st.paint(if s.emphasized { strong } else { code }, &s.text));
            }
        }
        _ => text = st.paint(code, l.rule()),
    }
    let _ = writeln!(out, "{}{text}", st.paint(code, &format!("{sign} ")));
    let side = if sign == '+' { &l.pr } else { &l.base };
    if let Some(r) = side
        && r.raw != r.rule
    {
        let who = if sign == '+' { "PR" } else { "base" };
        let _ = writeln!(
            out,
            "{}",
            st.paint("2", &format!("    {who} line {}: {}", r.line, r.raw))
        );
    }
}
