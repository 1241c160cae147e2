//! [`Client`](super::Client) as a [`CacheStore`](crate::CacheStore): each
//! operation is the client's own RPC (`MultiGet` for `get_many`, the
//! server's atomic `SetIfAbsent` and `CompareAndSet`), with the client's
//! default TTL.

use super::handle::Client;

crate::store::store_from_inherent!(Client);
