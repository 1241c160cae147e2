//! The gRPC-over-HTTP/2 codec: bytes ↔ messages, request and response heads,
//! status, deadlines and metadata.
//!
//! Nothing here touches threads, sockets or async: every function takes and
//! returns plain values (`Bytes`, `http` heads and header maps), so the whole
//! protocol can be unit-tested byte by byte. The pool drives h2 and feeds this
//! module what arrives; the embedded server uses the same pieces to answer.
//!
//! The parts, in the order a call uses them:
//!
//! * [`Metadata`] validates custom headers before they reach the wire (the
//!   reference server stalls on a raw non-ASCII value instead of failing).
//! * [`request_head`] builds the HEADERS of a call, with [`encode_timeout`]
//!   for `grpc-timeout`; [`encode_message`] frames the request body.
//! * [`UnaryDecoder`] checks the response head, reassembles the reply from
//!   DATA chunks with a [`MessageDecoder`], and reads the trailers into a
//!   [`Status`]; [`decode_message`] parses the body.
//!
//! Everything that reads peer data is lenient where the gRPC spec asks for
//! it (`grpc-message`, `grpc-status-details-bin`) and never panics.

// Without `unstable-internals` the module is private and the client uses
// only part of it; the rest is the complete codec the fuzz targets and the
// server exercise, kept whole rather than trimmed per feature.
#![cfg_attr(not(feature = "unstable-internals"), allow(dead_code, unused_imports))]

pub mod binary;
pub mod framing;
pub mod metadata;
pub mod method;
pub mod pushback;
pub mod request;
pub mod response;
pub mod status;
pub mod timeout;

pub use crate::error::Code;
pub use binary::{decode_bin, encode_bin};
pub use framing::{
    decode_message, encode_message, MessageDecoder, CONNECTION_WINDOW_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES, PREFIX_LEN, STREAM_WINDOW_BYTES,
};
pub use metadata::{InvalidMetadata, Metadata, MAX_METADATA_BYTES};
pub use method::{Method, CACHE_SERVICE_NAME};
pub use pushback::{retry_pushback, Pushback, RETRY_PUSHBACK_HEADER};
pub use request::{request_head, response_head, trailers, USER_AGENT};
pub use response::{ResponseError, UnaryDecoder};
pub use status::{percent_decode_message, percent_encode_message, Status};
pub use timeout::{decode_timeout, encode_timeout};
