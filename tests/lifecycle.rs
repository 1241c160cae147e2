#![cfg(feature = "server")]
//! Worker threads live exactly as long as the client: counted from
//! /proc/self/task, so this file holds a single test (tests in one binary
//! share the process).

use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error};

/// Threads of this process whose name marks them as pool workers.
fn worker_threads() -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("tiny-cache-work"))
        .count()
}

/// Pool workers left once joined threads have left /proc: the kernel wakes
/// a joining thread before it removes the joined one's task entry, so an
/// immediate count can still see a thread that is gone (measured: the
/// entry lingers for 50-160 µs here). A thread still running stays counted.
fn worker_threads_after_joins() -> usize {
    let give_up = Instant::now() + Duration::from_secs(1);
    loop {
        let count = worker_threads();
        if count == 0 || Instant::now() >= give_up {
            return count;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn dropping_the_last_clone_joins_every_worker_and_close_is_final() {
    if !std::path::Path::new("/proc/self/task").exists() {
        eprintln!("no /proc: thread counting is Linux-only");
        return;
    }
    let server = Server::local().unwrap();
    assert_eq!(worker_threads(), 0);

    let client = Client::builder(&server.address())
        .pool_size(3)
        .build()
        .unwrap();
    assert_eq!(worker_threads(), 3);
    let clones: Vec<Client> = (0..4).map(|_| client.clone()).collect();
    client.set("k", "v").unwrap();

    // Dropping some clones keeps the pool; dropping the last one joins it.
    drop(client);
    assert_eq!(clones[0].get_string("k").unwrap().as_deref(), Some("v"));
    assert_eq!(worker_threads(), 3);
    let dropping = Instant::now();
    drop(clones);
    assert!(
        dropping.elapsed() < Duration::from_secs(2),
        "drop took {:?}",
        dropping.elapsed()
    );
    assert_eq!(
        worker_threads_after_joins(),
        0,
        "drop must join the workers"
    );

    // close() joins too, and every handle derived from the client sees it.
    let client = Client::new(&server.address()).unwrap();
    let scoped = client.with_timeout(Duration::from_secs(1)).unwrap();
    scoped.set("k", "v").unwrap();
    client.close();
    assert_eq!(
        worker_threads_after_joins(),
        0,
        "close must join the workers"
    );
    assert_eq!(scoped.get("k"), Err(Error::Closed));
    drop(scoped);
    drop(client);
}
