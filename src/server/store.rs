//! The cache store (being written).
