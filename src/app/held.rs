//! What the dashboard keeps of connections held across a change: per side, the last change's
//! connections and what became of each.

use std::time::Duration;

use super::state::State;
use crate::backend::held::{Change, HeldConn, summary};
use crate::model::Side;

/// The connections a side held across its last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub change: Change,
    pub conns: Vec<HeldConn>,
    /// When they were reported (app clock).
    pub at: Duration,
}

impl Held {
    /// "held across swap: 4 kept, 2 reset".
    pub fn summary(&self) -> String {
        summary(self.change, &self.conns)
    }
}

/// A side reported its held connections: they replace the ones before, sorted by source and
/// address so the pane's order does not follow the order they were closed in.
pub fn on_held(st: &mut State, side: Side, change: Change, mut conns: Vec<HeldConn>) {
    conns.sort_by(|a, b| (&a.source, a.via, &a.addr).cmp(&(&b.source, b.via, &b.addr)));
    let at = st.now;
    let s = st.side_mut(side);
    let held = Held { change, conns, at };
    st.activity = format!("{}: {}", s.name(), held.summary());
    st.side_mut(side).held = Some(held);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::held::{Fate, Via};

    #[test]
    fn the_last_change_replaces_the_one_before_in_a_stable_order() {
        let mut st = State::default();
        let c = |source: &str, via, fate| HeldConn {
            source: source.into(),
            via,
            addr: "10.0.0.1:80".into(),
            fate,
            detail: None,
        };
        on_held(
            &mut st,
            Side::Pr,
            Change::Swap,
            vec![c("b", Via::Lb, Fate::Kept)],
        );
        let conns = vec![
            c("b", Via::ClusterIp, Fate::Reset),
            c("a", Via::Lb, Fate::Reset),
            c("b", Via::Lb, Fate::Kept),
        ];
        on_held(&mut st, Side::Pr, Change::Rebuild, conns);
        let h = st.side(Side::Pr).held.as_ref().unwrap();
        assert_eq!(h.change, Change::Rebuild);
        let order: Vec<_> = h.conns.iter().map(|c| (c.source.as_str(), c.via)).collect();
        assert_eq!(
            order,
            [("a", Via::Lb), ("b", Via::Lb), ("b", Via::ClusterIp)]
        );
        assert!(st.side(Side::Base).held.is_none());
        assert!(
            st.activity
                .ends_with("held across rebuild: 1 kept, 2 reset"),
            "{}",
            st.activity
        );
    }
}
