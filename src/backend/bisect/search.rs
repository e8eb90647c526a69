//! The search itself, pure: which commit a bisect tests next, from the verdicts so far.
//!
//! The range is the good end, then its commits oldest first with the bad end last. The first
//! bad commit is somewhere after the last good commit known and at or before the first bad one
//! known; the next commit tested is the one of that open interval nearest its middle that is
//! neither tested nor skipped (of two as near, the older), so that every step can be predicted.
//! A skipped commit is never blamed: when only skipped commits are left between the last good
//! and the first bad, the answer is that the first bad is one of them or the first bad known.

use std::collections::HashMap;

use super::{CommitInfo, StepVerdict};

/// A bisect's search over one range.
#[derive(Debug, Clone)]
pub struct Search {
    /// The good end, then the range oldest first (the bad end last).
    all: Vec<CommitInfo>,
    /// Each commit's index in `all`.
    index: HashMap<String, usize>,
    /// The verdict recorded for each of `all` (the ends' as well).
    verdicts: Vec<Option<StepVerdict>>,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Test this commit.
    Test(CommitInfo),
    /// `first_bad` is bad and `last_good`, its parent in the range, is good.
    Found {
        first_bad: CommitInfo,
        last_good: CommitInfo,
    },
    /// Every commit left between last good and first bad is skipped: the first bad is one of
    /// `candidates` (the skipped commits and the first bad known, oldest first).
    NotFound {
        candidates: Vec<CommitInfo>,
        last_good: CommitInfo,
    },
}

impl Search {
    /// `good`: the good end; `commits`: the range oldest first, the bad end last.
    ///
    /// Until verdicts say otherwise, the good end counts as good and the bad end as bad (the
    /// job checks both ends first, and stops when either is not what it was said to be).
    pub fn new(good: CommitInfo, commits: Vec<CommitInfo>) -> Search {
        let mut all = Vec::with_capacity(commits.len() + 1);
        all.push(good);
        all.extend(commits);
        let mut index = HashMap::with_capacity(all.len());
        // The first occurrence wins (a commit is in a range once; the good end first).
        for (i, c) in all.iter().enumerate() {
            index.entry(c.sha.clone()).or_insert(i);
        }
        let verdicts = vec![None; all.len()];
        Search {
            all,
            index,
            verdicts,
        }
    }

    /// A step's verdict (Skip: not judged, never blamed). A commit outside the range is
    /// ignored; a second verdict for a commit replaces the first.
    pub fn record(&mut self, sha: &str, v: StepVerdict) {
        if let Some(&i) = self.index.get(sha) {
            self.verdicts[i] = Some(v);
        }
    }

    /// The first bad commit known (the bad end when no commit before it is bad), as an index of
    /// `all`; never the good end.
    fn first_bad(&self) -> usize {
        let last = self.all.len() - 1;
        (1..last)
            .find(|&i| self.verdicts[i] == Some(StepVerdict::Bad))
            .unwrap_or(last)
    }

    /// The last good commit known before `hi` (the good end when none is).
    fn last_good(&self, hi: usize) -> usize {
        (1..hi)
            .rev()
            .find(|&i| self.verdicts[i] == Some(StepVerdict::Good))
            .unwrap_or(0)
    }

    /// The open interval (last good, first bad), as indices of `all`.
    fn bounds(&self) -> (usize, usize) {
        let hi = self.first_bad();
        (self.last_good(hi), hi)
    }

    pub fn next(&self) -> Next {
        let (lo, hi) = self.bounds();
        // Nearest the middle: |2i - (lo + hi)| smallest; of two as near, the older (smaller i).
        let pick = (lo + 1..hi)
            .filter(|&i| self.verdicts[i].is_none())
            .min_by_key(|&i| ((2 * i).abs_diff(lo + hi), i));
        if let Some(i) = pick {
            return Next::Test(self.all[i].clone());
        }
        let last_good = self.all[lo].clone();
        if hi == lo + 1 {
            Next::Found {
                first_bad: self.all[hi].clone(),
                last_good,
            }
        } else {
            Next::NotFound {
                candidates: self.all[lo + 1..=hi].to_vec(),
                last_good,
            }
        }
    }

    /// Candidates left between the last good and the first bad known: (count, first, last).
    /// The first bad known counts (it may be the first bad); the last good does not.
    pub fn remaining(&self) -> (usize, &CommitInfo, &CommitInfo) {
        let (lo, hi) = self.bounds();
        (hi - lo, &self.all[lo + 1], &self.all[hi])
    }
}

/// Steps at most when nothing is skipped: both ends + ceil(log2(commits)).
pub fn expected_steps(commits: usize) -> u32 {
    let inside = match commits {
        0 | 1 => 0,
        n => usize::BITS - (n - 1).leading_zeros(),
    };
    2 + inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn commit(n: usize) -> CommitInfo {
        CommitInfo {
            sha: format!("{n:040x}"),
            subject: format!("Merge pull request #{n} from dev/b{n}"),
            pr: Some(n as u32),
        }
    }

    /// The good end is commit 0, the range commits 1..=n.
    fn search(n: usize) -> Search {
        Search::new(commit(0), (1..=n).map(commit).collect())
    }

    /// Runs a bisect with both ends checked first: `verdict(i)` judges commit i. The commits
    /// tested inside, in order, and the end.
    fn run(n: usize, verdict: impl Fn(usize) -> StepVerdict) -> (Vec<usize>, Next) {
        let mut s = search(n);
        s.record(&commit(0).sha, StepVerdict::Good);
        s.record(&commit(n).sha, StepVerdict::Bad);
        let mut tested = Vec::new();
        loop {
            match s.next() {
                Next::Test(c) => {
                    let i = usize::from_str_radix(&c.sha, 16).unwrap();
                    assert!(!tested.contains(&i), "{i} tested twice");
                    assert!(i > 0 && i < n, "{i} is an end");
                    tested.push(i);
                    s.record(&c.sha, verdict(i));
                }
                end => return (tested, end),
            }
        }
    }

    #[test]
    fn each_step_is_nearest_the_middle_and_ties_take_the_older() {
        // 10 commits, first bad 7: (0,10) → 5 good; (5,10) → 7 (7.5: 7 older) bad;
        // (5,7) → 6 good; found 7.
        let (tested, end) = run(10, |i| {
            if i >= 7 {
                StepVerdict::Bad
            } else {
                StepVerdict::Good
            }
        });
        assert_eq!(tested, [5, 7, 6]);
        assert_eq!(
            end,
            Next::Found {
                first_bad: commit(7),
                last_good: commit(6)
            }
        );
        // 9 commits: the middle of (0,9) is 4.5: 4, the older, first.
        let s = search(9);
        assert_eq!(s.next(), Next::Test(commit(4)));
        // A skipped middle: the nearest left, 3 and 5 as near, so 3 (the older).
        let mut s = search(8);
        s.record(&commit(4).sha, StepVerdict::Skip);
        assert_eq!(s.next(), Next::Test(commit(3)));
        s.record(&commit(3).sha, StepVerdict::Skip);
        assert_eq!(s.next(), Next::Test(commit(5)));
    }

    #[test]
    fn one_commit_is_found_without_a_step_inside() {
        let (tested, end) = run(1, |_| StepVerdict::Bad);
        assert!(tested.is_empty());
        assert_eq!(
            end,
            Next::Found {
                first_bad: commit(1),
                last_good: commit(0)
            }
        );
        assert_eq!(expected_steps(1), 2);
    }

    #[test]
    fn expected_steps_are_the_ends_and_ceil_log2() {
        for (n, want) in [
            (1, 2),
            (2, 3),
            (3, 4),
            (4, 4),
            (5, 5),
            (8, 5),
            (9, 6),
            (21, 7),
            (1024, 12),
            (1025, 13),
        ] {
            assert_eq!(expected_steps(n), want, "{n} commits");
        }
    }

    #[test]
    fn skipped_commits_are_never_blamed() {
        // 4 commits, first bad 2, commit 2 skipped: 1 good (skipped 2 → the first bad is 2 or
        // 3), 3 bad: only 2 (skipped) and 3 are left.
        let mut s = search(4);
        s.record(&commit(2).sha, StepVerdict::Skip);
        assert_eq!(s.next(), Next::Test(commit(1)));
        s.record(&commit(1).sha, StepVerdict::Good);
        assert_eq!(s.next(), Next::Test(commit(3)));
        s.record(&commit(3).sha, StepVerdict::Bad);
        assert_eq!(
            s.next(),
            Next::NotFound {
                candidates: vec![commit(2), commit(3)],
                last_good: commit(1)
            }
        );
        // Remaining: 2 and 3 (the first bad known counts, the last good does not).
        assert_eq!(s.remaining(), (2, &commit(2), &commit(3)));
        // A skip next to a good is passed over when the bad is right after the good.
        let mut s = search(4);
        s.record(&commit(1).sha, StepVerdict::Skip);
        s.record(&commit(2).sha, StepVerdict::Good);
        assert_eq!(s.next(), Next::Test(commit(3)));
        s.record(&commit(3).sha, StepVerdict::Bad);
        assert_eq!(
            s.next(),
            Next::Found {
                first_bad: commit(3),
                last_good: commit(2)
            }
        );
    }

    #[test]
    fn remaining_narrows_with_each_verdict_and_ignores_unknown_commits() {
        let mut s = search(10);
        assert_eq!(s.remaining(), (10, &commit(1), &commit(10)));
        s.record(&commit(5).sha, StepVerdict::Good);
        assert_eq!(s.remaining(), (5, &commit(6), &commit(10)));
        s.record(&commit(8).sha, StepVerdict::Bad);
        assert_eq!(s.remaining(), (3, &commit(6), &commit(8)));
        s.record(&commit(99).sha, StepVerdict::Bad);
        assert_eq!(s.remaining(), (3, &commit(6), &commit(8)));
        // A good after the first bad known (not monotone) moves nothing.
        s.record(&commit(9).sha, StepVerdict::Good);
        assert_eq!(s.remaining(), (3, &commit(6), &commit(8)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Any monotone good…bad range: the first bad is found, with at most
        /// expected_steps − 2 steps inside.
        #[test]
        fn a_monotone_range_is_found_within_expected_steps(
            n in 1usize..600,
            f in any::<prop::sample::Index>(),
        ) {
            let first = 1 + f.index(n);
            let (tested, end) = run(n, |i| if i >= first { StepVerdict::Bad } else { StepVerdict::Good });
            prop_assert_eq!(end, Next::Found { first_bad: commit(first), last_good: commit(first - 1) });
            prop_assert!(tested.len() as u32 <= expected_steps(n) - 2, "{} steps for {} commits", tested.len(), n);
        }

        /// With skips: the answer is the true first bad exactly, or NotFound with it among the
        /// candidates (and every other candidate skipped).
        #[test]
        fn with_skips_the_first_bad_is_found_or_a_candidate(
            n in 1usize..200,
            f in any::<prop::sample::Index>(),
            skips in prop::collection::vec(any::<bool>(), 200),
        ) {
            let first = 1 + f.index(n);
            let skipped = |i: usize| i < n && skips[i];
            let (tested, end) = run(n, |i| {
                if skipped(i) {
                    StepVerdict::Skip
                } else if i >= first {
                    StepVerdict::Bad
                } else {
                    StepVerdict::Good
                }
            });
            prop_assert!(tested.len() < n);
            match end {
                Next::Found { first_bad, last_good } => {
                    prop_assert_eq!(first_bad, commit(first));
                    prop_assert_eq!(last_good, commit(first - 1));
                }
                Next::NotFound { candidates, last_good } => {
                    prop_assert!(candidates.contains(&commit(first)));
                    prop_assert!(candidates.len() >= 2);
                    let idx = |c: &CommitInfo| usize::from_str_radix(&c.sha, 16).unwrap();
                    let lg = idx(&last_good);
                    prop_assert!(lg < first);
                    for (k, c) in candidates.iter().enumerate() {
                        prop_assert_eq!(idx(c), lg + 1 + k);
                        if k + 1 < candidates.len() {
                            prop_assert!(skipped(idx(c)), "{} is a candidate but not skipped", idx(c));
                        }
                    }
                }
                Next::Test(_) => unreachable!(),
            }
        }
    }
}
