//! The replication engine: how a call on many keys becomes one call per
//! server, all at once, within one deadline, and how the servers' answers
//! combine: reads by quorum with the newest copy winning and stale
//! replicas repaired, writes stored on every live replica with a hint for
//! each home server that missed one, conditional writes on the key's
//! server.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::envelope::{self, Copy};
use super::fanout::in_parallel;
use super::hints::Hint;
use super::node::{is_server_failure, Node};
use super::placement;
use super::policy::{Replies, ResponsePolicy};
use super::*;
use crate::client::flight::{Answered, Flight, Request, LAST_WORD};

impl Shared {
    pub(super) fn topology(&self) -> Arc<Topology> {
        match self.topology.read() {
            Ok(topology) => Arc::clone(&topology),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// `node`'s client bounded by `timeout`: the client itself when that
    /// is the cluster's timeout (its clients' own), so the common call
    /// makes no per-call handle.
    pub(super) fn bounded<'a>(&self, node: &'a Node, timeout: Duration) -> Result<Cow<'a, Client>> {
        if timeout == self.settings.timeout {
            Ok(Cow::Borrowed(&node.client))
        } else {
            node.client.with_timeout(timeout).map(Cow::Owned)
        }
    }

    /// Runs a single-key call as one plain call on the key's server, when
    /// that is all the engine would do: one replica, its home server up,
    /// and nothing pending for that server (no hint, no recovery window).
    /// A `write` that succeeded forgets any hint recorded for the key
    /// meanwhile, as the engine's writes do: the server holds something
    /// newer. `None` when the call needs the engine.
    pub(super) fn on_sole_home<T>(
        &self,
        key: &str,
        (timeout, write): (Duration, bool),
        call: impl FnOnce(&Client) -> Result<T>,
    ) -> Option<Result<T>> {
        if self.settings.replicas != 1 {
            return None;
        }
        let topology = self.topology();
        let node = &topology.nodes[placement::best(key, &topology.slots)?];
        if !node.is_up() || !node.hints.is_empty() || node.is_recovering() {
            return None;
        }
        let outcome = self.bounded(node, timeout).and_then(|client| call(&client));
        node.record(&outcome, self.threshold());
        if write && outcome.is_ok() {
            node.hints.forget(key);
        }
        Some(outcome)
    }

    pub(super) fn threshold(&self) -> u32 {
        self.settings.failure_threshold
    }

    pub(super) fn encode(&self, value: &[u8], ttl: Ttl, now: SystemTime) -> Bytes {
        if self.settings.replicas > 1 {
            envelope::seal(value, ttl, now)
        } else {
            Bytes::copy_from_slice(value)
        }
    }

    pub(super) fn decode(&self, copy: &Copy) -> Bytes {
        if self.settings.replicas > 1 {
            copy.value()
        } else {
            copy.raw.clone()
        }
    }

    /// Sends every server its part of a call, all at once, and returns each
    /// part's outcome. Each part must end by `part_deadline` (no later
    /// than the call's), so that a server that does not answer leaves time
    /// to ask the next one.
    ///
    /// A part for one server runs as a plain call. Parts for several start
    /// together on one [`Flight`] from this thread, which then sleeps once
    /// for all their replies: no helper thread, and a part stuck on a
    /// silent server ends at its own deadline without holding up the
    /// others' replies.
    pub(super) fn dispatch(
        &self,
        topology: &Arc<Topology>,
        op: &Op,
        keys: &[&str],
        plan: BTreeMap<usize, Vec<usize>>,
        part_deadline: PartDeadline,
        timeout: Duration,
    ) -> Vec<(usize, Vec<usize>, Result<Vec<KeyOutcome>>)> {
        let threshold = self.threshold();
        let finish = |index: usize, part: Vec<usize>, outcome: Option<Result<Vec<KeyOutcome>>>| {
            let node = &topology.nodes[index];
            if let Some(outcome) = &outcome {
                node.record(outcome, threshold);
            }
            (index, part, outcome.unwrap_or_else(|| Err(late(timeout))))
        };
        if plan.len() == 1 {
            return plan
                .into_iter()
                .map(|(index, part)| {
                    let outcome = send_part(&topology.nodes[index], op, keys, &part, part_deadline);
                    finish(index, part, outcome)
                })
                .collect();
        }
        let parts: Vec<(usize, Vec<usize>)> = plan.into_iter().collect();
        let chosen: Vec<Vec<&str>> = parts
            .iter()
            .map(|(_, part)| part.iter().map(|&at| keys[at]).collect())
            .collect();
        let items: Vec<Vec<(&str, &[u8])>> = match op {
            Op::Set { values, .. } => parts
                .iter()
                .map(|(_, part)| part.iter().map(|&at| (keys[at], &values[at][..])).collect())
                .collect(),
            Op::Get | Op::Delete => Vec::new(),
        };
        let mut flight = Flight::waited_out();
        let mut latest = Instant::now();
        let slots: Vec<Option<usize>> = parts
            .iter()
            .enumerate()
            .map(|(at, (index, _))| {
                let client = &topology.nodes[*index].client;
                let request =
                    part_request(op, &chosen[at], items.get(at).map_or(&[], Vec::as_slice));
                let (slot, by) = self.start_part(&mut flight, client, request, part_deadline)?;
                latest = latest.max(by);
                Some(slot)
            })
            .collect();
        // Every call ends by its own deadline; the margin only covers the
        // worker's last word.
        flight.wait_all(latest + LAST_WORD);
        parts
            .into_iter()
            .zip(slots)
            .map(|((index, part), slot)| {
                let outcome = slot
                    .and_then(|slot| flight.take(slot))
                    .map(|answered| part_outcome(answered, part.len()));
                finish(index, part, outcome)
            })
            .collect()
    }

    /// Asks each key's servers in rank order, in rounds, until its policy
    /// has what it needs or no server is left: every server gets its
    /// keys of a round in one call, all servers at once. A read with
    /// replicas left to ask shares the deadline between the rounds (a hung
    /// server must leave time for the next); a write asks every replica at
    /// once, each with what is left.
    pub(super) fn gather(
        &self,
        topology: &Arc<Topology>,
        op: &Op,
        keys: &[&str],
        replies: &mut [Replies],
        policy: ResponsePolicy,
        (deadline, timeout): (Instant, Duration),
    ) {
        let replicas = self.settings.replicas;
        let mut first_round = true;
        loop {
            let mut plan: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            let mut spare = 0;
            for (at, key) in replies.iter_mut().enumerate() {
                if key.refused.is_some() {
                    continue;
                }
                let wanted = key.wanted(policy, replicas);
                for &index in key.take(wanted) {
                    plan.entry(index).or_default().push(at);
                }
                if policy == ResponsePolicy::Newest {
                    spare = spare.max(key.spare());
                }
            }
            if plan.is_empty() {
                return;
            }
            let part_deadline = match PartDeadline::share(deadline, spare, first_round, timeout) {
                // The servers' clients run on the cluster's timeout, not a
                // handle's own.
                PartDeadline::Own if timeout != self.settings.timeout => PartDeadline::By(deadline),
                part_deadline => part_deadline,
            };
            let hedgeable = self.hedgeable(topology, op, policy, first_round, &plan, replies);
            let outcomes = match hedgeable {
                Some((at, first, second, probe)) => {
                    let read = &mut replies[at];
                    self.hedged(
                        topology,
                        keys,
                        (at, first, second, probe),
                        read,
                        part_deadline,
                        (deadline, timeout),
                    )
                }
                None => self.dispatch(topology, op, keys, plan, part_deadline, timeout),
            };
            for (index, part, outcome) in outcomes {
                match outcome {
                    Err(error) => {
                        for at in part {
                            replies[at].error = Some(error.clone());
                        }
                    }
                    Ok(results) => {
                        for (at, result) in part.into_iter().zip(results) {
                            match result {
                                Ok(value) => {
                                    replies[at].answers.push((index, value.map(Copy::parse)))
                                }
                                Err(refused) => replies[at].refused = Some(refused),
                            }
                        }
                    }
                }
            }
            first_round = false;
        }
    }

    /// A read round that may be hedged: the first round of a read of one
    /// key from one replica, with another to spare. Returns the key's
    /// place, the replica to ask first, the one a hedge would ask, and
    /// whether the first is a probe: a replica whose probation ran out,
    /// asked first again by this one read (see `hedging`).
    fn hedgeable(
        &self,
        topology: &Topology,
        op: &Op,
        policy: ResponsePolicy,
        first_round: bool,
        plan: &BTreeMap<usize, Vec<usize>>,
        replies: &[Replies],
    ) -> Option<(usize, usize, usize, bool)> {
        if !matches!(op, Op::Get) || policy != ResponsePolicy::Newest || !first_round {
            return None;
        }
        if !self.hedger.enabled() || plan.len() != 1 {
            return None;
        }
        let (&first, part) = plan.iter().next()?;
        let &[at] = part.as_slice() else {
            return None;
        };
        let read = &replies[at];
        let second = *read.candidates.get(read.next)?;
        // Only a home replica is worth a hedge: a stand-in is asked when
        // the home servers fail, not when they are slow (see `read`).
        if !read.home.contains(&second) || !read.home.contains(&first) {
            return None;
        }
        self.hedger.earn();
        if self.hedger.claim_probe(&topology.nodes[second].latencies) {
            return Some((at, second, first, true));
        }
        Some((at, first, second, false))
    }

    /// One key's read from its `first` replica, hedged to `second` when
    /// the first has not answered within the hedge delay (see `hedging`);
    /// a `probe` is hedged whatever the budget. Returns the answers to
    /// count: the first copy to arrive (the other call cancelled), or both
    /// when the first answer is a miss or a failure.
    fn hedged(
        &self,
        topology: &Arc<Topology>,
        keys: &[&str],
        (at, first, second, probe): (usize, usize, usize, bool),
        read: &mut Replies,
        part_deadline: PartDeadline,
        (deadline, timeout): (Instant, Duration),
    ) -> Vec<(usize, Vec<usize>, Result<Vec<KeyOutcome>>)> {
        let nodes = &topology.nodes;
        let request = Request::Get(keys[at]);
        if probe {
            // The probe is the key's second candidate, asked first: mark it
            // asked (the usual first, its hedge, already is).
            read.take(1);
        }
        let mut flight = Flight::new();
        let started = Instant::now();
        let Some((first_slot, first_by)) =
            self.start_part(&mut flight, &nodes[first].client, request, part_deadline)
        else {
            return vec![(first, vec![at], Err(late(timeout)))];
        };
        // The sooner of the two servers' delays: a first replica that has
        // turned slow has a p95 as slow as itself, and waiting that long
        // would make the hedge useless; the other's p95 says how long an
        // answer should take.
        let delay = self.hedger.delay(&nodes[first].latencies);
        let delay = delay.min(self.hedger.delay(&nodes[second].latencies));
        let hedge_at = started + delay;
        let mut legs = vec![(first, first_slot, started)];
        let mut latest = first_by;
        let mut early = flight.wait_any(hedge_at.min(first_by));
        let hedge = early.is_none() && (probe || read.spare() > 0);
        if hedge && self.hedger.spend(probe) {
            if !probe {
                read.take(1);
            }
            let share = PartDeadline::share(deadline, read.spare(), false, timeout);
            let hedge_client = &nodes[second].client;
            if let Some((slot, by)) = self.start_part(&mut flight, hedge_client, request, share) {
                legs.push((second, slot, Instant::now()));
                latest = latest.max(by);
            }
        }
        let mut out = Vec::with_capacity(legs.len());
        let threshold = self.threshold();
        let last_word = latest + LAST_WORD;
        while let Some(slot) = early.take().or_else(|| flight.wait_any(last_word)) {
            let Some(&(index, _, sent)) = legs.iter().find(|leg| leg.1 == slot) else {
                continue;
            };
            let Some(answered) = flight.take(slot) else {
                continue;
            };
            if answered.is_ok() {
                nodes[index].latencies.record(sent.elapsed());
                if index == first && sent.elapsed() <= delay {
                    self.hedger.answered_promptly(&nodes[first].latencies);
                }
            }
            let outcome = part_outcome(answered, 1);
            nodes[index].record(&outcome, threshold);
            // A tombstone is a miss: the other replica may hold a write
            // newer than the delete.
            let found = matches!(
                outcome.as_deref(),
                Ok([Ok(Some(raw))]) if !envelope::is_tombstone(raw)
            );
            out.push((index, vec![at], outcome));
            if found {
                // A copy wins; the other call is cancelled.
                for &(_, other, _) in &legs {
                    flight.cancel(other);
                }
                if index == second {
                    self.hedger.won();
                    self.hedger.lost_a_race(&nodes[first].latencies);
                }
                break;
            }
            if out.len() == legs.len() {
                break;
            }
        }
        if out.is_empty() {
            out.push((first, vec![at], Err(late(timeout))));
        }
        out
    }

    /// Starts one part on `flight` by `part_deadline`; its slot and when it
    /// ends at the latest, or `None` when no time is left.
    fn start_part<'c>(
        &self,
        flight: &mut Flight<'c>,
        client: &'c Client,
        request: Request<'_>,
        part_deadline: PartDeadline,
    ) -> Option<(usize, Instant)> {
        match part_deadline {
            PartDeadline::Own => {
                let by = Instant::now() + self.settings.timeout;
                Some((flight.start(client, request), by))
            }
            PartDeadline::By(by) if by > Instant::now() => {
                Some((flight.start_until(client, request, by), by))
            }
            PartDeadline::By(_) | PartDeadline::Passed => None,
        }
    }

    /// Reads `keys`; a key flagged in `latest` asks every replica (newest
    /// wins) rather than the read quorum.
    pub(super) fn read(
        &self,
        keys: &[&str],
        latest: Option<&[bool]>,
        timeout: Duration,
    ) -> Vec<KeyOutcome> {
        let topology = self.topology();
        let deadline = Instant::now() + timeout;
        let (replicas, quorum) = (self.settings.replicas, self.settings.read_quorum);
        let mut reads: Vec<Replies> = keys
            .iter()
            .enumerate()
            .map(|(at, key)| {
                let all = latest.is_some_and(|latest| latest.get(at) == Some(&true));
                let (mut candidates, home) = topology.placement(key, replicas);
                let needed = if all { replicas } else { quorum };
                if needed < candidates.len() && self.hedger.enabled() {
                    // A home replica on probation (it lost hedged races) is
                    // asked after the other home replicas (see `hedging`),
                    // never after a stand-in: a stand-in may keep an old
                    // copy from an earlier outage, so it is asked only
                    // when the key's home servers cannot answer.
                    candidates.sort_by_cached_key(|&index| {
                        let stand_in = !home.contains(&index);
                        let rank = self.hedger.rank(&topology.nodes[index].latencies);
                        (stand_in, if stand_in { (false, 0) } else { rank })
                    });
                }
                let mut read = Replies::new(candidates, home, needed);
                self.answer_from_hints(&topology, key, &mut read);
                read
            })
            .collect();
        self.gather(
            &topology,
            &Op::Get,
            keys,
            &mut reads,
            ResponsePolicy::Newest,
            (deadline, timeout),
        );

        let now = SystemTime::now();
        let mut repairs = Vec::new();
        let outcomes = reads
            .into_iter()
            .enumerate()
            .map(|(at, read)| {
                if let Some(refused) = read.refused {
                    return Err(refused);
                }
                if read.answers.is_empty() {
                    return Err(read.error.unwrap_or_else(no_servers));
                }
                // Recovering keys ask every replica but, as any read, need
                // only the read quorum to answer.
                let needed = quorum;
                if read.answers.len() < needed {
                    return Err(Error::Unavailable(
                        format!(
                            "read quorum not met for key {:?}: {} of {needed} replicas answered ({}); \
                             a lower read_quorum or more servers let reads ride out a failure",
                            keys[at],
                            read.answers.len(),
                            read.error.map_or_else(String::new, |e| e.to_string())
                        )
                        .into(),
                    ));
                }
                let newest = read
                    .answers
                    .iter()
                    .filter_map(|(_, copy)| copy.as_ref())
                    .fold(None::<&Copy>, |best, copy| match best {
                        Some(best) if !copy.is_newer_than(best) => Some(best),
                        _ => Some(copy),
                    });
                let Some(newest) = newest else {
                    // Only stand-ins answered, with misses: the value may
                    // be on a home server that failed or is down, and a
                    // miss would hide it. With R > 1 that is reported; with
                    // R = 1 a down server's keys start as misses on the
                    // next one (documented).
                    let home_answered = read.answers.iter().any(|(i, _)| read.home.contains(i));
                    return match read.error {
                        _ if home_answered => Ok(None),
                        Some(error) => Err(error),
                        None if replicas > 1 => Err(Error::Unavailable(
                            format!(
                                "no replica of key {:?} is reachable: its servers are marked \
                                 down and the stand-ins have no copy (see Cluster::servers; \
                                 a server is back at its first answered probe)",
                                keys[at]
                            )
                            .into(),
                        )),
                        None => Ok(None),
                    };
                };
                if replicas > 1 && newest.remaining_ttl(now).is_some() {
                    for (index, copy) in &read.answers {
                        // A missing copy needs no tombstone: it reads as
                        // one already.
                        let stale = match copy {
                            None => !newest.deleted,
                            Some(copy) => newest.is_newer_than(copy),
                        };
                        // A hinted server was not asked: its hint delivers.
                        if stale && !topology.nodes[*index].hints.contains(keys[at]) {
                            repairs.push(Repair {
                                index: *index,
                                at,
                                seen: copy.clone(),
                                newest: newest.clone(),
                            });
                        }
                    }
                }
                // With R = 1 values are stored as given: one that happens
                // to start like a tombstone is a value.
                if newest.deleted && replicas > 1 {
                    return Ok(None);
                }
                Ok(Some(self.decode(newest)))
            })
            .collect();
        self.repair(&topology, keys, repairs, deadline, timeout);
        outcomes
    }

    /// Puts what the key's hinted servers missed in their place as answers
    /// (so a server back with old data cannot hide an acknowledged write),
    /// and asks every replica while one of them is recovering from writes
    /// it missed unhinted.
    pub(super) fn answer_from_hints(&self, topology: &Topology, key: &str, read: &mut Replies) {
        let nodes = &topology.nodes;
        if read
            .candidates
            .iter()
            .any(|&index| nodes[index].is_recovering())
        {
            read.needed = read.candidates.len().max(read.needed);
        }
        let hinted = |index: &usize| !nodes[*index].hints.is_empty();
        if !read.candidates.iter().any(hinted) && !read.home.iter().any(hinted) {
            return;
        }
        let answer = |index: usize| {
            nodes[index]
                .hints
                .missed(key)
                .map(|raw| raw.map(Copy::parse))
        };
        let answers = &mut read.answers;
        read.candidates.retain(|&index| match answer(index) {
            Some(copy) => {
                answers.push((index, copy));
                false
            }
            None => true,
        });
        // A home server that is down is not asked, but what it missed
        // still counts: with both of a key's replicas down, its hint may
        // be the only record of the newest write.
        for &index in &read.home {
            if !nodes[index].is_up() && !answers.iter().any(|(i, _)| *i == index) {
                if let Some(copy) = answer(index) {
                    answers.push((index, copy));
                }
            }
        }
    }

    /// Rewrites stale replicas with the newest copy before the read
    /// returns, within its deadline. Never overwrites a copy newer than
    /// the one it is repairing with: each write is a compare-and-set
    /// against what the replica answered, so a write that lands between
    /// the read and the repair stays. A failed repair only counts against
    /// its server: the read already has its answer.
    pub(super) fn repair(
        &self,
        topology: &Topology,
        keys: &[&str],
        repairs: Vec<Repair>,
        deadline: Instant,
        timeout: Duration,
    ) {
        if repairs.is_empty() {
            return;
        }
        if let Some(hook) = &self.settings.before_repair {
            (hook.0)();
        }
        // Every stale replica's compare-and-set goes out at once; the rare
        // one that loses a race is settled afterwards, one at a time.
        let now = SystemTime::now();
        let mut flight = Flight::waited_out();
        let mut started = Vec::with_capacity(repairs.len());
        for repair in &repairs {
            let Some(ttl) = repair.newest.remaining_ttl(now) else {
                continue;
            };
            let key = keys[repair.at];
            let (newest, client) = (&repair.newest.raw, &topology.nodes[repair.index].client);
            let request = match &repair.seen {
                Some(copy) => Request::CompareAndSet {
                    key,
                    expected: &copy.raw,
                    value: newest,
                    ttl,
                },
                None => Request::SetIfAbsent(key, newest, ttl),
            };
            if remaining(deadline, timeout).is_ok() {
                started.push((repair, ttl, flight.start_until(client, request, deadline)));
            }
        }
        flight.wait_all(deadline + LAST_WORD);
        for (repair, ttl, slot) in started {
            let node = &topology.nodes[repair.index];
            let outcome = match flight.take(slot) {
                Some(Ok(Answered::Swapped(CasOutcome::Stored) | Answered::Inserted(true))) => {
                    Ok(())
                }
                // Another write got there first: compare with what is
                // there now.
                Some(Ok(_)) => remaining(deadline, timeout)
                    .and_then(|left| node.client.with_timeout(left))
                    .and_then(|client| {
                        store_if_newer(&client, keys[repair.at], &repair.newest, None, ttl)
                    }),
                Some(Err(error)) => Err(error),
                None => Err(late(timeout)),
            };
            node.record(&outcome, self.threshold());
        }
    }

    /// Writes `keys` under the operation's own policy: a write is
    /// acknowledged once stored anywhere (it is served, and repaired,
    /// from there), a delete only once every replica has it (a replica
    /// that missed it may still serve the value).
    pub(super) fn write(&self, keys: &[&str], op: &Op, timeout: Duration) -> Vec<Result<()>> {
        if matches!(op, Op::Delete) && self.settings.replicas > 1 {
            // A tombstone on every replica, not a removal: a read racing
            // the delete cannot repair the old copy back over it (see
            // `envelope`).
            // Bounded by a day: a timeout of years would make a TTL the
            // server refuses.
            let lifetime = envelope::TOMBSTONE_LIFETIME
                .max(self.settings.timeout.saturating_mul(2))
                .min(envelope::TOMBSTONE_LIFETIME_CAP);
            let tombstone = envelope::tombstone(lifetime, SystemTime::now());
            let op = Op::Set {
                values: keys.iter().map(|_| tombstone.clone()).collect(),
                ttl: Ttl::After(lifetime),
            };
            return self.write_with(keys, &op, ResponsePolicy::AllStored, timeout);
        }
        let policy = match op {
            Op::Set { .. } => ResponsePolicy::AnyStored,
            Op::Get | Op::Delete => ResponsePolicy::AllStored,
        };
        self.write_with(keys, op, policy, timeout)
    }

    /// Writes `keys`, acknowledging each under `policy`.
    pub(super) fn write_with(
        &self,
        keys: &[&str],
        op: &Op,
        policy: ResponsePolicy,
        timeout: Duration,
    ) -> Vec<Result<()>> {
        let topology = self.topology();
        let deadline = Instant::now() + timeout;
        let replicas = self.settings.replicas;
        let mut writes: Vec<Replies> = keys
            .iter()
            .map(|key| {
                let (candidates, home) = topology.placement(key, replicas);
                Replies::new(candidates, home, replicas)
            })
            .collect();
        // Writes to a server with hints waiting are ordered against their
        // delivery (see `hints`): held until the hints are settled below.
        let mut stripes: Vec<(usize, usize)> = Vec::new();
        for (write, key) in writes.iter().zip(keys) {
            for &index in &write.candidates {
                let hints = &topology.nodes[index].hints;
                if !hints.is_empty() {
                    stripes.push((index, hints.stripe_of(key)));
                }
            }
        }
        stripes.sort_unstable();
        stripes.dedup();
        let mut _writing = Vec::with_capacity(stripes.len());
        for &(index, stripe) in &stripes {
            match topology.nodes[index].hints.writing_by(stripe, deadline) {
                Some(guard) => _writing.push(guard),
                // A delivery held it past this call's deadline: nothing
                // was sent.
                None => return keys.iter().map(|_| Err(late(timeout))).collect(),
            }
        }
        self.gather(
            &topology,
            op,
            keys,
            &mut writes,
            policy,
            (deadline, timeout),
        );
        writes
            .into_iter()
            .enumerate()
            .map(|(at, write)| {
                let outcome = write.write_outcome(policy);
                // A server that stored it holds something newer than any
                // hint for the key, acknowledged or not.
                for index in write.answered_by() {
                    topology.nodes[index].hints.forget(keys[at]);
                }
                if outcome.is_ok() {
                    self.hint_missed(&topology, keys[at], op, at, &write);
                }
                outcome
            })
            .collect()
    }

    /// After an acknowledged write: every home server of the key that did
    /// not store it gets a hint.
    pub(super) fn hint_missed(
        &self,
        topology: &Topology,
        key: &str,
        op: &Op,
        at: usize,
        write: &Replies,
    ) {
        let nodes = &topology.nodes;
        for &index in &write.home {
            if write.answered_by().any(|stored| stored == index) {
                continue;
            }
            let hint = match op {
                Op::Set { values, ttl } => Hint::Set {
                    raw: values[at].clone(),
                    ttl: *ttl,
                    stand_ins: write
                        .answered_by()
                        .filter(|index| !write.home.contains(index))
                        .map(|index| nodes[index].origin.name.clone())
                        .collect(),
                },
                Op::Delete => Hint::Delete,
                Op::Get => continue,
            };
            let node = &nodes[index];
            if !node.hints.record(key, hint, self.settings.hint_capacity) {
                node.missed_a_hint(self.settings.recovery_window);
            }
        }
    }

    /// `SetIfAbsent` on each of the key's replicas at once: `true` only
    /// when every one stored it.
    pub(super) fn set_if_absent_everywhere(
        &self,
        key: &str,
        value: &[u8],
        ttl: Ttl,
        timeout: Duration,
    ) -> Result<bool> {
        ttl.wire_seconds()?;
        let topology = self.topology();
        let raw = self.encode(value, ttl, SystemTime::now());
        let deadline = Instant::now() + timeout;
        let mut flight = Flight::waited_out();
        let started: Vec<(usize, usize)> = topology
            .replicas(key, self.settings.replicas)
            .into_iter()
            .map(|index| {
                let request = Request::SetIfAbsent(key, &raw, ttl);
                (
                    index,
                    flight.start_until(&topology.nodes[index].client, request, deadline),
                )
            })
            .collect();
        flight.wait_all(deadline + LAST_WORD);
        let mut stored_everywhere = Ok(true);
        for (index, slot) in started {
            let outcome = match flight.take(slot) {
                Some(Ok(Answered::Inserted(true))) => Ok(true),
                // A tombstone is no value: replace it, by compare-and-set.
                Some(Ok(Answered::Inserted(false))) => remaining(deadline, timeout)
                    .and_then(|left| topology.nodes[index].client.with_timeout(left))
                    .and_then(|client| replace_tombstone(&client, key, &raw, ttl)),
                Some(Ok(other)) => Err(Error::Protocol {
                    code: crate::Code::Internal,
                    message: format!("SetIfAbsent answered as {other:?}"),
                }),
                Some(Err(error)) => Err(error),
                None => Err(late(timeout)),
            };
            topology.nodes[index].record(&outcome, self.threshold());
            stored_everywhere = match (stored_everywhere, outcome) {
                (Err(first), _) => Err(first),
                (Ok(_), Err(error)) => Err(error),
                (Ok(all), Ok(stored)) => Ok(all && stored),
            };
        }
        stored_everywhere
    }

    /// Runs a conditional call on the key's best live server. A hint that
    /// server has for the key is delivered first (the condition must be
    /// judged against the newest value, not the copy it missed a write
    /// on); a write the call `stored` on a stand-in leaves a hint for the
    /// key's home server, as any write does.
    pub(super) fn on_primary<T>(
        &self,
        key: &str,
        what: &str,
        written: (&[u8], Ttl),
        stored: impl Fn(&T) -> bool,
        call: impl FnOnce(&Client) -> Result<T>,
        timeout: Duration,
    ) -> Result<T> {
        if self.settings.replicas > 1 {
            return Err(Error::Validation(format!(
                "{what} of key {key:?} needs a cluster with one replica: with {} no single \
                 server can decide it (build with replicas(1), or use the CacheStore \
                 trait's set_if_absent_everywhere to write every replica)",
                self.settings.replicas
            )));
        }
        let topology = self.topology();
        let (live, home) = topology.placement(key, 1);
        let index = *live.first().ok_or_else(no_servers)?;
        let node = &topology.nodes[index];
        let deadline = Instant::now() + timeout;
        // Only with hints waiting does the call share its deadline with a
        // delivery; otherwise the server's own client and timeout serve.
        let hinted = !node.hints.is_empty();
        if node.hints.contains(key) {
            let mut delivered = Vec::new();
            let _delivering = node
                .hints
                .delivering_by(key, deadline)
                .ok_or_else(|| late(timeout))?;
            if let Some(hint) = node.hints.get(key) {
                let client = node.client.with_timeout(remaining(deadline, timeout)?)?;
                let outcome = self.deliver_one(node, &client, key, hint, &mut delivered);
                node.record(&outcome, self.threshold());
                outcome?;
            }
        }
        let (mut _writing, mut bounded) = (None, None);
        if timeout != self.settings.timeout {
            bounded = Some(node.client.with_timeout(timeout)?);
        }
        if hinted {
            let stripe = node.hints.stripe_of(key);
            _writing = Some(
                node.hints
                    .writing_by(stripe, deadline)
                    .ok_or_else(|| late(timeout))?,
            );
            bounded = Some(node.client.with_timeout(remaining(deadline, timeout)?)?);
        }
        let outcome = call(bounded.as_ref().unwrap_or(&node.client));
        node.record(&outcome, self.threshold());
        if outcome.as_ref().is_ok_and(stored) {
            node.hints.forget(key);
            if let Some(&owner) = home.first().filter(|&&owner| owner != index) {
                let hint = Hint::Set {
                    raw: Bytes::copy_from_slice(written.0),
                    ttl: written.1,
                    stand_ins: vec![node.origin.name.clone()],
                };
                let owner = &topology.nodes[owner];
                if !owner.hints.record(key, hint, self.settings.hint_capacity) {
                    owner.missed_a_hint(self.settings.recovery_window);
                }
            }
        }
        outcome
    }

    pub(super) fn touch(&self, key: &str, ttl: Ttl, timeout: Duration) -> Result<bool> {
        ttl.wire_seconds()?;
        let topology = self.topology();
        let deadline = Instant::now() + timeout;
        let replicas = self.settings.replicas;
        let jobs: Vec<_> = topology
            .replicas(key, replicas)
            .into_iter()
            .map(|index| {
                let topology = &topology;
                move || {
                    let node = &topology.nodes[index];
                    let outcome = if replicas == 1 {
                        self.bounded(node, timeout)
                            .and_then(|client| client.touch(key, ttl))
                    } else {
                        touch_copy(&node.client, key, ttl, deadline, timeout)
                    };
                    node.record(&outcome, self.threshold());
                    outcome
                }
            })
            .collect();
        let mut touched = false;
        let mut last_error = None;
        for outcome in in_parallel(jobs) {
            match outcome {
                Ok(found) => touched |= found,
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) if !touched => Err(error),
            _ => Ok(touched),
        }
    }

    pub(super) fn per_server<T: Send>(
        &self,
        call: impl Fn(&Client) -> Result<T> + Sync,
        timeout: Duration,
    ) -> Vec<ServerResult<T>> {
        let topology = self.topology();
        let call = &call;
        let jobs: Vec<_> = topology
            .nodes
            .iter()
            .map(|node| {
                move || ServerResult {
                    server: node.origin.name.clone(),
                    result: self.bounded(node, timeout).and_then(|client| call(&client)),
                }
            })
            .collect();
        in_parallel(jobs)
    }
}

/// Runs `op` for the keys at `part` on one server: a single-key call for
/// one key, a multi-key call otherwise. `Err` when the server failed as a
/// whole; a key it refused is an `Err` inside.
pub(super) fn run_part<K: AsRef<str>>(
    client: &Client,
    op: &Op,
    keys: &[K],
    part: &[usize],
) -> Result<Vec<KeyOutcome>> {
    if let [at] = part {
        let key: &str = keys[*at].as_ref();
        let outcome = match op {
            Op::Get => client.get(key),
            Op::Set { values, ttl } => client.set_with_ttl(key, &values[*at], *ttl).map(|()| None),
            Op::Delete => client.delete(key).map(|()| None),
        };
        return match outcome {
            Err(error) if is_server_failure(&error) => Err(error),
            other => Ok(vec![other]),
        };
    }
    let chosen = part.iter().map(|&at| -> &str { keys[at].as_ref() });
    let outcome = match op {
        Op::Get => client
            .get_many(chosen)
            .map(|items| items.into_iter().map(|item| item.result).collect()),
        Op::Set { values, ttl } => client
            .set_many_with_ttl(
                part.iter()
                    .map(|&at| -> (&str, &Bytes) { (keys[at].as_ref(), &values[at]) }),
                *ttl,
            )
            .map(done),
        Op::Delete => client.delete_many(chosen).map(done),
    };
    match outcome {
        Err(error) if is_server_failure(&error) => Err(error),
        // The whole part refused (too many keys, say): each key fails.
        Err(refused) => Ok(part.iter().map(|_| Err(refused.clone())).collect()),
        Ok(outcomes) => Ok(outcomes),
    }
}

/// One server's part of `op` as a request: a single-key call for one key,
/// a multi-key call otherwise (as [`run_part`] makes it). `items` are a
/// write's keys and values, empty for other operations.
fn part_request<'r>(
    op: &Op,
    chosen: &'r [&'r str],
    items: &'r [(&'r str, &'r [u8])],
) -> Request<'r> {
    match (op, chosen, items) {
        (Op::Get, [key], _) => Request::Get(key),
        (Op::Delete, [key], _) => Request::Delete(key),
        (Op::Set { ttl, .. }, _, [(key, value)]) => Request::Set(key, value, *ttl),
        (Op::Get, keys, _) => Request::GetMany(keys),
        (Op::Delete, keys, _) => Request::DeleteMany(keys),
        (Op::Set { ttl, .. }, _, items) => Request::SetMany(items, *ttl),
    }
}

/// A part's answer as one outcome per key, with [`run_part`]'s reading of
/// errors: a server failure fails the part, any other refusal each key.
fn part_outcome(answered: Result<Answered>, keys: usize) -> Result<Vec<KeyOutcome>> {
    match answered {
        Ok(Answered::Value(value)) => Ok(vec![Ok(value)]),
        Ok(Answered::Done) => Ok(vec![Ok(None)]),
        Ok(Answered::Values(items)) => Ok(items.into_iter().map(|item| item.result).collect()),
        Ok(Answered::Items(items)) => Ok(done(items)),
        Ok(Answered::Inserted(_) | Answered::Swapped(_)) => Err(Error::Protocol {
            code: crate::Code::Internal,
            message: "a replicated part answered as a conditional write".into(),
        }),
        Err(error) if is_server_failure(&error) => Err(error),
        Err(refused) => Ok((0..keys).map(|_| Err(refused.clone())).collect()),
    }
}

pub(super) fn done(items: Vec<ItemResult<()>>) -> Vec<KeyOutcome> {
    items
        .into_iter()
        .map(|item| item.result.map(|()| None))
        .collect()
}

/// Back to the per-item form of the caller's multi-key call.
pub(super) fn per_item<T>(keys: &[&str], outcomes: Vec<Result<T>>) -> Vec<ItemResult<T>> {
    keys.iter()
        .zip(outcomes)
        .map(|(key, outcome)| ItemResult::new(key, outcome))
        .collect()
}

pub(super) fn no_servers() -> Error {
    Error::Unavailable(
        "no server of the cluster is reachable: every one is marked down or failed \
         (see Cluster::servers)"
            .into(),
    )
}

/// What is left of the deadline, or the error a call that ran out gets.
pub(super) fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(late(timeout))
    } else {
        Ok(left)
    }
}

pub(super) fn late(timeout: Duration) -> Error {
    Error::DeadlineExceeded(
        format!(
            "the cluster call's {timeout:?} ran out before every replica was asked \
             (ClusterBuilder::timeout, or Cluster::with_timeout for one call)"
        )
        .into(),
    )
}

/// When one server's part of a call must end.
#[derive(Debug, Clone, Copy)]
pub(super) enum PartDeadline {
    /// The first round with nothing left to fall back on: the server's
    /// client uses its own timeout (the cluster's), no per-call handle.
    Own,
    /// No later than this.
    By(Instant),
    /// The call's deadline has passed.
    Passed,
}

impl PartDeadline {
    /// The part's share of what is left before `deadline`, when `spare`
    /// more servers may still have to be asked after this round: an equal
    /// share for this round and each of those.
    pub(super) fn share(
        deadline: Instant,
        spare: usize,
        first_round: bool,
        timeout: Duration,
    ) -> PartDeadline {
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left.is_zero() {
            return PartDeadline::Passed;
        }
        if spare == 0 {
            // The server's own timeout is the cluster's: in the first round
            // it ends with the call.
            return if first_round && left + Duration::from_millis(1) >= timeout {
                PartDeadline::Own
            } else {
                PartDeadline::By(deadline)
            };
        }
        let rounds = u32::try_from(spare + 1).unwrap_or(u32::MAX);
        PartDeadline::By(now + left / rounds)
    }
}

/// One server's part of a call, by `deadline`. `None` when no time was
/// left to send it (which says nothing of the server's health).
pub(super) fn send_part<K: AsRef<str>>(
    node: &Node,
    op: &Op,
    keys: &[K],
    part: &[usize],
    deadline: PartDeadline,
) -> Option<Result<Vec<KeyOutcome>>> {
    let by = match deadline {
        PartDeadline::Own => return Some(run_part(&node.client, op, keys, part)),
        PartDeadline::Passed => return None,
        PartDeadline::By(by) => by,
    };
    let left = by.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    Some(
        node.client
            .with_timeout(left)
            .and_then(|client| run_part(&client, op, keys, part)),
    )
}

/// A stale replica to rewrite after a read.
pub(super) struct Repair {
    /// The server.
    index: usize,
    /// The key's position in the call.
    at: usize,
    /// What the server answered: the repair replaces exactly this.
    seen: Option<Copy>,
    /// The newest copy the read found.
    newest: Copy,
}

/// Stores `newest` for `key` unless the server holds a copy at least as
/// new: a compare-and-set against the copy believed to be there (`seen`,
/// or read first when `None` is not known to be a miss), read again after
/// each lost race, at most [`TOUCH_ATTEMPTS`] times. Another writer that
/// keeps winning the race is newer, so giving up then loses nothing.
pub(super) fn store_if_newer(
    client: &Client,
    key: &str,
    newest: &Copy,
    seen: Option<Copy>,
    ttl: Ttl,
) -> Result<()> {
    let mut current = match seen {
        Some(copy) => Some(copy),
        None => client.get(key)?.map(Copy::parse),
    };
    for _ in 0..TOUCH_ATTEMPTS {
        let stored = match &current {
            Some(copy) if !newest.is_newer_than(copy) => return Ok(()),
            Some(copy) => {
                client.compare_and_set_with_ttl(key, &copy.raw, &newest.raw, ttl)?
                    == CasOutcome::Stored
            }
            None => client.set_if_absent_with_ttl(key, &newest.raw, ttl)?,
        };
        if stored {
            return Ok(());
        }
        current = client.get(key)?.map(Copy::parse);
    }
    Ok(())
}

/// Writes `raw` over the tombstone `key` holds, if it holds one: whether
/// it did (another value, or a lost race, leaves the key as it is).
fn replace_tombstone(client: &Client, key: &str, raw: &[u8], ttl: Ttl) -> Result<bool> {
    match client.get(key)? {
        Some(held) if envelope::is_tombstone(&held) => {
            Ok(client.compare_and_set_with_ttl(key, &held, raw, ttl)? == CasOutcome::Stored)
        }
        _ => Ok(false),
    }
}

/// A touch of one replica's enveloped copy: a new expiry, the same write
/// time, by compare-and-set so a concurrent write is never undone.
pub(super) fn touch_copy(
    client: &Client,
    key: &str,
    ttl: Ttl,
    deadline: Instant,
    timeout: Duration,
) -> Result<bool> {
    crate::store::touch_by_cas(
        key,
        ttl,
        || client.with_timeout(remaining(deadline, timeout)?),
        |raw| {
            let copy = Copy::parse(raw.clone());
            // A tombstone is a deleted key: nothing to touch.
            (!copy.deleted).then(|| envelope::reseal(&copy, ttl, SystemTime::now()))
        },
    )
}
