//! One function over the store trait, given every kind of store the crate
//! has: a `Client`, a `Cluster`, a `NearCache` over either, and a
//! `ReadThrough`. Runs against embedded servers:
//!
//! ```text
//! cargo run --example warm --features server,cluster,near-cache
//! ```

use std::time::Duration;

use tiny_cache_client::cache::{NearCache, ReadThrough};
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;
use tiny_cache_client::{CacheStore, Client, Result, Ttl};

/// Puts what every request will need into the cache, whatever the cache is.
fn warm(store: &impl CacheStore) -> Result<usize> {
    let ttl = Ttl::After(Duration::from_secs(300));
    store.set_with_ttl("config:flags", br#"{"beta":true}"#, ttl)?;
    let countries: [(&str, &[u8]); 3] = [
        ("country:fr", b"France"),
        ("country:de", b"Germany"),
        ("country:it", b"Italy"),
    ];
    let written = store.set_many_with_ttl(&countries, ttl)?;
    Ok(1 + written.iter().filter(|item| item.result.is_ok()).count())
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let (a, b) = (Server::local()?, Server::local()?);
    let client = Client::new(&a.address())?;
    let cluster = Cluster::builder()
        .server(&a.address())
        .server(&b.address())
        .build()?;

    println!("client:               {} entries", warm(&client)?);
    println!("cluster:              {} entries", warm(&cluster)?);
    println!(
        "near cache (client):  {} entries",
        warm(&NearCache::new(client.clone()))?
    );
    println!(
        "near cache (cluster): {} entries",
        warm(&NearCache::new(cluster.clone()))?
    );
    println!(
        "read-through:         {} entries",
        warm(&ReadThrough::new(client.clone()))?
    );

    // And the same through a trait object, for a program that picks its
    // store at run time.
    let chosen: Box<dyn CacheStore> = Box::new(NearCache::new(cluster));
    println!("chosen at run time:   {} entries", warm(&chosen)?);
    assert_eq!(client.get("country:it")?.as_deref(), Some(&b"Italy"[..]));
    Ok(())
}
