//! Who is in the cluster and who is up: the background thread that probes
//! servers marked down and brings them back, delivers the hints a server
//! missed while it was away (hinted handoff), and re-resolves discovered
//! names.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime};

use super::engine::store_if_newer;
use super::envelope::Copy;
use super::hints::Hint;
use super::node::{is_server_failure, Node};
use super::*;

impl Shared {
    /// Delivers `node`'s hints through `client`: each write the server
    /// missed, unless it now holds a newer copy; each delete. Each under
    /// its key's stripe, checked still to be the key's hint first (a write
    /// that reached the server since made it void). Returns whether every
    /// hint waiting when it began was delivered (a server failure stops
    /// delivery; the rest waits for the next try). The stand-ins' copies
    /// of the delivered writes are collected for `clear_stand_ins`.
    pub(super) fn deliver_hints(
        &self,
        node: &Node,
        client: &Client,
        delivered: &mut Vec<(String, Vec<String>)>,
    ) -> bool {
        if node.hints.is_empty() {
            return true;
        }
        let client = match client.with_timeout(self.settings.timeout) {
            Ok(client) => client.with_max_retries(0),
            Err(_) => return false,
        };
        for (key, hint) in node.hints.snapshot() {
            if self.closing.load(Ordering::Relaxed) {
                return false;
            }
            let _delivering = node.hints.delivering(&key);
            if !node.hints.holds(&key, &hint) {
                continue;
            }
            if self
                .deliver_one(node, &client, &key, hint, delivered)
                .is_err()
            {
                return false;
            }
        }
        true
    }

    /// Delivers `hint` for `key` to `node` through `client`, the caller
    /// holding the key's stripe: `Err` only for a server failure (the hint
    /// stays). A write the server missed is stored unless it now holds a
    /// newer copy; the stand-ins of a delivered write go to `delivered`.
    pub(super) fn deliver_one(
        &self,
        node: &Node,
        client: &Client,
        key: &str,
        hint: Hint,
        delivered: &mut Vec<(String, Vec<String>)>,
    ) -> Result<()> {
        let outcome = match &hint {
            Hint::Set { raw, .. } if self.settings.replicas > 1 => {
                let copy = Copy::parse(raw.clone());
                match copy.remaining_ttl(SystemTime::now()) {
                    // A delete is delivered however late: the server may
                    // still hold the value it removed, and the stand-ins'
                    // tombstones may be gone. Its tombstone keeps its time.
                    None if copy.deleted => store_if_newer(
                        client,
                        key,
                        &copy,
                        None,
                        Ttl::After(envelope::TOMBSTONE_LIFETIME),
                    ),
                    // A value expired meanwhile: nothing to deliver.
                    None => Ok(()),
                    Some(left) => store_if_newer(client, key, &copy, None, left),
                }
            }
            Hint::Set { raw, ttl, .. } => client.set_with_ttl(key, raw, *ttl),
            Hint::Delete => client.delete(key),
        };
        if let Err(error) = outcome {
            if is_server_failure(&error) {
                return Err(error);
            }
        }
        // Delivered, or refused for the key's own sake (a value the server
        // no longer takes): either way it is done.
        if node.hints.delivered_one(key, &hint) {
            if let Hint::Set { stand_ins, .. } = hint {
                if !stand_ins.is_empty() {
                    delivered.push((key.to_owned(), stand_ins));
                }
            }
        }
        Ok(())
    }

    /// Deletes a key's copies from the servers that stood in for its home
    /// server, now that the home server has it, unless a server is home
    /// to the key itself by now. Best effort: a copy left behind is only
    /// read while the home server is down again.
    pub(super) fn clear_stand_ins(&self, delivered: Vec<(String, Vec<String>)>) {
        if delivered.is_empty() {
            return;
        }
        let topology = self.topology();
        for (key, stand_ins) in delivered {
            let (_, home) = topology.placement(&key, self.settings.replicas);
            for (index, node) in topology.nodes.iter().enumerate() {
                if !stand_ins.contains(&node.origin.name) || home.contains(&index) {
                    continue;
                }
                let outcome = node
                    .client
                    .with_timeout(self.settings.timeout)
                    .and_then(|client| client.delete(&key));
                node.record(&outcome, self.threshold());
            }
        }
    }

    /// Pings the servers marked down whose cool-down is over; the first
    /// answer brings a server back. A server whose client does not answer
    /// is also asked over a fresh connection: the client's own reconnect
    /// backoff grows to minutes for a server long gone, and must not delay
    /// its return. When only the fresh client answers, the server comes
    /// back with it.
    pub(super) fn probe(&self) {
        let topology = self.topology();
        let ping = |client: &Client| {
            client
                .with_timeout(self.settings.probe_interval)
                .map(|client| client.with_max_retries(0))
                .and_then(|client| client.ping())
                .is_ok()
        };
        for node in &topology.nodes {
            let due = node
                .down_since()
                .is_some_and(|since| since.elapsed() >= self.settings.cool_down);
            if !due {
                continue;
            }
            // Back at the first answer, even with hints still waiting:
            // reads answer those keys from the hints, never from its old
            // copies, and the loop below delivers them.
            if ping(&node.client) {
                node.bring_back(self.settings.recovery_window);
                continue;
            }
            let Ok(fresh) = make_node(&self.builder, node.origin.clone()) else {
                continue;
            };
            if ping(&fresh.client) {
                let renewed = node.renewed(fresh.client);
                renewed.bring_back(self.settings.recovery_window);
                self.replace(node, renewed);
            }
        }
        // Servers up with hints waiting (back from an outage, or a part
        // that failed before they were marked down) get them now.
        let topology = self.topology();
        for node in &topology.nodes {
            if node.is_up() && !node.hints.is_empty() {
                let mut delivered = Vec::new();
                self.deliver_hints(node, &node.client, &mut delivered);
                self.clear_stand_ins(delivered);
            }
        }
    }

    /// Swaps `old` for `new` in the current topology, if it is still there.
    pub(super) fn replace(&self, old: &Arc<Node>, new: Node) {
        let mut topology = match self.topology.write() {
            Ok(topology) => topology,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut nodes = topology.nodes.clone();
        if let Some(slot) = nodes.iter_mut().find(|node| Arc::ptr_eq(node, old)) {
            *slot = Arc::new(new);
            *topology = Arc::new(Topology::new(nodes));
        }
    }

    /// Resolves the discovered names again and swaps in the new server
    /// set if it changed. Servers that stay keep their client, health and
    /// counters; only keys placed on added or removed servers move.
    pub(super) fn refresh(&self) {
        let mut wanted = Vec::new();
        {
            let Ok(mut last_seen) = self.last_seen.lock() else {
                return;
            };
            for (source, seen) in self.sources.iter().zip(last_seen.iter_mut()) {
                if let Some(found) = discovery::expand(source, &self.builder.resolver) {
                    *seen = found;
                }
                wanted.extend(seen.iter().cloned());
            }
        }
        let wanted = dedup(wanted);
        let current = self.topology();
        let mut names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        names.sort_unstable();
        let current_names: Vec<&str> = current
            .nodes
            .iter()
            .map(|n| n.origin.name.as_str())
            .collect();
        if names == current_names {
            return;
        }
        let existing: HashMap<&str, &Arc<Node>> = current
            .nodes
            .iter()
            .map(|n| (n.origin.name.as_str(), n))
            .collect();
        let nodes: Vec<Arc<Node>> = wanted
            .into_iter()
            .filter_map(|server| match existing.get(server.name.as_str()) {
                Some(node) => Some(Arc::clone(node)),
                // A client that cannot be made (a TLS file gone) leaves
                // the server out until the next resolution.
                None => make_node(&self.builder, server).ok().map(Arc::new),
            })
            .collect();
        let next = Arc::new(Topology::new(nodes));
        match self.topology.write() {
            Ok(mut topology) => *topology = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
    }
}

/// The background thread: probes, and re-resolution when names are
/// discovered. Ends when the last cluster handle drops the sender.
pub(super) fn watch(shared: &Shared, stop: &mpsc::Receiver<()>) {
    let discovers = shared
        .sources
        .iter()
        .any(|source| matches!(source, Source::Discovered { .. }));
    let settings = &shared.settings;
    let tick = if discovers {
        settings.probe_interval.min(settings.resolve_interval)
    } else {
        settings.probe_interval
    };
    let mut next_resolution = Instant::now() + settings.resolve_interval;
    loop {
        match stop.recv_timeout(tick) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        shared.probe();
        if discovers && Instant::now() >= next_resolution {
            shared.refresh();
            next_resolution = Instant::now() + settings.resolve_interval;
        }
    }
}

/// One server's client for `server`, with the cluster's settings.
pub(super) fn make_node(builder: &ClusterBuilder, server: Wanted) -> Result<Node> {
    let mut client = Client::builder(&server.connect)
        .timeout(builder.settings.timeout)
        .max_retries(builder.max_retries)
        .pool_size(builder.pool_size)
        .default_ttl(builder.settings.default_ttl);
    if let Some(namespace) = &builder.namespace {
        client = client.namespace(namespace);
    }
    if let Some(name) = &server.tls_name {
        client = client.tls_server_name(name);
    }
    if let Some(configure) = &builder.configure {
        client = configure(client);
    }
    Ok(Node::new(server, client.build()?))
}

/// The first of each name wins: a server listed twice is one server.
pub(super) fn dedup(wanted: Vec<Wanted>) -> Vec<Wanted> {
    let mut seen = std::collections::HashSet::new();
    wanted
        .into_iter()
        .filter(|server| seen.insert(server.name.clone()))
        .collect()
}
