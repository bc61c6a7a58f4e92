//! Route selection: which [`RouteConfig`] a request falls under, and which
//! backend of a traffic split it goes to.
//!
//! Hosts compare case-insensitively and without port, everywhere the proxy
//! looks at them (Istio CVE-2021-39155 matched Host case-sensitively in one
//! place and not in another). Paths are matched after normalization.

use std::sync::LazyLock;

use http::{HeaderMap, Method};
use rand::Rng;

use crate::config::{PathMatch, RouteConfig, RouteMatch, ServiceConfig, WeightedBackend};

/// The route of a service that declares none: everything, no retries.
static DEFAULT_ROUTE: LazyLock<RouteConfig> = LazyLock::new(RouteConfig::default);

/// What a route match looks at.
pub struct RequestView<'a> {
    /// Host, lower case, without port.
    pub host: &'a str,
    /// HTTP method, which route matches may require.
    pub method: &'a Method,
    /// The normalized path: matching a raw path would let `/a/../b` dodge a route.
    pub path: &'a str,
    /// Request headers, which route matches may require.
    pub headers: &'a HeaderMap,
}

/// Lower-cases a host and strips a port (IPv6 literals keep their colons).
pub fn canonical_host(host: &str) -> String {
    let host = host.trim();
    let without_port = if host.starts_with('[') {
        host.split_once(']')
            .map_or(host, |(inside, _)| inside)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    without_port.to_ascii_lowercase()
}

fn path_matches(rule: &PathMatch, path: &str) -> bool {
    match rule {
        PathMatch::Exact(exact) => path == exact,
        PathMatch::Prefix(prefix) => {
            let prefix = prefix.trim_end_matches('/');
            prefix.is_empty()
                || path == prefix
                || (path.starts_with(prefix) && path[prefix.len()..].starts_with('/'))
        }
        PathMatch::Regex(regex) => regex.is_match(path),
    }
}

fn matches(rule: &RouteMatch, request: &RequestView<'_>) -> bool {
    let host_ok =
        rule.hosts.is_empty() || rule.hosts.iter().any(|h| canonical_host(h) == request.host);
    let path_ok = rule
        .path
        .as_ref()
        .is_none_or(|p| path_matches(p, request.path));
    let method_ok =
        rule.methods.is_empty() || rule.methods.iter().any(|m| m == request.method.as_str());
    let headers_ok = rule.headers.iter().all(|h| {
        let mut values = request.headers.get_all(h.name.as_str()).iter();
        match &h.value {
            None => values.next().is_some(),
            Some(expected) => values.any(|v| v.as_bytes() == expected.as_bytes()),
        }
    });
    host_ok && path_ok && method_ok && headers_ok
}

/// The first route of `service` that matches, the default route if the
/// service declares none, or `None` (404) if it declares some and none
/// matches.
pub fn select<'c>(
    service: &'c ServiceConfig,
    request: &RequestView<'_>,
) -> Option<&'c RouteConfig> {
    if service.routes.is_empty() {
        return Some(&DEFAULT_ROUTE);
    }
    service.routes.iter().find(|r| matches(&r.matches, request))
}

/// Picks a backend of a split by weight; `default` when there is no split.
pub fn pick_backend<'a>(
    backends: &'a [WeightedBackend],
    default: &'a str,
    rng: &mut impl Rng,
) -> &'a str {
    let total: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return default;
    }
    let mut draw = rng.random_range(0..total);
    for backend in backends {
        let weight = u64::from(backend.weight);
        if draw < weight {
            return &backend.service;
        }
        draw -= weight;
    }
    default
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderMatch;

    fn view<'a>(
        host: &'a str,
        method: &'a Method,
        path: &'a str,
        headers: &'a HeaderMap,
    ) -> RequestView<'a> {
        RequestView {
            host,
            method,
            path,
            headers,
        }
    }

    fn route(name: &str, matches: RouteMatch) -> RouteConfig {
        RouteConfig {
            name: name.into(),
            matches,
            ..RouteConfig::default()
        }
    }

    #[test]
    fn hosts_are_case_insensitive_and_portless() {
        assert_eq!(canonical_host("Registry:8080"), "registry");
        assert_eq!(canonical_host("REGISTRY"), "registry");
        assert_eq!(canonical_host("[::1]:80"), "::1");
        let service = ServiceConfig {
            routes: vec![route(
                "r",
                RouteMatch {
                    hosts: vec!["Registry.REC".into()],
                    ..RouteMatch::default()
                },
            )],
            ..ServiceConfig::default()
        };
        let headers = HeaderMap::new();
        let host = canonical_host("registry.rec:4140");
        assert!(select(&service, &view(&host, &Method::GET, "/", &headers)).is_some());
        assert!(select(&service, &view("other", &Method::GET, "/", &headers)).is_none());
    }

    #[test]
    fn first_matching_route_wins_on_path_method_and_headers() {
        let service = ServiceConfig {
            routes: vec![
                route(
                    "exact",
                    RouteMatch {
                        path: Some(PathMatch::Exact("/orders".into())),
                        methods: vec!["POST".into()],
                        ..RouteMatch::default()
                    },
                ),
                route(
                    "canary-header",
                    RouteMatch {
                        headers: vec![HeaderMatch {
                            name: "X-Canary".into(),
                            value: Some("1".into()),
                        }],
                        ..RouteMatch::default()
                    },
                ),
                route(
                    "api",
                    RouteMatch {
                        path: Some(PathMatch::Prefix("/api/".into())),
                        ..RouteMatch::default()
                    },
                ),
            ],
            ..ServiceConfig::default()
        };
        let mut headers = HeaderMap::new();
        let name = |m: &Method, p: &str, h: &HeaderMap| {
            select(&service, &view("s", m, p, h)).map(|r| r.name.clone())
        };
        assert_eq!(
            name(&Method::POST, "/orders", &headers).as_deref(),
            Some("exact")
        );
        assert_eq!(name(&Method::GET, "/orders", &headers), None);
        assert_eq!(name(&Method::GET, "/api", &headers).as_deref(), Some("api"));
        assert_eq!(
            name(&Method::GET, "/api/x", &headers).as_deref(),
            Some("api")
        );
        assert_eq!(name(&Method::GET, "/apix", &headers), None);
        headers.insert("x-canary", "1".parse().unwrap());
        assert_eq!(
            name(&Method::GET, "/apix", &headers).as_deref(),
            Some("canary-header")
        );
    }

    #[test]
    fn no_routes_means_the_default_route() {
        let headers = HeaderMap::new();
        let service = ServiceConfig::default();
        let chosen = select(&service, &view("s", &Method::GET, "/x", &headers));
        assert_eq!(chosen.map(|r| r.name.as_str()), Some("default"));
    }

    #[test]
    fn split_follows_weights() {
        let backends = vec![
            WeightedBackend {
                service: "stable".into(),
                weight: 90,
            },
            WeightedBackend {
                service: "canary".into(),
                weight: 10,
            },
        ];
        let mut rng = seam::Seed::new(3).rng();
        let canary = (0..10_000)
            .filter(|_| pick_backend(&backends, "x", &mut rng) == "canary")
            .count();
        assert!((800..1200).contains(&canary), "{canary}");
        assert_eq!(pick_backend(&[], "x", &mut rng), "x");
    }

    #[test]
    fn a_path_regex_matches_the_whole_path() {
        let regex = PathMatch::Regex(crate::config::PathRegex::new("/books/[^/]+").unwrap());
        assert!(path_matches(&regex, "/books/42"));
        assert!(
            !path_matches(&regex, "/books/42/pages"),
            "anchored at the end"
        );
        assert!(
            !path_matches(&regex, "/x/books/42"),
            "anchored at the start"
        );
        assert!(crate::config::PathRegex::new("/books/(").is_err());
    }
}
