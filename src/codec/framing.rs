//! gRPC message framing: each message travels as a 5-byte prefix (a
//! compressed flag and a big-endian `u32` length) followed by its body.
//! HTTP/2 DATA frames are cut wherever the sender likes, so the decoder here
//! reassembles messages from arbitrary chunks.

use std::collections::VecDeque;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::status::Status;
use crate::error::Code;

/// Length of the prefix in front of every message.
pub const PREFIX_LEN: usize = 5;

/// Default limit on a received message, in bytes: gRPC's usual 4 MiB, which
/// is also what the reference server accepts.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// HTTP/2 stream receive window for both ends of this crate: a whole
/// largest message with its prefix fits in one window, so large values
/// arrive without waiting for WINDOW_UPDATE round trips (the protocol
/// default of 64 KiB would cap a stream at one window per round trip).
pub const STREAM_WINDOW_BYTES: u32 = (DEFAULT_MAX_MESSAGE_BYTES + PREFIX_LEN) as u32;

/// HTTP/2 connection receive window: room for several large messages at
/// once.
pub const CONNECTION_WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// Encodes `message` with its prefix into one buffer, so the transport sends
/// it as a single `Bytes` without copying again.
///
/// Fails with `ResourceExhausted` when the body is over `max_len` (or over
/// what a `u32` prefix can announce), so the caller hears about it before
/// the server refuses the request.
pub fn encode_message<M: prost::Message>(message: &M, max_len: usize) -> Result<Bytes, Status> {
    let body_len = message.encoded_len();
    let announced = match u32::try_from(body_len) {
        Ok(len) if body_len <= max_len => len,
        _ => {
            return Err(Status::new(
                Code::ResourceExhausted,
                format!("message of {body_len} bytes exceeds the limit of {max_len} bytes"),
            ))
        }
    };
    let framed_len = PREFIX_LEN + body_len;
    let encode = |buf: &mut BytesMut| -> Result<(), Status> {
        buf.put_u8(0);
        buf.put_u32(announced);
        message
            .encode(buf)
            .map_err(|e| Status::new(Code::Internal, format!("failed to encode message: {e}")))
    };
    if framed_len > ARENA_BYTES / 4 {
        let mut buf = BytesMut::with_capacity(framed_len);
        encode(&mut buf)?;
        return Ok(buf.freeze());
    }
    // Small messages are cut from this thread's arena: one allocation
    // serves dozens of requests (each `Bytes` keeps its block alive only
    // until the transport has sent it).
    ARENA
        .try_with(|arena| {
            let mut arena = arena.borrow_mut();
            if arena.capacity() < framed_len {
                *arena = BytesMut::with_capacity(ARENA_BYTES);
            }
            if let Err(status) = encode(&mut arena) {
                // Nothing half-written is left for the next message.
                arena.clear();
                return Err(status);
            }
            Ok(arena.split().freeze())
        })
        .unwrap_or_else(|_| {
            // The thread is tearing down its locals: a buffer of its own.
            let mut buf = BytesMut::with_capacity(framed_len);
            encode(&mut buf)?;
            Ok(buf.freeze())
        })
}

/// The size of a thread's encoding arena (see [`encode_message`]).
const ARENA_BYTES: usize = 4096;

thread_local! {
    static ARENA: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
}

/// Decodes one message body (without its prefix). A body that does not
/// parse as `M` is `Internal`, as the gRPC spec assigns to a client that
/// cannot read the server's reply.
pub fn decode_message<M: prost::Message + Default>(body: Bytes) -> Result<M, Status> {
    M::decode(body).map_err(|e| {
        Status::new(
            Code::Internal,
            format!("failed to decode response message: {e}"),
        )
    })
}

/// Reassembles length-prefixed messages from the chunks of a DATA stream.
///
/// A chunk may hold several messages and a message may span chunks. Whole
/// messages inside one chunk are handed out as zero-copy slices of it; only
/// a message split across chunks is copied, into a buffer reserved once at
/// its announced length. An announced length over the limit is refused from
/// the prefix alone, before any of its body is buffered.
///
/// After an error the decoder is poisoned: buffered data is released, and
/// every later `push` returns the same error.
#[derive(Debug)]
pub struct MessageDecoder {
    max_len: usize,
    /// Bytes of a prefix that arrived split across chunks.
    prefix: [u8; PREFIX_LEN],
    prefix_filled: usize,
    /// Announced length of the message whose body is being assembled in
    /// `body`; `None` between messages.
    body_len: Option<usize>,
    body: BytesMut,
    /// The oldest complete message not yet taken. A unary reply holds one
    /// message, so keeping it outside the queue spares the queue's
    /// allocation on every call; `first` is empty only when `rest` is too.
    first: Option<Bytes>,
    rest: VecDeque<Bytes>,
    error: Option<Status>,
}

impl MessageDecoder {
    /// A decoder refusing messages longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        MessageDecoder {
            max_len,
            prefix: [0; PREFIX_LEN],
            prefix_filled: 0,
            body_len: None,
            body: BytesMut::new(),
            first: None,
            rest: VecDeque::new(),
            error: None,
        }
    }

    /// Feeds the next chunk of the stream. Complete messages become
    /// available through [`MessageDecoder::next_message`].
    ///
    /// Fails with `Internal` on a compressed message (we never negotiate a
    /// `grpc-encoding`) or an invalid flag, and with `ResourceExhausted` on
    /// a message announced longer than the limit.
    pub fn push(&mut self, mut chunk: Bytes) -> Result<(), Status> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        while !chunk.is_empty() {
            if let Some(len) = self.body_len {
                let wanted = len - self.body.len();
                let take = wanted.min(chunk.len());
                self.body.extend_from_slice(&chunk.split_to(take));
                if take == wanted {
                    let message = self.body.split().freeze();
                    self.complete(message);
                    self.body_len = None;
                }
                continue;
            }

            let len = if self.prefix_filled == 0 && chunk.len() >= PREFIX_LEN {
                // Fast path: the whole prefix is in this chunk.
                let mut prefix = [0; PREFIX_LEN];
                chunk.copy_to_slice(&mut prefix);
                self.check_prefix(prefix)?
            } else {
                let take = (PREFIX_LEN - self.prefix_filled).min(chunk.len());
                let end = self.prefix_filled + take;
                if let Some(slot) = self.prefix.get_mut(self.prefix_filled..end) {
                    slot.copy_from_slice(&chunk.split_to(take));
                }
                self.prefix_filled = end;
                if self.prefix_filled < PREFIX_LEN {
                    break;
                }
                self.prefix_filled = 0;
                self.check_prefix(self.prefix)?
            };

            if chunk.len() >= len {
                self.complete(chunk.split_to(len));
            } else {
                self.body.reserve(len);
                self.body_len = Some(len);
            }
        }
        Ok(())
    }

    /// The next complete message body (without its prefix), if any.
    pub fn next_message(&mut self) -> Option<Bytes> {
        let next = self.first.take();
        self.first = self.rest.pop_front();
        next
    }

    fn complete(&mut self, message: Bytes) {
        if self.first.is_none() {
            self.first = Some(message);
        } else {
            self.rest.push_back(message);
        }
    }

    /// Whether bytes of an incomplete message (part of a prefix or body) are
    /// buffered; at the end of a stream this means the message was truncated.
    pub fn has_partial(&self) -> bool {
        self.prefix_filled > 0 || self.body_len.is_some()
    }

    /// Bytes held for the incomplete message: prefix bytes plus body bytes.
    pub fn buffered_len(&self) -> usize {
        self.prefix_filled + self.body.len()
    }

    fn check_prefix(&mut self, prefix: [u8; PREFIX_LEN]) -> Result<usize, Status> {
        let [flag, a, b, c, d] = prefix;
        let announced = u32::from_be_bytes([a, b, c, d]);
        let error = match flag {
            0 => match usize::try_from(announced) {
                Ok(len) if len <= self.max_len => return Ok(len),
                _ => Status::new(
                    Code::ResourceExhausted,
                    format!(
                        "received message of {announced} bytes exceeds the limit of {} bytes",
                        self.max_len
                    ),
                ),
            },
            1 => Status::new(
                Code::Internal,
                "received a compressed message, but no grpc-encoding was negotiated",
            ),
            other => Status::new(
                Code::Internal,
                format!("invalid message flag {other:#04x} (expected 0 or 1)"),
            ),
        };
        self.fail(error.clone());
        Err(error)
    }

    fn fail(&mut self, error: Status) {
        self.error = Some(error);
        self.prefix_filled = 0;
        self.body_len = None;
        self.body = BytesMut::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, PartialEq, prost::Message)]
    struct Item {
        #[prost(string, tag = "1")]
        key: String,
        #[prost(bytes = "bytes", tag = "2")]
        value: Bytes,
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    fn drain(decoder: &mut MessageDecoder) -> Vec<Bytes> {
        std::iter::from_fn(|| decoder.next_message()).collect()
    }

    #[test]
    fn encoded_message_has_flag_zero_and_big_endian_length() {
        let item = Item {
            key: "k".into(),
            value: Bytes::from_static(b"v"),
        };
        let framed = encode_message(&item, DEFAULT_MAX_MESSAGE_BYTES).expect("fits");
        let body_len = prost::Message::encoded_len(&item);
        assert_eq!(framed.len(), PREFIX_LEN + body_len);
        assert_eq!(&framed[..PREFIX_LEN], &[0, 0, 0, 0, body_len as u8]);
        let decoded: Item = decode_message(framed.slice(PREFIX_LEN..)).expect("parses");
        assert_eq!(decoded, item);
    }

    #[test]
    fn encoded_prefix_announces_the_body_length() {
        let item = Item {
            key: "key".into(),
            value: Bytes::from(vec![7u8; 1000]),
        };
        let framed = encode_message(&item, DEFAULT_MAX_MESSAGE_BYTES).expect("fits");
        assert_eq!(&framed[1..5], &(framed.len() as u32 - 5).to_be_bytes());
    }

    #[test]
    fn empty_message_encodes_as_bare_prefix() {
        let framed = encode_message(&Item::default(), 0).expect("empty fits any limit");
        assert_eq!(&framed[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn encoding_a_message_over_the_limit_is_resource_exhausted() {
        let item = Item {
            key: String::new(),
            value: Bytes::from(vec![0u8; 100]),
        };
        let len = prost::Message::encoded_len(&item);
        assert!(encode_message(&item, len).is_ok());
        let err = encode_message(&item, len - 1).expect_err("over the limit");
        assert_eq!(err.code(), Code::ResourceExhausted);
    }

    #[test]
    fn unparseable_body_is_internal() {
        let err = decode_message::<Item>(Bytes::from_static(b"\xff\xff\xff")).expect_err("garbage");
        assert_eq!(err.code(), Code::Internal);
        let err = decode_message::<Item>(Bytes::from_static(b"\x0a\x05ab")).expect_err("truncated");
        assert_eq!(err.code(), Code::Internal);
    }

    #[test]
    fn empty_body_decodes_as_default_message() {
        let item: Item = decode_message(Bytes::new()).expect("empty is valid proto");
        assert_eq!(item, Item::default());
    }

    #[test]
    fn whole_message_in_one_chunk_is_a_zero_copy_slice() {
        let chunk = Bytes::from(frame(b"hello"));
        let body_ptr = chunk[PREFIX_LEN..].as_ptr();
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        d.push(chunk).expect("valid");
        let msg = d.next_message().expect("complete");
        assert_eq!(&msg[..], b"hello");
        assert_eq!(msg.as_ptr(), body_ptr, "should slice, not copy");
        assert!(!d.has_partial());
        assert_eq!(d.next_message(), None);
    }

    #[test]
    fn several_messages_in_one_chunk_are_all_returned_in_order() {
        let mut data = frame(b"one");
        data.extend(frame(b""));
        data.extend(frame(b"three"));
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        d.push(Bytes::from(data)).expect("valid");
        assert_eq!(drain(&mut d), vec![&b"one"[..], b"", b"three"]);
        assert!(!d.has_partial());
    }

    #[test]
    fn message_split_across_three_chunks_is_reassembled() {
        let data = frame(b"abcdefghij");
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        d.push(Bytes::copy_from_slice(&data[..3])).expect("valid");
        assert!(d.has_partial());
        d.push(Bytes::copy_from_slice(&data[3..9])).expect("valid");
        assert!(d.has_partial());
        assert_eq!(d.next_message(), None);
        d.push(Bytes::copy_from_slice(&data[9..])).expect("valid");
        assert!(!d.has_partial());
        assert_eq!(drain(&mut d), vec![&b"abcdefghij"[..]]);
    }

    #[test]
    fn every_split_point_of_two_messages_gives_the_same_result() {
        let mut data = frame(b"first message");
        data.extend(frame(b"second"));
        for cut1 in 0..=data.len() {
            for cut2 in cut1..=data.len() {
                let mut d = MessageDecoder::new(64);
                for part in [&data[..cut1], &data[cut1..cut2], &data[cut2..]] {
                    d.push(Bytes::copy_from_slice(part)).expect("valid");
                }
                assert_eq!(drain(&mut d), vec![&b"first message"[..], b"second"]);
                assert!(!d.has_partial());
            }
        }
    }

    #[test]
    fn byte_at_a_time_feeding_works() {
        let mut data = frame(b"xy");
        data.extend(frame(b"z"));
        let mut d = MessageDecoder::new(64);
        for byte in data {
            d.push(Bytes::copy_from_slice(&[byte])).expect("valid");
        }
        assert_eq!(drain(&mut d), vec![&b"xy"[..], b"z"]);
    }

    #[test]
    fn split_message_buffer_is_reserved_once_at_the_announced_length() {
        let body = vec![9u8; 10_000];
        let data = frame(&body);
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        d.push(Bytes::copy_from_slice(&data[..100])).expect("valid");
        let capacity = d.body.capacity();
        assert!(capacity >= body.len());
        let ptr = d.body.as_ptr();
        for part in data[100..].chunks(1000) {
            d.push(Bytes::copy_from_slice(part)).expect("valid");
            if d.has_partial() {
                assert_eq!(d.body.as_ptr(), ptr, "no reallocation while filling");
            }
        }
        assert_eq!(drain(&mut d), vec![Bytes::from(body)]);
    }

    #[test]
    fn empty_chunks_are_harmless() {
        let mut d = MessageDecoder::new(64);
        d.push(Bytes::new()).expect("empty");
        assert!(!d.has_partial());
        d.push(Bytes::from_static(&[0, 0])).expect("partial prefix");
        d.push(Bytes::new()).expect("empty");
        assert!(d.has_partial());
        d.push(Bytes::from_static(&[0, 0, 0]))
            .expect("rest of prefix");
        assert_eq!(drain(&mut d), vec![Bytes::new()]);
    }

    #[test]
    fn partial_prefix_counts_as_partial() {
        let mut d = MessageDecoder::new(64);
        d.push(Bytes::from_static(&[0])).expect("valid");
        assert!(d.has_partial());
        assert_eq!(d.buffered_len(), 1);
    }

    #[test]
    fn compressed_flag_is_internal() {
        let mut d = MessageDecoder::new(64);
        let err = d
            .push(Bytes::from_static(&[1, 0, 0, 0, 1, 0]))
            .expect_err("compressed");
        assert_eq!(err.code(), Code::Internal);
        assert!(err.message().contains("compressed"), "{err}");
    }

    #[test]
    fn unknown_flag_values_are_internal() {
        for flag in [2u8, 0x80, 0xff] {
            let mut d = MessageDecoder::new(64);
            let err = d
                .push(Bytes::copy_from_slice(&[flag, 0, 0, 0, 0]))
                .expect_err("bad flag");
            assert_eq!(err.code(), Code::Internal, "{flag}");
        }
    }

    #[test]
    fn bad_flag_in_a_split_prefix_is_detected() {
        let mut d = MessageDecoder::new(64);
        d.push(Bytes::from_static(&[1, 0]))
            .expect("flag not judged yet");
        let err = d
            .push(Bytes::from_static(&[0, 0, 0]))
            .expect_err("compressed");
        assert_eq!(err.code(), Code::Internal);
    }

    #[test]
    fn oversize_prefix_is_resource_exhausted_without_buffering_the_body() {
        let mut d = MessageDecoder::new(10);
        let mut data = vec![0, 0, 0, 0, 11];
        data.extend_from_slice(&[7u8; 11]);
        let err = d.push(Bytes::from(data)).expect_err("over limit");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert!(!d.has_partial());
        assert_eq!(d.buffered_len(), 0);
        assert_eq!(d.body.capacity(), 0, "nothing reserved for the body");
    }

    #[test]
    fn oversize_is_decided_from_the_prefix_alone() {
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        let err = d
            .push(Bytes::from_static(&[0, 0xff, 0xff, 0xff, 0xff]))
            .expect_err("4 GiB announced");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(d.body.capacity(), 0);
    }

    #[test]
    fn oversize_prefix_split_across_chunks_is_refused_once_complete() {
        let mut d = MessageDecoder::new(DEFAULT_MAX_MESSAGE_BYTES);
        d.push(Bytes::from_static(&[0, 0x7f]))
            .expect("not yet known");
        let err = d
            .push(Bytes::from_static(&[0xff, 0xff, 0xff, 1, 2, 3]))
            .expect_err("over limit");
        assert_eq!(err.code(), Code::ResourceExhausted);
        assert_eq!(d.body.capacity(), 0);
    }

    #[test]
    fn message_exactly_at_the_limit_is_accepted() {
        let mut d = MessageDecoder::new(3);
        d.push(Bytes::from(frame(b"abc"))).expect("at limit");
        assert_eq!(drain(&mut d), vec![&b"abc"[..]]);
    }

    #[test]
    fn zero_limit_accepts_only_empty_messages() {
        let mut d = MessageDecoder::new(0);
        d.push(Bytes::from(frame(b""))).expect("empty is fine");
        assert_eq!(
            d.push(Bytes::from(frame(b"a"))).map_err(|e| e.code()),
            Err(Code::ResourceExhausted)
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut d = MessageDecoder::new(64);
        let first = d
            .push(Bytes::from_static(&[3, 0, 0, 0, 0]))
            .expect_err("bad flag");
        let again = d.push(Bytes::from(frame(b"ok"))).expect_err("still failed");
        assert_eq!(first, again);
        assert_eq!(d.next_message(), None);
    }

    #[test]
    fn messages_before_a_bad_prefix_are_still_delivered() {
        let mut data = frame(b"good");
        data.extend_from_slice(&[9, 0, 0, 0, 0]);
        let mut d = MessageDecoder::new(64);
        assert!(d.push(Bytes::from(data)).is_err());
        assert_eq!(drain(&mut d), vec![&b"good"[..]]);
    }

    #[test]
    fn pseudo_random_chunking_never_panics_and_matches_whole_decoding() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..200 {
            let data: Vec<u8> = (0..(next() % 64)).map(|_| (next() % 4) as u8).collect();
            let mut whole = MessageDecoder::new(8);
            let whole_result = whole.push(Bytes::from(data.clone())).map_err(|e| e.code());
            let mut split = MessageDecoder::new(8);
            let mut split_result = Ok(());
            let mut rest = &data[..];
            while !rest.is_empty() {
                let cut = (next() as usize % rest.len()) + 1;
                let (part, tail) = rest.split_at(cut);
                rest = tail;
                split_result = split
                    .push(Bytes::copy_from_slice(part))
                    .map_err(|e| e.code());
                if split_result.is_err() {
                    break;
                }
            }
            assert_eq!(split_result, whole_result, "{data:?}");
            assert_eq!(drain(&mut split), drain(&mut whole), "{data:?}");
            assert_eq!(split.has_partial(), whole.has_partial(), "{data:?}");
        }
    }
}
