//! `kindred bisect`'s reports: text on stdout, Markdown for pasting into an issue, and JSON
//! (schema `kindred.bisect/v1`, assets/bisect-report.schema.json). Every string from git or a
//! cluster (subjects, why, the rules diff) is made visible; Markdown also escapes what it would
//! read as markup.

use std::fmt::Write as _;

use serde::Serialize;

use crate::app::bisect::{BisectView, path_word, role_word, short, verdict_words};
use crate::backend::bisect::{BisectEnd, BisectRequest, CommitInfo, Step, StepPath, StepVerdict};
use crate::model::seconds;
use crate::rules::render::{visible, visible_lines};

pub const SCHEMA: &str = "kindred.bisect/v1";

/// Where a PR number links to.
pub const PR_URL: &str = "https://github.com/kubernetes/kubernetes/pull/";

/// The range as the backend resolved it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RangeReport {
    pub good: CommitInfo,
    pub bad: CommitInfo,
    /// Candidates between good and bad (bad included).
    pub commits: usize,
    pub path: StepPath,
    /// Why that path: the first file outside kube-proxy's code, or "forced".
    pub path_why: String,
    /// What judged each step.
    pub judge: String,
    pub expected_steps: u32,
}

/// A finished bisect, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BisectReport {
    pub schema: &'static str,
    /// What was asked (refs as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<BisectRequest>,
    /// Absent when the bisect stopped before the range was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeReport>,
    pub steps: Vec<Step>,
    pub end: BisectEnd,
    /// The exit status: 0 found, 1 not found, 2 stopped.
    pub exit: i32,
}

impl BisectReport {
    /// The report of a bisect that ended; `None` while it has no end.
    pub fn of(v: &BisectView) -> Option<BisectReport> {
        let end = v.end.clone()?;
        let range = v.started.as_ref().map(|s| RangeReport {
            good: s.good.clone(),
            bad: s.bad.clone(),
            commits: s.commits,
            path: s.path,
            path_why: s.why.clone(),
            judge: s.judge.clone(),
            expected_steps: s.expected_steps,
        });
        Some(BisectReport {
            schema: SCHEMA,
            request: v.request.clone(),
            range,
            steps: v.steps.clone(),
            exit: super::bisect::exit_code(&end),
            end,
        })
    }

    pub fn json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a bisect report serializes");
        s.push('\n');
        s
    }

    /// The range's line: "v1.33.0 (0123456789ab) .. HEAD (89abcdef0123): 21 commits".
    fn range_words(&self, code: fn(&str) -> String) -> String {
        let asked = |r: Option<&str>, c: Option<&CommitInfo>| match (r, c) {
            (Some(r), Some(c)) if r != c.sha => format!("{} ({})", code(r), code(short(&c.sha))),
            (_, Some(c)) => code(short(&c.sha)),
            (Some(r), None) => code(r),
            (None, None) => "?".into(),
        };
        let req = self.request.as_ref();
        let r = self.range.as_ref();
        let mut s = format!(
            "{}..{}",
            asked(req.map(|q| q.good.as_str()), r.map(|r| &r.good)),
            asked(req.map(|q| q.bad.as_str()), r.map(|r| &r.bad))
        );
        if let Some(r) = r {
            let _ = write!(
                s,
                ": {} commit{}, at most {} steps",
                r.commits,
                if r.commits == 1 { "" } else { "s" },
                r.expected_steps
            );
        }
        s
    }

    /// The text report for a terminal.
    pub fn text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "bisect {}", self.range_words(|s| s.to_string()));
        if let Some(r) = &self.range {
            let _ = writeln!(o, "path: {} ({})", path_word(r.path), r.path_why);
            let _ = writeln!(o, "judged by: {}", r.judge);
        }
        o.push('\n');
        let _ = writeln!(
            o,
            "{:>3}  {:<12}  {:<8}  {:<8}  {:<18}  {:>6}  {:>7}  {:<6}",
            "#", "commit", "PR", "role", "verdict", "rounds", "time", "cached"
        );
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(
                o,
                "{:>3}  {:<12}  {:<8}  {:<8}  {:<18}  {:>6}  {:>7}  {:<6}",
                i + 1,
                short(&s.commit.sha),
                s.commit.pr.map_or("-".into(), |n| format!("#{n}")),
                role_word(s.role),
                verdict_words(s),
                format!("{}/{}", s.good_rounds, s.rounds),
                took(s),
                if s.cached { "yes" } else { "" }
            );
            if let Some(w) = &s.why {
                let _ = writeln!(o, "{:>5}{w}", "");
            }
        }
        o.push('\n');
        self.end_text(&mut o);
        visible_lines(&o)
    }

    fn end_text(&self, o: &mut String) {
        let one = |c: &CommitInfo| {
            let pr = c.pr.map_or(String::new(), |n| format!(" #{n}"));
            format!("{}{pr} {}", short(&c.sha), c.subject)
        };
        match &self.end {
            BisectEnd::Found {
                first_bad,
                last_good,
                rules_diff,
            } => {
                let _ = writeln!(o, "FOUND: first bad commit {}", one(first_bad));
                let _ = writeln!(o, "       last good commit {}", one(last_good));
                if rules_diff.trim().is_empty() {
                    let _ = writeln!(o, "rules diff (PR side): none (the same canonical rules)");
                } else {
                    let _ = writeln!(o, "rules diff (PR side, last good → first bad):");
                    let d = untabbed(rules_diff);
                    o.push_str(&d);
                    if !d.ends_with('\n') {
                        o.push('\n');
                    }
                }
            }
            BisectEnd::NotFound {
                candidates,
                last_good,
            } => {
                let _ = writeln!(
                    o,
                    "NOT FOUND: skipped commits hide the first bad; it is one of {}:",
                    candidates.len()
                );
                for c in candidates {
                    let _ = writeln!(o, "  {}", one(c));
                }
                let _ = writeln!(o, "last good commit {}", one(last_good));
            }
            BisectEnd::Stopped { why } => {
                let _ = writeln!(o, "STOPPED: {why}");
            }
        }
    }

    /// Markdown for pasting into an issue: the range, a table of the steps, the first bad
    /// commit with its PR, and the rules diff in a `diff` block.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        let title = match &self.end {
            BisectEnd::Found { first_bad, .. } => {
                format!("🔎 first bad commit {}", md_commit(first_bad))
            }
            BisectEnd::NotFound { candidates, .. } => {
                format!("⚠️ not found: one of {} skipped commits", candidates.len())
            }
            BisectEnd::Stopped { .. } => "⛔ stopped".to_string(),
        };
        let _ = writeln!(o, "### kindred bisect: {title}\n");
        let _ = writeln!(o, "Range {}.", self.range_words(md_code));
        if let Some(r) = &self.range {
            let _ = writeln!(
                o,
                "Each step took the **{}** path ({}); judged by {}.",
                path_word(r.path),
                md_text(&r.path_why),
                md_text(&r.judge)
            );
        }
        o.push('\n');
        self.steps_md(&mut o);
        self.end_md(&mut o);
        visible_lines(&o)
    }

    fn steps_md(&self, o: &mut String) {
        if self.steps.is_empty() {
            o.push_str("No step ran.\n\n");
            return;
        }
        o.push_str("| # | commit | PR | role | verdict | rounds | time | cached | why |\n");
        o.push_str("| ---: | --- | --- | --- | --- | ---: | ---: | --- | --- |\n");
        for (i, s) in self.steps.iter().enumerate() {
            let mark = match s.verdict {
                StepVerdict::Good => "✅",
                StepVerdict::Bad => "❌",
                StepVerdict::Skip => "⏭️",
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {mark} {} | {}/{} | {} | {} | {} |",
                i + 1,
                md_code(short(&s.commit.sha)),
                s.commit.pr.map_or("-".into(), pr_link),
                role_word(s.role),
                verdict_words(s),
                s.good_rounds,
                s.rounds,
                took(s),
                if s.cached { "yes" } else { "" },
                s.why.as_deref().map_or(String::new(), md_text)
            );
        }
        o.push('\n');
    }

    fn end_md(&self, o: &mut String) {
        let one = |c: &CommitInfo| format!("{} {}", md_commit(c), md_text(&c.subject));
        match &self.end {
            BisectEnd::Found {
                first_bad,
                last_good,
                rules_diff,
            } => {
                let _ = writeln!(o, "**First bad commit:** {}  ", one(first_bad));
                let _ = writeln!(o, "**Last good commit:** {}\n", one(last_good));
                if rules_diff.trim().is_empty() {
                    o.push_str("The PR side's canonical rules are the same at both commits.\n");
                } else {
                    o.push_str("PR side's rules, last good → first bad (canonical form):\n\n");
                    fenced(o, "diff", &untabbed(rules_diff));
                }
            }
            BisectEnd::NotFound {
                candidates,
                last_good,
            } => {
                o.push_str("Skipped commits hide the first bad one; it is one of:\n\n");
                for c in candidates {
                    let _ = writeln!(o, "- {}", one(c));
                }
                let _ = writeln!(o, "\n**Last good commit:** {}", one(last_good));
            }
            BisectEnd::Stopped { why } => {
                let _ = writeln!(o, "**Stopped:** {}", md_text(why));
            }
        }
    }
}

/// A step's time: "-" when it came from the cache.
fn took(s: &Step) -> String {
    if s.cached {
        "-".into()
    } else {
        seconds(std::time::Duration::from_millis(s.millis))
    }
}

/// A rules diff as shown: nft's tab indents as spaces (a tab would be shown as `\x09`).
fn untabbed(d: &str) -> String {
    d.replace('\t', "    ")
}

/// `[#N](https://github.com/kubernetes/kubernetes/pull/N)`.
pub fn pr_link(n: u32) -> String {
    format!("[#{n}]({PR_URL}{n})")
}

/// A commit: its short SHA in code, and its PR linked when known.
fn md_commit(c: &CommitInfo) -> String {
    let sha = md_code(short(&c.sha));
    match c.pr {
        Some(n) => format!("{sha} ({})", pr_link(n)),
        None => sha,
    }
}

/// Untrusted text inline in Markdown (a table cell, a sentence): what Markdown or HTML would
/// read as markup is escaped, and line breaks become spaces.
pub fn md_text(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in visible(s).chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' => {
                o.push('\\');
                o.push(c);
            }
            c => o.push(c),
        }
    }
    o
}

/// Untrusted text as inline code: fenced by more backticks than it holds in a row.
pub fn md_code(s: &str) -> String {
    let s = visible(s).replace('|', "¦");
    let run = longest_backtick_run(&s);
    let fence = "`".repeat(run + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        best = best.max(run);
    }
    best
}

/// A fenced block whose fence no line of `text` can close.
fn fenced(o: &mut String, lang: &str, text: &str) {
    let fence = "`".repeat((longest_backtick_run(text) + 1).max(3));
    let _ = writeln!(o, "{fence}{lang}");
    o.push_str(text);
    if !text.ends_with('\n') {
        o.push('\n');
    }
    let _ = writeln!(o, "{fence}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_stays_text_in_markdown() {
        assert_eq!(
            md_text("a|b <img src=x> [x](y) `c` *d* #1"),
            "a\\|b &lt;img src=x&gt; \\[x\\](y) \\`c\\` \\*d\\* \\#1"
        );
        assert_eq!(md_code("ab"), "`ab`");
        assert_eq!(md_code("a`b"), "``a`b``");
        assert_eq!(md_code("a|b"), "`a¦b`");
        assert_eq!(md_text("\x1b[2J"), "\\\\x1b\\[2J");
        let mut o = String::new();
        fenced(&mut o, "diff", "+a\n````\n-b");
        assert_eq!(o, "`````diff\n+a\n````\n-b\n`````\n");
    }
}
