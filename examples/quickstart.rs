//! Every operation once, against an embedded server started in-process.
//!
//! Run with: `cargo run --example quickstart --features server`

use std::time::Duration;

use tiny_cache_client::server::Server;
use tiny_cache_client::{CasOutcome, Client, Error, Ttl};

fn main() -> Result<(), Error> {
    let server = Server::local()?;
    println!("embedded server on {}", server.address());

    let client = Client::builder(&server.address())
        .timeout(Duration::from_secs(2))
        .namespace("example")
        .build()?;

    client.set("greeting", "hello")?;
    client.set_with_ttl("otp", "123456", Duration::from_secs(30))?;
    client.set_with_ttl("motd", "be kind", Ttl::Never)?;
    println!("greeting = {:?}", client.get_string("greeting")?);

    println!("lock taken: {}", client.set_if_absent("lock", "worker-1")?);
    println!(
        "lock taken again: {}",
        client.set_if_absent("lock", "worker-2")?
    );
    let handover = client.compare_and_set("lock", "worker-1", "worker-2")?;
    assert_eq!(handover, CasOutcome::Stored);

    for item in client.get_many(["greeting", "missing", ""])? {
        println!("get_many {:?} -> {:?}", item.key, item.result);
    }
    for item in client.set_many([("a", "1"), ("b", "2")])? {
        println!("set_many {:?} -> {:?}", item.key, item.result);
    }
    client.delete_many(["a", "b"])?;

    match client.get(&"k".repeat(300)) {
        Err(Error::Validation(why)) => println!("refused before any I/O: {why}"),
        other => println!("unexpected: {other:?}"),
    }

    let traced = client.with_request_id("example-1")?;
    traced.delete("otp")?;

    let stats = client.stats()?;
    println!(
        "{} entries, {} hits, {} misses, round trip {:?}",
        stats.size,
        stats.hits,
        stats.misses,
        client.ping()?
    );
    Ok(())
}
