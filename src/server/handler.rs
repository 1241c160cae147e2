//! One gRPC stream: read the request, run the handler, answer the way the
//! reference server does on the wire.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderMap, HeaderValue, Request};
use prost::Message;

use super::service::{CacheService, ServiceError};
use crate::codec::{
    decode_message, encode_message, response_head, trailers, Code, MessageDecoder, Method, Status,
    CACHE_SERVICE_NAME, PREFIX_LEN,
};
use crate::proto::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
};
use crate::rules::{NAMESPACE_HEADER, REQUEST_ID_HEADER};

/// What every stream of a server shares.
pub(super) struct Context {
    pub service: CacheService,
    pub max_receive_message_bytes: usize,
    /// gRPC calls between their request HEADERS and their last response
    /// frame, as the side port reports them.
    pub active_requests: AtomicU64,
}

/// Counts one call in progress for as long as it lives, so a call that
/// ends any way at all (answered, reset, aborted at shutdown) is uncounted.
struct InProgress<'a>(&'a AtomicU64);

impl<'a> InProgress<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        InProgress(counter)
    }
}

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The health service's names that are served: the whole server and the
/// cache service.
const SERVED_HEALTH_NAMES: [&str; 2] = ["", CACHE_SERVICE_NAME];

/// How a stream ends.
enum Outcome {
    /// Headers, one message, OK trailers.
    Reply(Bytes),
    /// A handler refused the request: headers, an empty message, then the
    /// status in the trailers (the reference server's shape).
    HandlerError(Status),
    /// Refused before any handler ran (unknown method, undecodable or
    /// oversize request): one HEADERS frame carrying the status.
    TrailersOnly(Status),
}

pub(super) async fn handle(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    context: Arc<Context>,
) {
    let _in_progress = InProgress::enter(&context.active_requests);
    let (parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    let outcome = match Method::from_path(parts.uri.path()) {
        None => Outcome::TrailersOnly(Status::new(
            Code::Unimplemented,
            format!("unknown method {}", parts.uri.path()),
        )),
        Some(method) => match read_message(body, context.max_receive_message_bytes).await {
            Err(status) => Outcome::TrailersOnly(status),
            Ok(message) => {
                let namespace = parts.headers.get(NAMESPACE_HEADER);
                run(method, namespace, message, &context.service, &request_id)
            }
        },
    };
    respond_with(&mut respond, outcome, request_id);
}

/// Reads exactly one request message, releasing flow-control window as
/// bytes arrive. An oversize message is refused from its prefix.
async fn read_message(mut body: RecvStream, max_len: usize) -> Result<Bytes, Status> {
    let mut decoder = MessageDecoder::new(max_len);
    let mut message = None;
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(|e| Status::new(Code::Cancelled, e.to_string()))?;
        let _ = body.flow_control().release_capacity(chunk.len());
        decoder.push(chunk)?;
        while let Some(next) = decoder.next_message() {
            if message.replace(next).is_some() {
                return Err(Status::new(
                    Code::Unimplemented,
                    "a unary request must hold exactly one message",
                ));
            }
        }
    }
    if decoder.has_partial() {
        return Err(Status::new(
            Code::Internal,
            "the request message is truncated",
        ));
    }
    message.ok_or_else(|| Status::new(Code::Unimplemented, "the request holds no message"))
}

fn run(
    method: Method,
    namespace: Option<&HeaderValue>,
    message: Bytes,
    service: &CacheService,
    request_id: &HeaderValue,
) -> Outcome {
    // A header value that is not text cannot be a valid namespace: read
    // lossily, its replacement characters fail the namespace rules with the
    // same text as any other bad character.
    let namespace = namespace.map(|value| String::from_utf8_lossy(value.as_bytes()));
    let namespace = namespace.as_deref();
    let ran = catch_unwind(AssertUnwindSafe(|| match method {
        // Decoded first: an undecodable request fails as UNKNOWN whatever
        // its namespace, then a bad namespace fails before any key.
        Method::Get => call(message, |r| service.scope(namespace)?.get(r)),
        Method::MultiGet => call(message, |r| Ok(service.scope(namespace)?.multi_get(r))),
        Method::Set => call(message, |r| service.scope(namespace)?.set(r)),
        Method::SetIfAbsent => call(message, |r| service.scope(namespace)?.set_if_absent(r)),
        Method::CompareAndSet => call(message, |r| service.scope(namespace)?.compare_and_set(r)),
        Method::MultiSet => call(message, |r| Ok(service.scope(namespace)?.multi_set(r))),
        Method::Delete => call(message, |r| service.scope(namespace)?.delete(r)),
        Method::MultiDelete => call(message, |r| Ok(service.scope(namespace)?.multi_delete(r))),
        Method::Stats => call(message, |_: crate::proto::cache::Empty| Ok(service.stats())),
        Method::HealthCheck => call(message, health_check),
    }));
    ran.unwrap_or_else(|_| {
        Outcome::HandlerError(Status::new(
            Code::Internal,
            format!(
                "internal error (request id {})",
                String::from_utf8_lossy(request_id.as_bytes())
            ),
        ))
    })
}

fn call<Req, Resp>(
    message: Bytes,
    handler: impl FnOnce(Req) -> Result<Resp, ServiceError>,
) -> Outcome
where
    Req: Message + Default,
    Resp: Message,
{
    let request = match decode_message::<Req>(message) {
        Ok(request) => request,
        // The reference server's gRPC layer fails an undecodable request
        // (a key that is not UTF-8, say) before the handler, as UNKNOWN.
        Err(status) => {
            return Outcome::TrailersOnly(Status::new(
                Code::Unknown,
                format!("cannot decode the request: {}", status.message()),
            ))
        }
    };
    match handler(request) {
        Ok(reply) => match encode_message(&reply, usize::MAX) {
            Ok(framed) => Outcome::Reply(framed),
            Err(status) => Outcome::HandlerError(status),
        },
        Err(ServiceError::InvalidArgument(message)) => {
            Outcome::HandlerError(Status::new(Code::InvalidArgument, message))
        }
        Err(ServiceError::ResourceExhausted(message)) => {
            Outcome::HandlerError(Status::new(Code::ResourceExhausted, message))
        }
        Err(ServiceError::NotFound(message)) => {
            Outcome::HandlerError(Status::new(Code::NotFound, message))
        }
    }
}

fn health_check(request: HealthCheckRequest) -> Result<HealthCheckResponse, ServiceError> {
    if SERVED_HEALTH_NAMES.contains(&request.service.as_str()) {
        Ok(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        })
    } else {
        Err(ServiceError::NotFound(format!(
            "unknown service {:?}",
            request.service
        )))
    }
}

fn respond_with(respond: &mut SendResponse<Bytes>, outcome: Outcome, request_id: HeaderValue) {
    let mut head = response_head();
    head.headers_mut().insert(REQUEST_ID_HEADER, request_id);
    // Send errors mean the client went away (reset or closed): nobody is
    // left to tell, so they are dropped.
    match outcome {
        Outcome::TrailersOnly(status) => {
            status.write_to(head.headers_mut());
            let _ = respond.send_response(head, true);
        }
        Outcome::Reply(framed) => {
            if let Ok(mut stream) = respond.send_response(head, false) {
                let _ = stream.send_data(framed, false);
                let _ = stream.send_trailers(trailers(&Status::new(Code::Ok, "")));
            }
        }
        Outcome::HandlerError(status) => {
            if let Ok(mut stream) = respond.send_response(head, false) {
                let _ = stream.send_data(Bytes::from_static(&[0; PREFIX_LEN]), false);
                let _ = stream.send_trailers(trailers(&status));
            }
        }
    }
}

/// The caller's `x-request-id`, or a fresh 32-hex one as the reference
/// server makes.
pub(super) fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(REQUEST_ID_HEADER) {
        return id.clone();
    }
    let id = format!("{:032x}", fastrand::u128(..));
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}
