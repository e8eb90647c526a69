//! The one keymap: it decides what a key does, and feeds the footer hints and the help overlay.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The PR side's node image, and its cluster when the image changed (the usual case).
    Rebuild,
    RebuildBoth,
    /// kube-proxy from the PR side's source into its running cluster.
    SwapProxy,
    SwapProxyBoth,
    /// `f`: find the commit where the PR side's verdict flips (a prompt asks GOOD..BAD).
    Bisect,
    Create,
    Deploy,
    Retest,
    Refresh,
    Watch,
    Delete,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Enter: the selected probe's two paths, in the Diff pane's place.
    Open,
    /// Esc: close what is open over the usual view (help, zoom, a probe's paths).
    Back,
    Zoom,
    Filter,
    Edit,
    /// `R`: how many tries each probe runs (a prompt asks N).
    Repeat,
    ToggleRaw,
    ToggleWrap,
    StepBack,
    StepForward,
    ToggleOrigin,
    ToggleLayout,
    NextNode,
    Mouse,
    /// `m`: kube-proxy's own numbers per node, side by side (read again when opened).
    Metrics,
    Help,
    Quit,
}

pub struct Binding {
    /// How the key is written in hints and help.
    pub keys: &'static str,
    pub action: Action,
    /// Short label for the footer; `None` keeps it out of the footer.
    pub hint: Option<&'static str>,
    pub help: &'static str,
}

pub const BINDINGS: &[Binding] = &[
    Binding {
        keys: "b",
        action: Action::Rebuild,
        hint: Some("rebuild PR"),
        help: "rebuild PR image; recreate its cluster if changed",
    },
    Binding {
        keys: "B",
        action: Action::RebuildBoth,
        hint: None,
        help: "rebuild both images; recreate changed clusters",
    },
    Binding {
        keys: "p",
        action: Action::SwapProxy,
        hint: Some("swap proxy"),
        help: "swap in kube-proxy built from the PR source",
    },
    Binding {
        keys: "P",
        action: Action::SwapProxyBoth,
        hint: None,
        help: "swap in kube-proxy on both clusters",
    },
    Binding {
        keys: "f",
        action: Action::Bisect,
        hint: Some("bisect"),
        help: "bisect GOOD..BAD: the commit where PR turns bad",
    },
    Binding {
        keys: "c",
        action: Action::Create,
        hint: Some("clusters"),
        help: "create or recreate clusters",
    },
    Binding {
        keys: "d",
        action: Action::Deploy,
        hint: Some("deploy"),
        help: "deploy the test workloads",
    },
    Binding {
        keys: "t",
        action: Action::Retest,
        hint: Some("test"),
        help: "run the probes again (restarts running probes)",
    },
    Binding {
        keys: "r",
        action: Action::Refresh,
        hint: Some("rules"),
        help: "refresh the rules of every node",
    },
    Binding {
        keys: "w",
        action: Action::Watch,
        hint: Some("watch"),
        help: "watch: rules as they change, probes repeat",
    },
    Binding {
        keys: "[",
        action: Action::StepBack,
        hint: Some("changes"),
        help: "diff: step back through rule changes",
    },
    Binding {
        keys: "]",
        action: Action::StepForward,
        hint: None,
        help: "diff: step forward (past the last: live)",
    },
    Binding {
        keys: "x",
        action: Action::Delete,
        hint: None,
        help: "delete clusters kindred created (asks first)",
    },
    Binding {
        keys: "Tab",
        action: Action::FocusNext,
        hint: Some("focus"),
        help: "focus the next pane",
    },
    Binding {
        keys: "S-Tab",
        action: Action::FocusPrev,
        hint: None,
        help: "focus the previous pane",
    },
    Binding {
        keys: "↑/k",
        action: Action::Up,
        hint: None,
        help: "scroll up; probes: select the row above",
    },
    Binding {
        keys: "↓/j",
        action: Action::Down,
        hint: None,
        help: "scroll down; probes: select the row below",
    },
    Binding {
        keys: "←/h",
        action: Action::Left,
        hint: None,
        help: "scroll left; probes: select on the base side",
    },
    Binding {
        keys: "→/l",
        action: Action::Right,
        hint: None,
        help: "scroll right; probes: select on the PR side",
    },
    Binding {
        keys: "PgUp/PgDn",
        action: Action::PageUp,
        hint: None,
        help: "scroll a page",
    },
    Binding {
        keys: "g/G",
        action: Action::Top,
        hint: None,
        help: "top / bottom",
    },
    Binding {
        keys: "Enter",
        action: Action::Open,
        hint: None,
        help: "probes: the row's paths through both sides' rules; PREDICT marks: ! observed disagrees, ✎ expected does",
    },
    Binding {
        keys: "Esc",
        action: Action::Back,
        hint: None,
        help: "close help, zoom or a probe's paths",
    },
    Binding {
        keys: "z",
        action: Action::Zoom,
        hint: Some("zoom"),
        help: "zoom the focused pane",
    },
    Binding {
        keys: "/",
        action: Action::Filter,
        hint: Some("filter"),
        help: "filter the focused pane (pods, probes, diff)",
    },
    Binding {
        keys: "e",
        action: Action::Edit,
        hint: Some("target"),
        help: "edit the probe target",
    },
    Binding {
        keys: "R",
        action: Action::Repeat,
        hint: None,
        help: "tries per probe: asks N",
    },
    Binding {
        keys: "n",
        action: Action::ToggleRaw,
        hint: None,
        help: "diff: normalized / raw rules",
    },
    Binding {
        keys: "W",
        action: Action::ToggleWrap,
        hint: None,
        help: "diff: wrap long rules / scroll sideways",
    },
    Binding {
        keys: "o",
        action: Action::ToggleOrigin,
        hint: None,
        help: "diff: show / hide each rule's dump line",
    },
    Binding {
        keys: "s",
        action: Action::ToggleLayout,
        hint: None,
        help: "diff: unified / side by side",
    },
    Binding {
        keys: "N",
        action: Action::NextNode,
        hint: None,
        help: "diff: next node",
    },
    Binding {
        keys: "m",
        action: Action::Metrics,
        hint: None,
        help: "kube-proxy's metrics per node: sync p50/p99, last sync, failures, rules",
    },
    Binding {
        keys: "M",
        action: Action::Mouse,
        hint: None,
        help: "mouse capture on/off (off: select text)",
    },
    Binding {
        keys: "?",
        action: Action::Help,
        hint: Some("help"),
        help: "this help",
    },
    Binding {
        keys: "q",
        action: Action::Quit,
        hint: Some("quit"),
        help: "quit (asks when work is running)",
    },
];

/// The action bound to a key press, if any.
pub fn action_for(k: &KeyEvent) -> Option<Action> {
    if k.modifiers.contains(KeyModifiers::CONTROL) {
        return match k.code {
            KeyCode::Char('c') => Some(Action::Quit),
            KeyCode::Char('d') => Some(Action::PageDown),
            KeyCode::Char('u') => Some(Action::PageUp),
            _ => None,
        };
    }
    Some(match k.code {
        KeyCode::Char('b') => Action::Rebuild,
        KeyCode::Char('B') => Action::RebuildBoth,
        KeyCode::Char('p') => Action::SwapProxy,
        KeyCode::Char('P') => Action::SwapProxyBoth,
        KeyCode::Char('f') => Action::Bisect,
        KeyCode::Char('c') => Action::Create,
        KeyCode::Char('d') => Action::Deploy,
        KeyCode::Char('t') => Action::Retest,
        KeyCode::Char('r') => Action::Refresh,
        KeyCode::Char('w') => Action::Watch,
        KeyCode::Char('x') => Action::Delete,
        KeyCode::Tab => Action::FocusNext,
        KeyCode::BackTab => Action::FocusPrev,
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::Left | KeyCode::Char('h') => Action::Left,
        KeyCode::Right | KeyCode::Char('l') => Action::Right,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::Top,
        KeyCode::End | KeyCode::Char('G') => Action::Bottom,
        KeyCode::Enter => Action::Open,
        KeyCode::Esc => Action::Back,
        KeyCode::Char('z') => Action::Zoom,
        KeyCode::Char('/') => Action::Filter,
        KeyCode::Char('e') => Action::Edit,
        KeyCode::Char('R') => Action::Repeat,
        KeyCode::Char('n') => Action::ToggleRaw,
        KeyCode::Char('W') => Action::ToggleWrap,
        KeyCode::Char('[') => Action::StepBack,
        KeyCode::Char(']') => Action::StepForward,
        KeyCode::Char('o') => Action::ToggleOrigin,
        KeyCode::Char('s') => Action::ToggleLayout,
        KeyCode::Char('N') => Action::NextNode,
        KeyCode::Char('m') => Action::Metrics,
        KeyCode::Char('M') => Action::Mouse,
        KeyCode::Char('?') | KeyCode::F(1) => Action::Help,
        KeyCode::Char('q') => Action::Quit,
        _ => return None,
    })
}

/// Footer hints, in keymap order.
pub fn footer_hints() -> impl Iterator<Item = (&'static str, &'static str)> {
    BINDINGS.iter().filter_map(|b| b.hint.map(|h| (b.keys, h)))
}

/// A footer hint: its keys and label.
pub type Hint = (&'static str, &'static str);
/// Keys that do nothing in this session, and why.
pub type Disabled = (Vec<&'static str>, String);

/// The footer's hints in keymap order, those `disabled` says do nothing left out; then the
/// keys left out, grouped by why: (`["b", "p"]`, "PR is context prod-eu (read only)").
pub fn footer_with(disabled: impl Fn(Action) -> Option<String>) -> (Vec<Hint>, Vec<Disabled>) {
    let mut on = Vec::new();
    let mut off: Vec<Disabled> = Vec::new();
    for b in BINDINGS {
        let Some(h) = b.hint else { continue };
        match disabled(b.action) {
            None => on.push((b.keys, h)),
            Some(why) => match off.iter_mut().find(|(_, w)| *w == why) {
                Some((keys, _)) => keys.push(b.keys),
                None => off.push((vec![b.keys], why)),
            },
        }
    }
    (on, off)
}

/// How a key is written in hints and help.
pub fn keys_of(a: Action) -> &'static str {
    BINDINGS
        .iter()
        .find(|b| b.action == a)
        .map_or("?", |b| b.keys)
}

/// How the help overlay lays the bindings out on a screen: one column, or two when one does
/// not fit the height (split where their heights are closest); each help text wrapped at words
/// within its column. Shared by the overlay that draws it and the keys that scroll it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpLayout {
    pub two_columns: bool,
    /// Characters a help text has in its column.
    pub room: usize,
    /// Per binding (in keymap order): its help text's rows.
    pub texts: Vec<Vec<String>>,
    /// The first binding of the second column (`texts.len()` with one column).
    pub split: usize,
    /// Rows of the overlay's text: the taller column, a blank and the closing hint.
    pub rows: usize,
}

/// Columns are this wide when there is one; keys take `KEYS_WIDTH` of a column.
pub const HELP_COLUMN: usize = 62;
pub const KEYS_WIDTH: usize = 13;

impl HelpLayout {
    /// `disabled` says why an action does nothing in this session (its help says so).
    pub fn new(
        (width, height): (u16, u16),
        disabled: impl Fn(Action) -> Option<String>,
    ) -> HelpLayout {
        let help = |b: &Binding| match disabled(b.action) {
            Some(why) => format!("disabled: {why}"),
            None => b.help.to_string(),
        };
        let wrapped = |room: usize| -> Vec<Vec<String>> {
            BINDINGS
                .iter()
                .map(|b| wrap_words(&help(b), room))
                .collect()
        };
        // Two columns when one, its texts wrapped, is taller than the screen.
        let one = wrapped(HELP_COLUMN.saturating_sub(KEYS_WIDTH));
        let two_columns = one.iter().map(Vec::len).sum::<usize>() + 4 > height as usize;
        let room = match two_columns {
            true => ((width.saturating_sub(2) / 2) as usize).saturating_sub(KEYS_WIDTH),
            false => HELP_COLUMN.saturating_sub(KEYS_WIDTH),
        };
        let texts = if two_columns { wrapped(room) } else { one };
        let heights: Vec<usize> = texts.iter().map(Vec::len).collect();
        let split = if two_columns {
            balanced(&heights)
        } else {
            texts.len()
        };
        let (a, b) = heights.split_at(split);
        let rows = a.iter().sum::<usize>().max(b.iter().sum()) + 2;
        HelpLayout {
            two_columns,
            room,
            texts,
            split,
            rows,
        }
    }

    /// How far it can scroll on a screen `height` rows tall (its border takes two).
    pub fn max_scroll(&self, height: u16) -> u16 {
        let visible = height.saturating_sub(2) as usize;
        u16::try_from(self.rows.saturating_sub(visible)).unwrap_or(u16::MAX)
    }
}

/// `text` in rows of at most `room` characters, broken at spaces (a longer word is cut).
pub fn wrap_words(text: &str, room: usize) -> Vec<String> {
    let room = room.max(1);
    let mut rows: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let row = rows.last_mut().expect("a row");
        let (have, len) = (row.chars().count(), word.chars().count());
        if have > 0 && have + 1 + len <= room {
            row.push(' ');
            row.push_str(word);
        } else if have == 0 && len <= room {
            row.push_str(word);
        } else {
            let mut chars: Vec<char> = word.chars().collect();
            if have == 0 {
                rows.pop();
            }
            while !chars.is_empty() {
                let rest = chars.split_off(chars.len().min(room));
                rows.push(chars.into_iter().collect());
                chars = rest;
            }
        }
    }
    rows
}

/// Where to split cells of these heights into two columns whose heights are closest (cells
/// stay in order): the index of the second column's first cell.
fn balanced(heights: &[usize]) -> usize {
    let total: usize = heights.iter().sum();
    let taller = |k: usize| {
        let a: usize = heights[..k].iter().sum();
        a.max(total - a)
    };
    // The shortest taller column; of two such splits, the one with the left column taller.
    let left_shorter = |k: usize| 2 * heights[..k].iter().sum::<usize>() < total;
    (0..=heights.len())
        .min_by_key(|&k| (taller(k), left_shorter(k)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_texts_wrap_at_words_and_columns_balance() {
        let rows = wrap_words("swap in kube-proxy built from the PR source", 20);
        assert_eq!(rows, ["swap in kube-proxy", "built from the PR", "source"]);
        assert_eq!(wrap_words("short", 20), ["short"]);
        // A word longer than the room is cut, never lost.
        assert_eq!(
            wrap_words("a abcdefghij b", 4),
            ["a", "abcd", "efgh", "ij b"]
        );
        assert_eq!(balanced(&[2, 1, 1, 2, 1]), 3);
        assert_eq!(balanced(&[1, 1]), 1);
        // One column where it fits; two, wrapped and scrollable, on the smallest screen.
        let tall = HelpLayout::new((120, 50), |_| None);
        assert!(!tall.two_columns && tall.split == BINDINGS.len());
        assert_eq!(tall.max_scroll(50), 0);
        // Where one column, its texts wrapped, is a row too tall: two, and no scrolling.
        let one: usize = tall.texts.iter().map(Vec::len).sum();
        let h = (one + 3) as u16;
        let snug = HelpLayout::new((120, h), |_| None);
        assert!(snug.two_columns && snug.max_scroll(h) == 0, "{h}");
        let small = HelpLayout::new((80, 24), |_| None);
        assert!(small.two_columns && small.room == 26);
        assert!(
            small
                .texts
                .iter()
                .flatten()
                .all(|r| r.chars().count() <= 26)
        );
        assert!(small.max_scroll(24) > 0);
    }

    #[test]
    fn every_binding_is_reachable() {
        // Each binding's first key maps back to its action (help text can't drift from behaviour).
        for b in BINDINGS {
            let first = if b.keys == "/" {
                "/"
            } else {
                b.keys.split('/').next().unwrap()
            };
            let code = match first {
                "Tab" => KeyCode::Tab,
                "S-Tab" => KeyCode::BackTab,
                "↑" => KeyCode::Up,
                "↓" => KeyCode::Down,
                "←" => KeyCode::Left,
                "→" => KeyCode::Right,
                "PgUp" => KeyCode::PageUp,
                "Enter" => KeyCode::Enter,
                "Esc" => KeyCode::Esc,
                k => KeyCode::Char(k.chars().next().unwrap()),
            };
            let got = action_for(&KeyEvent::new(code, KeyModifiers::NONE));
            assert_eq!(got, Some(b.action), "{}", b.keys);
        }
    }
}
