//! The `tiny-cache` command-line tool (work in progress).

fn main() {}
