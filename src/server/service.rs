//! The RPC handlers (being written).
