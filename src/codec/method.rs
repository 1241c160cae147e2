//! The RPC methods this crate speaks, and their HTTP/2 paths.

use http::uri::PathAndQuery;

/// The cache service's full name: its methods' path prefix, and the name
/// the health service answers for besides `""`.
pub const CACHE_SERVICE_NAME: &str = "cache.CacheService";

/// A unary method of `cache.CacheService`, or the standard health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `/cache.CacheService/Get`
    Get,
    /// `/cache.CacheService/MultiGet`
    MultiGet,
    /// `/cache.CacheService/Set`
    Set,
    /// `/cache.CacheService/SetIfAbsent`
    SetIfAbsent,
    /// `/cache.CacheService/CompareAndSet`
    CompareAndSet,
    /// `/cache.CacheService/MultiSet`
    MultiSet,
    /// `/cache.CacheService/Delete`
    Delete,
    /// `/cache.CacheService/MultiDelete`
    MultiDelete,
    /// `/cache.CacheService/Stats`
    Stats,
    /// `/grpc.health.v1.Health/Check`
    HealthCheck,
}

impl Method {
    /// Every method, in declaration order.
    pub const ALL: [Method; 10] = [
        Method::Get,
        Method::MultiGet,
        Method::Set,
        Method::SetIfAbsent,
        Method::CompareAndSet,
        Method::MultiSet,
        Method::Delete,
        Method::MultiDelete,
        Method::Stats,
        Method::HealthCheck,
    ];

    /// The request path, `/<package>.<Service>/<Method>`.
    pub fn path(self) -> &'static str {
        match self {
            Method::Get => "/cache.CacheService/Get",
            Method::MultiGet => "/cache.CacheService/MultiGet",
            Method::Set => "/cache.CacheService/Set",
            Method::SetIfAbsent => "/cache.CacheService/SetIfAbsent",
            Method::CompareAndSet => "/cache.CacheService/CompareAndSet",
            Method::MultiSet => "/cache.CacheService/MultiSet",
            Method::Delete => "/cache.CacheService/Delete",
            Method::MultiDelete => "/cache.CacheService/MultiDelete",
            Method::Stats => "/cache.CacheService/Stats",
            Method::HealthCheck => "/grpc.health.v1.Health/Check",
        }
    }

    /// The path as a `PathAndQuery`, built from the static string without
    /// copying or re-parsing at run time beyond `from_static`'s check.
    pub fn path_and_query(self) -> PathAndQuery {
        PathAndQuery::from_static(self.path())
    }

    /// The method a request path names; gRPC paths are case-sensitive, so
    /// `/cache.CacheService/get` is no method (the server answers
    /// `Unimplemented`).
    pub fn from_path(path: &str) -> Option<Method> {
        Method::ALL.into_iter().find(|m| m.path() == path)
    }

    /// The bare method name, e.g. `"Get"` or `"Check"`.
    pub fn name(self) -> &'static str {
        match self {
            Method::Get => "Get",
            Method::MultiGet => "MultiGet",
            Method::Set => "Set",
            Method::SetIfAbsent => "SetIfAbsent",
            Method::CompareAndSet => "CompareAndSet",
            Method::MultiSet => "MultiSet",
            Method::Delete => "Delete",
            Method::MultiDelete => "MultiDelete",
            Method::Stats => "Stats",
            Method::HealthCheck => "Check",
        }
    }

    /// Whether running the method twice has the same effect as once, so a
    /// retry after the server may have processed it is safe. Only the
    /// conditional writes are not: a retried `SetIfAbsent` whose first
    /// attempt stored the value would report `EXISTS`, and a retried
    /// `CompareAndSet` would report `MISMATCH`.
    pub fn is_idempotent(self) -> bool {
        !matches!(self, Method::SetIfAbsent | Method::CompareAndSet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_cache_method_path_names_the_cache_service() {
        for method in Method::ALL {
            if method != Method::HealthCheck {
                let service = method.path()[1..].split('/').next();
                assert_eq!(service, Some(CACHE_SERVICE_NAME), "{method:?}");
            }
        }
    }

    #[test]
    fn cache_methods_live_under_the_cache_service() {
        assert_eq!(Method::Get.path(), "/cache.CacheService/Get");
        assert_eq!(
            Method::CompareAndSet.path(),
            "/cache.CacheService/CompareAndSet"
        );
        assert_eq!(Method::Stats.path(), "/cache.CacheService/Stats");
        for m in Method::ALL {
            if m != Method::HealthCheck {
                assert_eq!(m.path(), format!("/cache.CacheService/{}", m.name()));
            }
        }
    }

    #[test]
    fn health_check_lives_under_the_health_service() {
        assert_eq!(Method::HealthCheck.path(), "/grpc.health.v1.Health/Check");
        assert_eq!(Method::HealthCheck.name(), "Check");
    }

    #[test]
    fn all_lists_every_method_once() {
        let paths: HashSet<_> = Method::ALL.iter().map(|m| m.path()).collect();
        assert_eq!(paths.len(), Method::ALL.len());
    }

    #[test]
    fn path_round_trips_through_from_path() {
        for m in Method::ALL {
            assert_eq!(Method::from_path(m.path()), Some(m));
            assert_eq!(m.path_and_query().as_str(), m.path());
            assert_eq!(m.path_and_query().query(), None);
        }
    }

    #[test]
    fn from_path_is_case_sensitive_and_exact() {
        for path in [
            "/cache.CacheService/get",
            "/Cache.CacheService/Get",
            "/cache.CacheService/Get/",
            "cache.CacheService/Get",
            "/cache.CacheService/Get?x=1",
            "/cache.CacheService/",
            "/",
            "",
            "/cache.CacheService/Nope",
        ] {
            assert_eq!(Method::from_path(path), None, "{path}");
        }
    }

    #[test]
    fn only_conditional_writes_are_not_idempotent() {
        for m in Method::ALL {
            let expected = !matches!(m, Method::SetIfAbsent | Method::CompareAndSet);
            assert_eq!(m.is_idempotent(), expected, "{m:?}");
        }
        assert!(Method::Delete.is_idempotent());
        assert!(Method::MultiSet.is_idempotent());
    }
}
