#![cfg(feature = "server")]
use tiny_cache_client::{server::Server, Client};

#[test]
fn smoke() {
    let server = Server::local().unwrap();
    let client = Client::new(&server.address()).unwrap();
    client.set("a", "1").unwrap();
    assert_eq!(client.get_string("a").unwrap().as_deref(), Some("1"));
    println!("{:?}", client.stats().unwrap());
    println!("{:?}", client.ping().unwrap());
}
