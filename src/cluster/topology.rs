//! The current set of servers and where a key lives on them: its live
//! replicas, its home servers, its candidates in rank order.

use std::sync::Arc;

use super::node::Node;
use super::placement;

/// The servers as one call sees them: a snapshot, swapped whole when
/// discovery changes the set.
pub(super) struct Topology {
    pub(super) nodes: Vec<Arc<Node>>,
    pub(super) slots: Vec<placement::Slot>,
}

impl Topology {
    pub(super) fn new(mut nodes: Vec<Arc<Node>>) -> Topology {
        nodes.sort_by(|a, b| a.origin.name.cmp(&b.origin.name));
        let slots = nodes.iter().map(|node| node.slot).collect();
        Topology { nodes, slots }
    }

    /// The key's first `replicas` live servers, best first.
    pub(super) fn replicas(&self, key: &str, replicas: usize) -> Vec<usize> {
        let mut candidates = self.candidates(key);
        candidates.truncate(replicas);
        candidates
    }

    /// The key's first `replicas` live servers, best first, and its home:
    /// the first `replicas` servers whatever their health, the ones that
    /// must end up with every acknowledged write (a home server missing
    /// from the live ones gets a hint).
    pub(super) fn placement(&self, key: &str, replicas: usize) -> (Vec<usize>, Vec<usize>) {
        let ranked = placement::rank(key, &self.slots);
        let mut live: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&index| self.nodes[index].is_up())
            .take(replicas)
            .collect();
        let mut home = ranked;
        home.truncate(replicas);
        if live.is_empty() {
            live.clone_from(&home);
        }
        (live, home)
    }

    /// The key's live servers, best first; every server when none is live
    /// (trying a server marked down beats refusing outright).
    pub(super) fn candidates(&self, key: &str) -> Vec<usize> {
        let ranked = placement::rank(key, &self.slots);
        let live: Vec<usize> = ranked
            .iter()
            .copied()
            .filter(|&index| self.nodes[index].is_up())
            .collect();
        if live.is_empty() {
            ranked
        } else {
            live
        }
    }
}
