//! One trait for every front door: a function written once over
//! `&impl CacheStore` takes a `Client`, a `Cluster`, a `NearCache` over
//! either, and a `ReadThrough`, each against real servers, and every
//! operation of the trait means the same through each of them.

#![cfg(all(feature = "server", feature = "cluster", feature = "near-cache"))]

use std::time::Duration;

use tiny_cache_client::cache::{NearCache, ReadThrough};
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;
use tiny_cache_client::{CacheStore, CasOutcome, Client, Code, Error, Ttl};

const TTL: Ttl = Ttl::After(Duration::from_secs(60));

/// Fills a store the way a program warming its cache would.
fn warm(store: &impl CacheStore, prefix: &str) -> tiny_cache_client::Result<()> {
    store.set_with_ttl(&format!("{prefix}config"), b"{}", TTL)?;
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let written = store.set_many(&[(&a, b"1"), (&b, b"2")])?;
    assert!(
        written.iter().all(|item| item.result.is_ok()),
        "{written:?}"
    );
    Ok(())
}

/// Every operation of the trait, with what each must answer.
fn exercise(store: &dyn CacheStore, prefix: &str) {
    let key = |name: &str| format!("{prefix}{name}");
    warm(&store, prefix).unwrap();
    assert_eq!(store.get(&key("a")).unwrap().as_deref(), Some(&b"1"[..]));
    let found = store
        .get_many(&[&key("a"), &key("b"), &key("none")])
        .unwrap();
    let values: Vec<_> = found.iter().map(|item| item.result.clone()).collect();
    assert_eq!(
        values,
        [Ok(Some("1".into())), Ok(Some("2".into())), Ok(None)],
        "{found:?}"
    );
    assert_eq!(found[2].key, key("none"), "items carry their key");

    assert!(store.set_if_absent(&key("lock"), b"me").unwrap());
    assert!(!store.set_if_absent(&key("lock"), b"you").unwrap());
    assert_eq!(
        store.compare_and_set(&key("lock"), b"me", b"next").unwrap(),
        CasOutcome::Stored
    );
    assert_eq!(
        store
            .compare_and_set(&key("lock"), b"me", b"again")
            .unwrap(),
        CasOutcome::Mismatch
    );
    assert_eq!(
        store.get(&key("lock")).unwrap().as_deref(),
        Some(&b"next"[..])
    );
    assert!(store.touch(&key("lock"), TTL).unwrap());
    assert!(!store.touch(&key("none"), TTL).unwrap());

    store.delete(&key("a")).unwrap();
    assert_eq!(store.get(&key("a")).unwrap(), None);
    let deleted = store.delete_many(&[&key("b"), &key("lock")]).unwrap();
    assert!(
        deleted.iter().all(|item| item.result.is_ok()),
        "{deleted:?}"
    );
    assert_eq!(store.get(&key("b")).unwrap(), None);

    // An invalid key fails alone, as the crate's typed error (the
    // server's refusal, or a cluster's own before it picks a server).
    let refused = store.get_many(&[&key("config"), ""]).unwrap();
    assert!(refused[0].result.is_ok(), "{refused:?}");
    let code = refused[1].result.as_ref().map_err(Error::code).err();
    assert_eq!(code, Some(Code::InvalidArgument), "{refused:?}");
}

fn cluster_of(servers: &[&Server]) -> Cluster {
    let mut builder = Cluster::builder();
    for server in servers {
        builder = builder.server(&server.address());
    }
    builder.build().unwrap()
}

#[test]
fn the_remote_stores_are_handles_to_share_between_threads() {
    fn shareable<T: CacheStore + Clone + Send + Sync + 'static>() {}
    shareable::<Client>();
    shareable::<Cluster>();
}

#[test]
fn one_function_takes_a_client_a_cluster_a_near_cache_over_either_and_a_read_through() {
    let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
    let client = Client::new(&a.address()).unwrap();
    let cluster = cluster_of(&[&a, &b]);

    warm(&client, "client:").unwrap();
    warm(&cluster, "cluster:").unwrap();
    warm(&NearCache::new(client.clone()), "near-client:").unwrap();
    warm(&NearCache::new(cluster.clone()), "near-cluster:").unwrap();
    warm(&ReadThrough::new(client.clone()), "read-through:").unwrap();
    warm(
        &ReadThrough::new(NearCache::new(cluster.clone())),
        "stacked:",
    )
    .unwrap();

    // Each went where its store puts it: one server, or the cluster.
    for prefix in ["client:", "near-client:", "read-through:"] {
        let value = client.get(&format!("{prefix}b")).unwrap();
        assert_eq!(value.as_deref(), Some(&b"2"[..]), "{prefix}");
    }
    for prefix in ["cluster:", "near-cluster:", "stacked:"] {
        let value = cluster.get(&format!("{prefix}b")).unwrap();
        assert_eq!(value.as_deref(), Some(&b"2"[..]), "{prefix}");
    }
}

#[test]
fn every_operation_means_the_same_through_every_store() {
    let (a, b) = (Server::local().unwrap(), Server::local().unwrap());
    let client = Client::new(&a.address()).unwrap();
    let cluster = cluster_of(&[&a, &b]);
    let stores: Vec<(&str, Box<dyn CacheStore>)> = vec![
        ("client", Box::new(client.clone())),
        ("cluster", Box::new(cluster.clone())),
        ("near-client", Box::new(NearCache::new(client.clone()))),
        ("near-cluster", Box::new(NearCache::new(cluster.clone()))),
        ("read-through", Box::new(ReadThrough::new(client.clone()))),
        (
            "read-through-near",
            Box::new(ReadThrough::new(NearCache::new(cluster))),
        ),
    ];
    for (name, store) in &stores {
        exercise(store.as_ref(), &format!("{name}:"));
    }
}

#[test]
fn a_near_cache_drops_its_copy_on_every_write_it_forwards() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    let near = NearCache::new(client.clone());
    near.set("k", "one").unwrap();
    assert_eq!(near.peek("k").as_deref(), Some(&b"one"[..]));

    // A conditional write, a touch and a batch write through the layer
    // each leave no local copy that could be older than the server's.
    let writes: [(&str, &dyn Fn()); 3] = [
        ("compare_and_set", &|| {
            CacheStore::compare_and_set(&near, "k", b"one", b"two").unwrap();
        }),
        ("touch", &|| {
            CacheStore::touch(&near, "k", TTL).unwrap();
        }),
        ("set_many", &|| {
            CacheStore::set_many(&near, &[("k", b"three")]).unwrap();
        }),
    ];
    for (name, write) in writes {
        near.get("k").unwrap();
        assert!(near.peek("k").is_some(), "{name}: read kept locally");
        write();
        assert_eq!(near.peek("k"), None, "{name} left a local copy");
    }
    assert_eq!(near.get("k").unwrap().as_deref(), Some(&b"three"[..]));
}

#[test]
fn a_store_of_your_own_gets_every_operation_and_refuses_compare_and_set_plainly() {
    use std::collections::HashMap;
    use std::sync::Mutex;

    #[derive(Default)]
    struct MapStore(Mutex<HashMap<String, bytes::Bytes>>);
    impl CacheStore for MapStore {
        fn get(&self, key: &str) -> tiny_cache_client::Result<Option<bytes::Bytes>> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn set_with_ttl(&self, key: &str, value: &[u8], _: Ttl) -> tiny_cache_client::Result<()> {
            let value = bytes::Bytes::copy_from_slice(value);
            self.0.lock().unwrap().insert(key.to_owned(), value);
            Ok(())
        }
        fn delete(&self, key: &str) -> tiny_cache_client::Result<()> {
            self.0.lock().unwrap().remove(key);
            Ok(())
        }
    }

    let store = MapStore::default();
    warm(&store, "").unwrap();
    assert_eq!(store.get("b").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(!store.set_if_absent("a", b"x").unwrap());
    assert_eq!(
        store.compare_and_set("a", b"1", b"2"),
        Err(Error::Unsupported {
            operation: "compare_and_set"
        })
    );
    // Behind a near cache it is still a store.
    warm(&NearCache::new(store), "again:").unwrap();
}
