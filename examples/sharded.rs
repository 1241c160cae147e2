//! Three embedded servers behind one `Cluster`: placement, replicas, a
//! server killed and its keys served by the others.
//!
//! Run with `cargo run --example sharded --features server,cluster`.

use std::time::Duration;

use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::Server;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Three servers in this process, each on its own loopback port.
    let mut servers = vec![Server::local()?, Server::local()?, Server::local()?];
    let cluster = servers
        .iter()
        .fold(Cluster::builder(), |builder, server| {
            builder.server(&server.address())
        })
        .replicas(2) // every key on its two best-ranked servers
        .timeout(Duration::from_secs(2))
        .cool_down(Duration::from_millis(500))
        .build()?;

    for i in 0..1000 {
        cluster.set(&format!("user:{i}"), format!("profile {i}"))?;
    }
    println!("user:7 lives on {:?}", cluster.owners("user:7"));

    let found = cluster.get_many(["user:1", "user:2", "nobody"])?;
    for item in &found {
        println!("{} -> {:?}", item.key, item.result);
    }

    // Kill one server: every key still has a copy on another.
    let victim = servers.remove(0);
    let victim_address = victim.address();
    victim.kill();
    let mut served = 0;
    for i in 0..1000 {
        if cluster.get(&format!("user:{i}"))?.is_some() {
            served += 1;
        }
    }
    println!("after killing {victim_address}: {served} of 1000 keys served");

    for state in cluster.servers() {
        println!(
            "{:<22} up={:<5} calls={:<5} failed={}",
            state.server, state.up, state.calls, state.failed_calls
        );
    }
    Ok(())
}
