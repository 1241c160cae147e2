//! Request heads for the client, and the response head and trailers the
//! embedded server sends.

use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, TE};
use http::uri::{Authority, Parts, Scheme, Uri};
use http::{Request, Response, StatusCode, Version};

use super::metadata::Metadata;
use super::method::Method;
use super::status::Status;
use super::timeout::encode_timeout;

/// The `user-agent` this client sends.
pub const USER_AGENT: &str = concat!("tiny-cache-client-rust/", env!("CARGO_PKG_VERSION"));

/// The gRPC content type (protobuf is implied when no `+suffix` is given).
const CONTENT_TYPE_GRPC: &str = "application/grpc";

/// Builds the head of a gRPC request: `POST` to the method's path on
/// `scheme://authority`, with `te: trailers`, `content-type`, `grpc-timeout`
/// (only when there is a deadline), `user-agent`, then `metadata`, in that
/// order, as the gRPC spec lists them.
///
/// `metadata` is sent as given: it was validated when its entries were set.
pub fn request_head(
    scheme: &Scheme,
    authority: &Authority,
    method: Method,
    timeout: Option<Duration>,
    metadata: &Metadata,
) -> Request<()> {
    let mut request = Request::new(());
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = Version::HTTP_2;
    *request.uri_mut() = request_uri(scheme, authority, method);

    let headers = request.headers_mut();
    headers.reserve(4 + metadata.len());
    headers.insert(TE, HeaderValue::from_static("trailers"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_GRPC));
    if let Some(timeout) = timeout {
        headers.insert(
            HeaderName::from_static("grpc-timeout"),
            encode_timeout(timeout),
        );
    }
    headers.insert(
        http::header::USER_AGENT,
        HeaderValue::from_static(USER_AGENT),
    );
    metadata.append_to(headers);
    request
}

fn request_uri(scheme: &Scheme, authority: &Authority, method: Method) -> Uri {
    let mut parts = Parts::default();
    parts.scheme = Some(scheme.clone());
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(method.path_and_query());
    // With scheme, authority and path all present `from_parts` cannot fail;
    // the fallback keeps this function infallible without a panic.
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from(method.path_and_query()))
}

/// The head of a gRPC response, as the reference server sends it: `200`,
/// `content-type: application/grpc`, `grpc-accept-encoding: identity` (we
/// support no compression, and say so).
pub fn response_head() -> Response<()> {
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::OK;
    *response.version_mut() = Version::HTTP_2;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_GRPC));
    headers.insert(
        HeaderName::from_static("grpc-accept-encoding"),
        HeaderValue::from_static("identity"),
    );
    response
}

/// The trailers that end a response with `status`.
pub fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    status.write_to(&mut headers);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    fn head(timeout: Option<Duration>, metadata: &Metadata) -> Request<()> {
        request_head(
            &Scheme::HTTP,
            &Authority::from_static("localhost:50051"),
            Method::Get,
            timeout,
            metadata,
        )
    }

    fn header_names(headers: &HeaderMap) -> Vec<&str> {
        headers.keys().map(|k| k.as_str()).collect()
    }

    #[test]
    fn request_is_a_post_to_the_full_method_uri() {
        let req = head(None, &Metadata::new());
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.version(), Version::HTTP_2);
        assert_eq!(req.uri().scheme(), Some(&Scheme::HTTP));
        assert_eq!(
            req.uri().authority().map(|a| a.as_str()),
            Some("localhost:50051")
        );
        assert_eq!(req.uri().path(), "/cache.CacheService/Get");
        assert_eq!(
            req.uri().to_string(),
            "http://localhost:50051/cache.CacheService/Get"
        );
    }

    #[test]
    fn https_scheme_and_ipv6_authority_are_kept() {
        let req = request_head(
            &Scheme::HTTPS,
            &Authority::from_static("[::1]:443"),
            Method::HealthCheck,
            None,
            &Metadata::new(),
        );
        assert_eq!(
            req.uri().to_string(),
            "https://[::1]:443/grpc.health.v1.Health/Check"
        );
    }

    #[test]
    fn headers_follow_the_spec_order_with_a_timeout_and_metadata() {
        let mut md = Metadata::new();
        md.insert("x-request-id", "r1").expect("valid");
        md.insert("x-cache-namespace", "app").expect("valid");
        let req = head(Some(Duration::from_secs(30)), &md);
        assert_eq!(
            header_names(req.headers()),
            vec![
                "te",
                "content-type",
                "grpc-timeout",
                "user-agent",
                "x-request-id",
                "x-cache-namespace",
            ]
        );
        let h = req.headers();
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-timeout"], "30000000u");
        assert_eq!(h["user-agent"], USER_AGENT);
        assert_eq!(h["x-request-id"], "r1");
        assert_eq!(h["x-cache-namespace"], "app");
    }

    #[test]
    fn no_deadline_means_no_grpc_timeout_header() {
        let req = head(None, &Metadata::new());
        assert_eq!(
            header_names(req.headers()),
            vec!["te", "content-type", "user-agent"]
        );
    }

    #[test]
    fn binary_metadata_is_sent_base64_encoded() {
        let mut md = Metadata::new();
        md.insert_bin("trace-bin", b"hi!!").expect("valid");
        let req = head(None, &md);
        assert_eq!(req.headers()["trace-bin"], "aGkhIQ");
    }

    #[test]
    fn user_agent_names_this_crate_and_version() {
        assert!(USER_AGENT.starts_with("tiny-cache-client-rust/"));
        assert!(USER_AGENT.ends_with(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn response_head_is_200_grpc_with_identity_encoding() {
        let resp = response_head();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/grpc");
        assert_eq!(resp.headers()["grpc-accept-encoding"], "identity");
        assert_eq!(resp.headers().len(), 2);
    }

    #[test]
    fn trailers_carry_the_status() {
        let ok = trailers(&Status::new(Code::Ok, ""));
        assert_eq!(header_names(&ok), vec!["grpc-status"]);
        assert_eq!(ok["grpc-status"], "0");

        let err = trailers(&Status::new(Code::InvalidArgument, "naïve 100%"));
        assert_eq!(err["grpc-status"], "3");
        assert_eq!(err["grpc-message"], "na%C3%AFve 100%25");
    }
}
