//! Caching in production against an embedded server started in-process:
//! use cases keyed by entity, settings changed at run time (a ramp), an
//! enable scope, targeted invalidation, and the metrics served on a port
//! for Prometheus. Ends by itself after a short run.
//!
//! Run with: `cargo run --example production --features server,entity-cache,metrics`
//! (`METRICS_LISTEN=127.0.0.1:9187` to pick the metrics address).

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use serde::{Deserialize, Serialize};
use tiny_cache_client::cache::{
    enable, EntityCache, LayerConfig, UseCaseConfig, UseCaseInfo, UseCaseStats,
};
use tiny_cache_client::server::Server;
use tiny_cache_client::Client;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
}

/// The database the cache is in front of.
#[derive(Default)]
struct Database {
    names: RwLock<HashMap<u64, String>>,
    queries: AtomicUsize,
}

impl Database {
    fn name(&self, id: u64) -> String {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let names = self.names.read().unwrap_or_else(|e| e.into_inner());
        names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("user {id}"))
    }
}

/// Settings per use case, changed while the program runs (a feature-flag
/// service would sit here).
type Settings = Arc<RwLock<HashMap<String, UseCaseConfig>>>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The metrics endpoint first: use cases register their metrics with
    // the recorder installed when they are made.
    let listen = match std::env::var("METRICS_LISTEN") {
        Ok(address) => address.parse()?,
        // A free port: taken, released, handed to the exporter.
        Err(_) => TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    };
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .install()?;

    let server = Server::local()?;
    let client = Client::builder(&server.address())
        .metrics_prefix("example")
        .build()?;

    let settings: Settings = Arc::default();
    let profile_config = UseCaseConfig::remote(Duration::from_secs(300))
        .with_local(LayerConfig::new(Duration::from_secs(2)));
    settings
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert("UserProfile".into(), profile_config);
    // A new use case starts on a 30 % ramp of the remote layer.
    settings.write().unwrap_or_else(|e| e.into_inner()).insert(
        "UserPosts".into(),
        UseCaseConfig::default()
            .with_remote(LayerConfig::new(Duration::from_secs(60)).ramp_percent(30)),
    );
    let provider = Arc::clone(&settings);
    let cache = EntityCache::builder(client)
        .metrics_prefix("example")
        .config(move |info: &UseCaseInfo<'_>| {
            // A use case the settings do not name is off.
            let settings = provider.read().unwrap_or_else(|e| e.into_inner());
            settings.get(info.name).copied()
        })
        .build()?;

    let database = Arc::new(Database::default());
    let db = Arc::clone(&database);
    let profile = cache.use_case_named("UserProfile", "user_id", move |id: &u64, _: &()| {
        Ok::<_, std::convert::Infallible>(Profile {
            id: *id,
            name: db.name(*id),
        })
    });
    let db = Arc::clone(&database);
    let posts = cache.use_case_named("UserPosts", "user_id", move |id: &u64, page: &u32| {
        let name = db.name(*id);
        Ok::<_, std::convert::Infallible>(vec![format!(
            "{name}: post {} of page {page}",
            page * 10
        )])
    });

    // A write path outside any scope reads the database, never the cache.
    let before = profile.get(&12345, &())?;
    println!("outside the scope: {before:?} (straight from the database)");

    {
        // A request handler serving reads enables caching around itself.
        let _scope = enable();
        for round in 0..100u32 {
            for user in 1..=10u64 {
                profile.get(&user, &())?;
                posts.get(&user, &(round % 3))?;
            }
        }
        report(
            "after 100 rounds",
            &profile.local_stats(),
            &posts.local_stats(),
        );

        // The ramp goes to 100 % at run time: no restart.
        settings.write().unwrap_or_else(|e| e.into_inner()).insert(
            "UserPosts".into(),
            UseCaseConfig::remote(Duration::from_secs(60)),
        );
        for round in 0..100u32 {
            for user in 1..=10u64 {
                posts.get(&user, &(round % 3))?;
            }
        }
        report(
            "after the ramp to 100 %",
            &profile.local_stats(),
            &posts.local_stats(),
        );

        // User 7 renames: write, then one Set invalidates every entry of
        // user 7, in both use cases, for every page.
        database
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(7, "Ann".into());
        let queries = database.queries.load(Ordering::SeqCst);
        cache.invalidate("user_id", &7, Duration::from_millis(200))?;
        let renamed = profile.get(&7, &())?;
        let page = posts.get(&7, &1)?;
        println!("after invalidating user 7: {renamed:?}, {page:?}");
        assert_eq!(renamed.name, "Ann");
        assert!(page[0].starts_with("Ann"));
        assert!(database.queries.load(Ordering::SeqCst) > queries);
        assert_eq!(
            profile.get(&8, &())?.name,
            "user 8",
            "other users stay cached"
        );
    }

    // What Prometheus would scrape.
    let body = ureq::get(&format!("http://{listen}/metrics"))
        .call()?
        .body_mut()
        .read_to_string()?;
    println!("\nGET http://{listen}/metrics (the use cases' lines):");
    for line in body.lines().filter(|line| {
        line.starts_with("example_cache_")
            && !line.contains("_bucket")
            && !line.contains("quantile")
    }) {
        println!("  {line}");
    }
    let stats = cache.local_stats();
    println!(
        "\nlayer totals: {} requests, {} hits, {} misses, {} disabled, {} errors, {} invalidation(s)",
        stats.requests,
        stats.hits(),
        stats.misses,
        stats.disabled(),
        stats.errors,
        stats.invalidations
    );
    Ok(())
}

fn report(when: &str, profile: &UseCaseStats, posts: &UseCaseStats) {
    for (name, stats) in [("UserProfile", profile), ("UserPosts", posts)] {
        println!(
            "{when}: {name}: {} requests, {} local hits, {} remote hits, {} misses, {} off the ramp",
            stats.requests, stats.local_hits, stats.remote_hits, stats.misses, stats.disabled_ramp
        );
    }
}
