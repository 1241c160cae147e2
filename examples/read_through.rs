//! The caching layer against an embedded server started in-process: typed
//! read-through, single flight under a stampede, and the near cache.
//!
//! Run with: `cargo run --example read_through --features server,serde,near-cache`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tiny_cache_client::cache::{Json, NearCache, ReadThrough, TypedCache};
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Product {
    id: u32,
    name: String,
    price_cents: u64,
}

/// The slow thing the cache is in front of.
fn query_database(id: u32, queries: &AtomicUsize) -> Product {
    queries.fetch_add(1, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    Product {
        id,
        name: format!("product {id}"),
        price_cents: 1999,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = Server::local()?;
    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .namespace("example")
        .build()?;

    // Remote cache, with an in-process near cache in front, read through
    // with single flight, values as JSON; an outage of the cache server
    // would not fail a read.
    let near = NearCache::builder(client.clone())
        .max_entries(10_000)
        .local_ttl(Duration::from_secs(5))
        .build();
    let layer = ReadThrough::builder(near).fail_open(true).build();
    let products = TypedCache::new(layer, Json);
    let queries = Arc::new(AtomicUsize::new(0));

    // A stampede: 32 threads want the same cold product at once.
    let started = Instant::now();
    let threads: Vec<_> = (0..32)
        .map(|_| {
            let (products, queries) = (products.clone(), Arc::clone(&queries));
            thread::spawn(move || {
                products.get_with("product:42", Duration::from_secs(300), || {
                    query_database(42, &queries)
                })
            })
        })
        .collect();
    for thread in threads {
        let product = thread.join().expect("no panic")?;
        assert_eq!(product.id, 42);
    }
    println!(
        "32 concurrent readers, {} database query, {:?}",
        queries.load(Ordering::SeqCst),
        started.elapsed()
    );

    // Repeats are answered in process, without the network.
    let started = Instant::now();
    for _ in 0..1000 {
        products.get_with("product:42", Duration::from_secs(300), || {
            query_database(42, &queries)
        })?;
    }
    println!("1000 repeats in {:?}", started.elapsed());

    // Our own writes invalidate the near cache.
    let mut product: Product = products.get("product:42")?.expect("cached");
    product.price_cents = 1499;
    products.set_with_ttl("product:42", &product, Duration::from_secs(300))?;
    let reread: Product = products.get("product:42")?.expect("cached");
    println!("after our update: {} cents", reread.price_cents);

    // A memoized function.
    let shipping = products.memoize(
        "shipping",
        Duration::from_secs(60),
        |&(from, to): &(u8, u8)| u64::from(from.abs_diff(to)) * 250,
    );
    println!("shipping 3 -> 9: {} cents", shipping.call(&(3, 9))?);

    println!("read-through layer: {:?}", products.local_stats());
    println!("near cache: {:?}", products.store().store().local_stats());
    println!("server: {:?}", client.stats()?);
    Ok(())
}
