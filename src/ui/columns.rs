//! Table columns sized from their content: the name column (the first) is never cut at its
//! end, where names differ (`netshoot-worker` / `netshoot-worker2`); less useful columns go
//! first, and a name that still does not fit loses its middle (`netsh…worker2`).

use ratatui::layout::Constraint;

/// One column: its header, the width its widest cell needs, and when it may be left out
/// (`Some(rank)`: lower ranks go first; `None`: always shown).
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub header: &'static str,
    pub want: u16,
    pub drop: Option<u8>,
}

/// The narrowest a shortened name gets (a few characters each side of the `…`).
const MIN_NAME: u16 = 7;

/// Which columns show in `width` (cells one space apart) and how wide each is: the first column
/// gets the width it wants, by leaving out droppable columns (lowest rank first) when needed; if
/// it still does not fit, it gets what is left (at least [`MIN_NAME`]).
pub fn fit(cols: &[Col], width: u16) -> (Vec<usize>, Vec<Constraint>) {
    let mut kept: Vec<usize> = (0..cols.len()).collect();
    let need = |kept: &[usize]| -> u16 {
        kept.iter()
            .map(|&i| cols[i].want.max(cols[i].header.len() as u16))
            .sum::<u16>()
            + kept.len().saturating_sub(1) as u16
    };
    let mut ranks: Vec<(u8, usize)> = cols
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.drop.map(|r| (r, i)))
        .collect();
    ranks.sort_unstable();
    for (_, i) in ranks {
        if need(&kept) <= width {
            break;
        }
        kept.retain(|&k| k != i);
    }
    let rest: u16 = kept[1..]
        .iter()
        .map(|&i| cols[i].want.max(cols[i].header.len() as u16) + 1)
        .sum();
    let first = cols[0].want.max(cols[0].header.len() as u16);
    let name = first.min(width.saturating_sub(rest)).max(MIN_NAME);
    let widths = kept
        .iter()
        .map(|&i| match i {
            0 => Constraint::Length(name),
            _ => Constraint::Length(cols[i].want.max(cols[i].header.len() as u16)),
        })
        .collect();
    (kept, widths)
}

/// The widths a table of `cols` needs: with only the columns always shown (its names whole),
/// and with every column.
pub fn needs(cols: &[Col]) -> (u16, u16) {
    let w = |c: &Col| c.want.max(c.header.len() as u16);
    let sum = |it: &mut dyn Iterator<Item = &Col>| {
        let (n, total) = it.fold((0u16, 0u16), |(n, t), c| (n + 1, t + w(c)));
        total + n.saturating_sub(1)
    };
    let min = sum(&mut cols.iter().filter(|c| c.drop.is_none()));
    (min, sum(&mut cols.iter()))
}

/// The width the first column got.
pub fn first_width(widths: &[Constraint]) -> usize {
    match widths.first() {
        Some(Constraint::Length(w)) => *w as usize,
        _ => usize::MAX,
    }
}

/// `s` in at most `w` characters: whole when it fits, else its start and its end (the larger
/// part, where names differ) around a `…`.
pub fn middle(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    if w <= 1 {
        return "…".chars().take(w).collect();
    }
    let tail = (w - 1).div_ceil(2) + (w - 1) / 6;
    let tail = tail.min(w - 1);
    let head = w - 1 - tail;
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// Keep only the `kept` items of a row's cells, in order.
pub fn pick<T>(cells: Vec<T>, kept: &[usize]) -> Vec<T> {
    cells
        .into_iter()
        .enumerate()
        .filter(|(i, _)| kept.contains(i))
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_their_middle_never_their_end() {
        assert_eq!(middle("netshoot-worker2", 16), "netshoot-worker2");
        let m = middle("netshoot-worker2", 13);
        assert_eq!(m.chars().count(), 13);
        assert!(m.starts_with("nets") && m.ends_with("worker2"), "{m}");
        assert_ne!(
            middle("netshoot-worker", 12),
            middle("netshoot-worker2", 12)
        );
        assert_eq!(middle("abc", 1), "…");
        assert_eq!(middle("abc", 0), "");
    }

    #[test]
    fn optional_columns_go_before_the_name_is_cut() {
        let needs_of = |cols: &[Col]| needs(cols);
        let cols = [
            Col {
                header: "POD",
                want: 16,
                drop: None,
            },
            Col {
                header: "NODE",
                want: 7,
                drop: Some(3),
            },
            Col {
                header: "NET",
                want: 4,
                drop: Some(2),
            },
            Col {
                header: "PHASE",
                want: 7,
                drop: None,
            },
            Col {
                header: "RESTARTS",
                want: 1,
                drop: Some(1),
            },
        ];
        // Everything fits: 16+7+4+7+8 and 4 separators; the name and the phase: 16+7+1.
        assert_eq!(needs_of(&cols), (24, 46));
        let (kept, w) = fit(&cols, 46);
        assert_eq!(kept, [0, 1, 2, 3, 4]);
        assert_eq!(first_width(&w), 16);
        // Restarts go, then the network; the name stays whole.
        assert_eq!(fit(&cols, 37).0, [0, 1, 2, 3]);
        assert_eq!(fit(&cols, 32).0, [0, 1, 3]);
        assert_eq!(first_width(&fit(&cols, 32).1), 16);
        // Too narrow even so: the name gets what is left.
        let (kept, w) = fit(&cols, 20);
        assert_eq!(kept, [0, 3]);
        assert_eq!(first_width(&w), 12);
    }
}
