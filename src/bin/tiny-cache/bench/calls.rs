//! The calls `bench` makes, through the crate's store trait: the benchmark
//! knows what it asks, not what it asks it of. A `Client` is one target, a
//! `Cluster` of many servers another. With `--pipeline`, a thread's calls
//! go out together as one of the crate's pipelines ([`perform_pipeline`]).

use bytes::Bytes;
use tiny_cache_client::pipeline::{self, Pipeline};
use tiny_cache_client::{CacheStore, CasOutcome, Error, ItemResult, Ttl};

use super::workload::Op;

/// The TTL `touch` sets: the client's default TTL, so a touched key lives
/// as long as a freshly written one.
pub const TOUCH_TTL: Ttl = Ttl::After(tiny_cache_client::DEFAULT_TTL);

/// What one successful call found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Keys that were there (for the operations that can tell).
    pub hits: u64,
    /// Keys that were not.
    pub misses: u64,
    /// Keys of a multi-key call that the server refused on their own.
    pub refused: u64,
}

/// Makes one `op` call over `items` (one key and its value, or `--batch`
/// of them for the multi-key operations; never empty).
///
/// A compare-and-set expects the key's own value, which is what the key
/// holds unless something else wrote it: a present key is stored again, a
/// missing one is a miss.
pub fn perform(calls: &dyn CacheStore, op: Op, items: &[(&str, &[u8])]) -> Result<Outcome, Error> {
    let Some(&(key, value)) = items.first() else {
        return Ok(Outcome::default());
    };
    let found = |there: bool| Outcome {
        hits: u64::from(there),
        misses: u64::from(!there),
        refused: 0,
    };
    let keys = || items.iter().map(|&(key, _)| key).collect::<Vec<_>>();
    Ok(match op {
        Op::Get => found(calls.get(key)?.is_some()),
        Op::Set => calls.set(key, value).map(|()| Outcome::default())?,
        Op::Delete => calls.delete(key).map(|()| Outcome::default())?,
        Op::SetIfAbsent => found(!calls.set_if_absent(key, value)?),
        Op::CompareAndSet => {
            found(calls.compare_and_set(key, value, value)? != CasOutcome::NotFound)
        }
        Op::Touch => found(calls.touch(key, TOUCH_TTL)?),
        Op::GetMany => {
            let mut outcome = Outcome::default();
            for item in calls.get_many(&keys())? {
                match item.result {
                    Ok(Some(_)) => outcome.hits += 1,
                    Ok(None) => outcome.misses += 1,
                    Err(_) => outcome.refused += 1,
                }
            }
            outcome
        }
        Op::SetMany => refusals(calls.set_many(items)?),
        Op::DeleteMany => refusals(calls.delete_many(&keys())?),
    })
}

/// One operation of a pipelined call: what is asked of which key, with the
/// key's value (for the writes, and as a compare-and-set's expectation).
#[derive(Debug, Clone)]
pub struct Part<'a> {
    pub op: Op,
    pub key: &'a str,
    pub value: Bytes,
}

impl Part<'_> {
    /// The library's form of it; `None` for what a pipeline cannot carry
    /// (see [`Op::pipelines`]).
    fn to_pipeline_op(&self) -> Option<pipeline::Op> {
        let (key, value) = (self.key.to_owned(), self.value.clone());
        Some(match self.op {
            Op::Get => pipeline::Op::Get { key },
            Op::Set => pipeline::Op::Set {
                key,
                value,
                ttl: None,
            },
            Op::Delete => pipeline::Op::Delete { key },
            Op::SetIfAbsent => pipeline::Op::SetIfAbsent {
                key,
                value,
                ttl: None,
            },
            // As in `perform`: the key's own value is the expectation.
            Op::CompareAndSet => pipeline::Op::CompareAndSet {
                key,
                expected: value.clone(),
                value,
                ttl: None,
            },
            Op::Touch | Op::GetMany | Op::SetMany | Op::DeleteMany => return None,
        })
    }
}

/// Makes `parts` as one pipeline (sent together, waited for once) and
/// returns each one's result, in order, read as [`perform`] reads the same
/// operation made alone.
///
/// `bench` refuses a mix a pipeline cannot carry before it starts; should
/// such a part come here all the same, it fails on its own as a validation
/// error and the others still run.
pub fn perform_pipeline(calls: &dyn CacheStore, parts: &[Part<'_>]) -> Vec<Result<Outcome, Error>> {
    let mut carried = Vec::with_capacity(parts.len());
    let mut pipeline = Pipeline::on(calls);
    for part in parts {
        let op = part.to_pipeline_op();
        carried.push(op.is_some());
        if let Some(op) = op {
            pipeline = pipeline.push(op);
        }
    }
    let mut answers = pipeline.run_each().into_iter();
    parts
        .iter()
        .zip(carried)
        .map(|(part, carried)| {
            if !carried {
                return Err(Error::Validation(format!(
                    "{} cannot be pipelined",
                    part.op.name()
                )));
            }
            // run_each answers every operation it was given, in order.
            let answer = answers
                .next()
                .unwrap_or_else(|| Err(Error::Validation("the pipeline lost an answer".into())));
            answer.map(read_answer)
        })
        .collect()
}

/// What a pipelined operation's answer found, as [`perform`] counts it.
fn read_answer(answer: pipeline::Outcome) -> Outcome {
    let found = |there: bool| Outcome {
        hits: u64::from(there),
        misses: u64::from(!there),
        refused: 0,
    };
    match answer {
        pipeline::Outcome::Value(value) => found(value.is_some()),
        pipeline::Outcome::Inserted(stored) => found(!stored),
        pipeline::Outcome::Swapped(outcome) => found(outcome != CasOutcome::NotFound),
        pipeline::Outcome::Stored | pipeline::Outcome::Deleted => Outcome::default(),
    }
}

fn refusals(items: Vec<ItemResult<()>>) -> Outcome {
    Outcome {
        refused: items.iter().filter(|item| item.result.is_err()).count() as u64,
        ..Outcome::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_cache_client::server::Server;
    use tiny_cache_client::Client;

    #[test]
    fn every_operation_reports_what_it_found_on_a_real_server() {
        let server = Server::local().unwrap();
        let client = Client::new(&server.address()).unwrap();
        let calls: &dyn CacheStore = &client;
        let value: &[u8] = b"v";
        let one = |key| [(key, value)];
        let hit = Outcome {
            hits: 1,
            ..Outcome::default()
        };
        let miss = Outcome {
            misses: 1,
            ..Outcome::default()
        };
        assert_eq!(perform(calls, Op::Get, &one("a")).unwrap(), miss);
        assert_eq!(perform(calls, Op::SetIfAbsent, &one("a")).unwrap(), miss);
        assert_eq!(perform(calls, Op::SetIfAbsent, &one("a")).unwrap(), hit);
        assert_eq!(perform(calls, Op::Get, &one("a")).unwrap(), hit);
        assert_eq!(perform(calls, Op::CompareAndSet, &one("a")).unwrap(), hit);
        assert_eq!(perform(calls, Op::CompareAndSet, &one("b")).unwrap(), miss);
        assert_eq!(perform(calls, Op::Touch, &one("a")).unwrap(), hit);
        let both = [("a", value), ("b", value)];
        let get_many = perform(calls, Op::GetMany, &both).unwrap();
        assert_eq!((get_many.hits, get_many.misses), (1, 1));
        assert_eq!(
            perform(calls, Op::SetMany, &both).unwrap(),
            Outcome::default()
        );
        let refused = perform(calls, Op::SetMany, &[("", value), ("c", value)]).unwrap();
        assert_eq!(refused.refused, 1);
        assert_eq!(
            perform(calls, Op::DeleteMany, &both).unwrap(),
            Outcome::default()
        );
        assert_eq!(
            perform(calls, Op::Set, &one("d")).unwrap(),
            Outcome::default()
        );
        assert_eq!(
            perform(calls, Op::Delete, &one("d")).unwrap(),
            Outcome::default()
        );
        assert_eq!(perform(calls, Op::Get, &one("d")).unwrap(), miss);
    }

    #[test]
    fn a_pipeline_reads_as_the_same_calls_made_alone() {
        let server = Server::local().unwrap();
        let client = Client::new(&server.address()).unwrap();
        let calls: &dyn CacheStore = &client;
        client.set("there", "v").unwrap();
        let part = |op, key| Part {
            op,
            key,
            value: Bytes::from_static(b"v"),
        };
        let hit = Outcome {
            hits: 1,
            ..Outcome::default()
        };
        let miss = Outcome {
            misses: 1,
            ..Outcome::default()
        };
        // The operations of one pipeline may apply in any order: none of
        // these changes what another finds.
        let results = perform_pipeline(
            calls,
            &[
                part(Op::Get, "there"),
                part(Op::Get, "absent"),
                part(Op::SetIfAbsent, "new"),
                part(Op::SetIfAbsent, "there"),
                part(Op::CompareAndSet, "there"),
                part(Op::CompareAndSet, "also-absent"),
                part(Op::Touch, "there"),
                part(Op::Set, "written"),
                part(Op::Delete, "gone"),
            ],
        );
        let results: Vec<_> = results.into_iter().map(Result::ok).collect();
        assert_eq!(
            results,
            [
                Some(hit),
                Some(miss),
                Some(miss),
                Some(hit),
                Some(hit),
                Some(miss),
                None,
                Some(Outcome::default()),
                Some(Outcome::default()),
            ]
        );
        assert!(client.get("new").unwrap().is_some());
        assert!(client.get("written").unwrap().is_some());
    }
}
