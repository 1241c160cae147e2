#![cfg(feature = "server")]
//! `Client::from_env` reads the Python client's variables. Environment
//! variables are process-wide, so this file holds a single test.

use std::time::{Duration, Instant};

use tiny_cache_client::server::Server;
use tiny_cache_client::{Client, Error};

mod common;

use common::net::ClosedPort;

/// Sets an environment variable.
fn set_env(name: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: this binary holds this one test, so no other test thread
    // runs, and neither the embedded server's threads nor the client's
    // workers read the environment.
    unsafe { std::env::set_var(name, value) }
}

/// Removes an environment variable.
fn remove_env(name: &str) {
    // SAFETY: as for `set_env`.
    unsafe { std::env::remove_var(name) }
}

#[test]
fn from_env_reads_address_retries_and_timeout_and_refuses_malformed_values() {
    let server = Server::local().unwrap();
    set_env("CACHE_SERVER_ADDRESS", server.address());
    set_env("CACHE_MAX_RETRIES", "0");
    set_env("CACHE_TIMEOUT", "2.5");
    let client = Client::from_env().unwrap();
    client.set("k", "v").unwrap();
    assert_eq!(client.get_string("k").unwrap().as_deref(), Some("v"));
    let described = format!("{client:?}");
    assert!(
        described.contains("2.5s") && described.contains("max_retries: 0"),
        "{described}"
    );

    // The timeout from the environment bounds calls to a dead address.
    let dead = ClosedPort::new();
    set_env("CACHE_SERVER_ADDRESS", dead.address().to_string());
    set_env("CACHE_TIMEOUT", "0.5");
    let started = Instant::now();
    let outcome = Client::from_env().unwrap().get("k");
    assert!(matches!(outcome, Err(Error::Unavailable(_))), "{outcome:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    for (name, bad) in [
        ("CACHE_MAX_RETRIES", "three"),
        ("CACHE_TIMEOUT", "-1"),
        ("CACHE_SERVER_ADDRESS", "nohost"),
    ] {
        let saved = std::env::var(name).ok();
        set_env(name, bad);
        match Client::from_env() {
            Err(Error::Validation(message)) => assert!(!message.is_empty()),
            other => panic!("{name}={bad} gave {other:?}"),
        }
        match saved {
            Some(value) => set_env(name, value),
            None => remove_env(name),
        }
    }

    for name in ["CACHE_SERVER_ADDRESS", "CACHE_MAX_RETRIES", "CACHE_TIMEOUT"] {
        remove_env(name);
    }
    let defaulted = format!("{:?}", Client::from_env().unwrap());
    assert!(
        defaulted.contains("localhost:50051") && defaulted.contains("30s"),
        "{defaulted}"
    );
}
