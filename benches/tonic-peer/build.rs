//! Compiles the service's own `proto/cache.proto` with protox (pure Rust, no
//! `protoc`), then generates tonic's client and server with
//! tonic-prost-build from the resulting descriptor set.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let proto = "../../proto/cache.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../../proto"])?;
    let mut config = tonic_prost_build::Config::new();
    // The same prost setting as tiny-cache-client's own build: `bytes`
    // fields decode to `Bytes` (a slice of the received buffer) rather than a
    // fresh `Vec<u8>`, so large values are not copied once more than ours.
    config.bytes(["."]);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
