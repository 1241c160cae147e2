//! The calls `bench` makes, through the crate's store trait: the benchmark
//! knows what it asks, not what it asks it of. A `Client` is one target, a
//! `Cluster` of many servers another.

use tiny_cache_client::{CacheStore, CasOutcome, Error, ItemResult, Ttl};

use super::workload::Op;

/// The TTL `touch` sets: the client's default TTL, so a touched key lives
/// as long as a freshly written one.
const TOUCH_TTL: Ttl = Ttl::After(tiny_cache_client::DEFAULT_TTL);

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
}
