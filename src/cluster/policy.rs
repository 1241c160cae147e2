//! How the answers of a key's servers combine into the answer of a call:
//! one explicit policy per kind of call, and one record of what each key
//! has heard so far, shared by reads and writes. The engine's round loop
//! asks each key's servers in rank order until its policy has what it
//! needs or no server is left.

use super::engine::no_servers;
use super::envelope::Copy;
use crate::Error;

/// How many of a key's replicas must answer, and what their answers make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResponsePolicy {
    /// A read: each key's `needed` replicas answer (the read quorum, or
    /// every replica for a key read for its newest copy or whose server
    /// is recovering); the newest copy wins; with several replicas, a miss
    /// from every one asked is confirmed with the others, one of which may
    /// hold what a restarted replica lost.
    Newest,
    /// A write, acknowledged once any replica stored it (a home server
    /// that missed it gets a hint).
    AnyStored,
    /// A write acknowledged only when every replica stored it: a delete
    /// (a replica that missed it may still serve the value), or a write
    /// that no reader of any copy may miss.
    AllStored,
}

/// What one key of a call has heard from its servers so far.
pub(super) struct Replies {
    /// The key's servers to ask, best first.
    pub(super) candidates: Vec<usize>,
    /// The key's home servers, whatever their health: the ones that must
    /// end up with every acknowledged write.
    pub(super) home: Vec<usize>,
    /// The next candidate to ask.
    pub(super) next: usize,
    /// Answers, by server: a read's copy (a hint standing in for asking
    /// a hinted server), `None` for a miss or a stored write.
    pub(super) answers: Vec<(usize, Option<Copy>)>,
    /// Answers needed (reads; writes need every replica).
    pub(super) needed: usize,
    /// The last server failure met.
    pub(super) error: Option<Error>,
    /// A server's refusal of the key itself: final, nobody else is asked.
    pub(super) refused: Option<Error>,
}

impl Replies {
    pub(super) fn new(candidates: Vec<usize>, home: Vec<usize>, needed: usize) -> Replies {
        Replies {
            candidates,
            home,
            next: 0,
            answers: Vec::new(),
            needed,
            error: None,
            refused: None,
        }
    }

    /// The servers that answered (for a write: stored it).
    pub(super) fn answered_by(&self) -> impl Iterator<Item = usize> + '_ {
        self.answers.iter().map(|(index, _)| *index)
    }

    /// How many more servers this key wants asked under `policy`.
    pub(super) fn wanted(&self, policy: ResponsePolicy, replicas: usize) -> usize {
        if self.refused.is_some() {
            return 0;
        }
        let answered = self.answers.len();
        match policy {
            ResponsePolicy::Newest => {
                // A tombstone counts as a miss: a write newer than the
                // delete may sit on a replica not asked yet.
                let all_missed = self
                    .answers
                    .iter()
                    .all(|(_, copy)| copy.as_ref().is_none_or(|copy| copy.deleted));
                if answered < self.needed {
                    self.needed - answered
                } else if replicas > 1 && all_missed && answered < replicas {
                    replicas - answered
                } else {
                    0
                }
            }
            ResponsePolicy::AnyStored | ResponsePolicy::AllStored => {
                replicas.saturating_sub(answered)
            }
        }
    }

    /// The next `wanted` candidates to ask, marked as asked.
    pub(super) fn take(&mut self, wanted: usize) -> &[usize] {
        let from = self.next;
        self.next += wanted.min(self.candidates.len() - from);
        &self.candidates[from..self.next]
    }

    /// Candidates not asked yet.
    pub(super) fn spare(&self) -> usize {
        self.candidates.len() - self.next
    }

    /// A write's answer under `policy`: a refusal is final; a failure
    /// fails it unless the policy is content with the replicas that
    /// stored it.
    pub(super) fn write_outcome(&self, policy: ResponsePolicy) -> Result<(), Error> {
        let partial_ok = policy == ResponsePolicy::AnyStored;
        match (&self.refused, &self.error) {
            (Some(refused), _) => Err(refused.clone()),
            (None, Some(error)) if !partial_ok || self.answers.is_empty() => Err(error.clone()),
            (None, _) if self.answers.is_empty() => Err(no_servers()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(candidates: usize, needed: usize) -> Replies {
        Replies::new((0..candidates).collect(), (0..candidates).collect(), needed)
    }

    #[test]
    fn a_read_asks_its_quorum_then_confirms_a_miss_with_the_other_replicas() {
        let mut read = replies(3, 1);
        assert_eq!(read.wanted(ResponsePolicy::Newest, 2), 1);
        assert_eq!(read.take(1), &[0]);
        read.answers.push((0, None));
        // A miss with R = 2: the other replica may hold what this one lost.
        assert_eq!(read.wanted(ResponsePolicy::Newest, 2), 1);
        // With R = 1 there is nobody to confirm with.
        assert_eq!(read.wanted(ResponsePolicy::Newest, 1), 0);
        read.refused = Some(Error::InvalidArgument("bad key".into()));
        assert_eq!(read.wanted(ResponsePolicy::Newest, 2), 0);
    }

    #[test]
    fn a_write_any_stored_tolerates_a_failed_replica_and_all_stored_does_not() {
        let mut write = replies(2, 2);
        assert_eq!(write.wanted(ResponsePolicy::AnyStored, 2), 2);
        assert_eq!(write.take(5), &[0, 1], "never more than the candidates");
        assert_eq!(write.spare(), 0);
        write.answers.push((0, None));
        write.error = Some(Error::Unavailable("down".into()));
        assert_eq!(write.write_outcome(ResponsePolicy::AnyStored), Ok(()));
        assert!(write.write_outcome(ResponsePolicy::AllStored).is_err());
        let nobody = replies(2, 2);
        assert!(matches!(
            nobody.write_outcome(ResponsePolicy::AnyStored),
            Err(Error::Unavailable(_))
        ));
    }
}
