//! The gRPC-over-HTTP/2 codec (being written).
