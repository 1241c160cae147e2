//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so
//! building the crate needs no `protoc` on the machine, then hands the
//! descriptors to prost-build.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let protos = ["proto/cache.proto", "proto/health.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    prost_build::Config::new()
        // Values travel as `Bytes`, so a reply's value is a slice of the
        // received frame instead of a fresh copy.
        .bytes(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
