//! The data plane end to end in the simulator: a client host's outbound
//! sidecar calls two `registry` replicas (inbound sidecar + a test app) over
//! HTTP/2 and mTLS, with the policy of each test served by a fixed
//! discovery. Each test drives real requests and asserts what came back.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{TestCa, id};
use http::{Request, Response, StatusCode};
use mesh::client::PROXY_ERROR_HEADER;
use mesh::config::{
    AbortFault, AppProtocol, AuthorizationPolicy, AuthzRule, CircuitBreaker, DelayFault,
    EndpointFault, FaultInjection, LoadBalancer, MeshConfig, Rate, RateLimit, RetryOn, RetryPolicy,
    RouteConfig, ServiceConfig, WeightedBackend,
};
use mesh::control::{Discovery, Endpoint, Snapshot};
use mesh::http::{Body, RequestBody, body_bytes, buffer_response, handshake};
use mesh::ports;
use mesh::proxy::limits::{self, Limits, Protocol};
use mesh::proxy::{PEER_IDENTITY_HEADER, TRACEPARENT_HEADER, admin, inbound, outbound};
use mesh::telemetry::{Telemetry, TraceContext};
use seam::{HostEnv, LOCALHOST, Seed, Trace};
use sim::{FaultSchedule, SimConfig, SimWorld};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a test varies.
#[derive(Clone, Default)]
struct Setup {
    /// Policy for `registry` (and `registry-canary`).
    config: MeshConfig,
    /// Serve registry-1 as service `registry-canary` instead.
    canary: bool,
    /// Limits of both listeners.
    limits: Limits,
}

/// The test app: echoes what it saw as JSON; `/status/N` answers N,
/// `/sleep/MS` sleeps first.
async fn app_answer(host: String, request: Request<RequestBody>) -> Response<Body> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let seen = serde_json::json!({
        "host": host,
        "path": path,
        "peer": header(PEER_IDENTITY_HEADER.as_str()),
        "traceparent": header(TRACEPARENT_HEADER.as_str()),
        "version": format!("{:?}", request.version()),
    });
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(status);
    }
    if let Some(ms) = path.strip_prefix("/sleep/").and_then(|m| m.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let mut response = Response::new(Body::from(Bytes::from(seen.to_string())));
    *response.status_mut() = status;
    response
}

async fn app(env: HostEnv, protocol: Protocol) {
    let mut listener = env.net.bind(ports::APP).await.unwrap();
    loop {
        let (io, _) = listener.accept().await.unwrap();
        let host = env.name.clone();
        seam::task::spawn(async move {
            let handler = move |request| app_answer(host.clone(), request);
            let _ = limits::serve(io, protocol, &Limits::default(), handler).await;
        });
    }
}

fn endpoint(host: &str, service: &str) -> Endpoint {
    Endpoint {
        host: host.into(),
        port: ports::PROXY_INBOUND,
        identity: id(service),
    }
}

fn snapshot(setup: &Setup) -> Snapshot {
    let mut services = BTreeMap::new();
    if setup.canary {
        services.insert(
            "registry".to_owned(),
            vec![endpoint("registry-0", "registry")],
        );
        services.insert(
            "registry-canary".to_owned(),
            vec![endpoint("registry-1", "registry-canary")],
        );
    } else {
        services.insert(
            "registry".to_owned(),
            vec![
                endpoint("registry-0", "registry"),
                endpoint("registry-1", "registry"),
            ],
        );
    }
    Snapshot {
        version: 1,
        services,
        config: setup.config.clone(),
    }
}

/// Runs the world; `test` runs on the client host once its sidecar is up.
fn run<F, Fut>(setup: Setup, test: F) -> (Telemetry, Trace)
where
    F: FnOnce(HostEnv) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let config = SimConfig {
        seed: Seed::new(11),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(1),
        duration_limit: Duration::from_secs(120),
        tcp_capacity: 1024,
    };
    let trace = Trace::keeping_events();
    let telemetry = Telemetry::new();
    let mut world = SimWorld::new(config, trace.clone());
    let mut ca = TestCa::new(5, SimConfig::epoch());
    let discovery = Discovery::fixed(snapshot(&setup));
    for (index, host) in ["registry-0", "registry-1"].into_iter().enumerate() {
        let service = if setup.canary && index == 1 {
            "registry-canary"
        } else {
            "registry"
        };
        let env = world.env_for(host);
        let tls = ca.workload(service, env.clock.clone(), 20 + index as u64);
        let protocol = match setup.config.service(service).app_protocol {
            AppProtocol::Http1 => Protocol::Http1,
            AppProtocol::Http2 => Protocol::Http2,
        };
        let inbound = inbound::InboundConfig {
            service: service.to_owned(),
            discovery: Some(discovery.clone()),
            telemetry: telemetry.proxy(host, env.clock.clone()),
            limits: setup.limits.clone(),
        };
        world.host(host, move |env| {
            let (tls, inbound) = (tls.clone(), inbound.clone());
            async move {
                seam::task::spawn(app(env.clone(), protocol));
                inbound::serve_with(env, tls, inbound).await?;
                Ok(())
            }
        });
    }
    let client_env = world.env_for("client");
    let client_tls = ca.workload("client", client_env.clock.clone(), 30);
    let outbound = outbound::OutboundConfig {
        request_timeout: Duration::from_secs(5),
        telemetry: telemetry.proxy("client", client_env.clock.clone()),
        limits: setup.limits.clone(),
    };
    world.client("client", move |env| async move {
        seam::task::spawn(outbound::serve_with(
            env.clone(),
            client_tls,
            discovery,
            outbound,
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
        test(env).await;
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
    (telemetry, trace)
}

/// A response through the client's outbound sidecar.
struct Answer {
    status: StatusCode,
    proxy_error: Option<String>,
    body: serde_json::Value,
}

async fn call(
    env: &HostEnv,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let io = env
        .net
        .connect(LOCALHOST, ports::PROXY_OUTBOUND)
        .await
        .unwrap();
    let mut sender = handshake(io).await.unwrap();
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Body::default()).unwrap();
    let response = buffer_response(sender.send_request(request).await.unwrap(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status: response.status(),
        proxy_error: response
            .headers()
            .get(PROXY_ERROR_HEADER)
            .map(|v| v.to_str().unwrap().to_owned()),
        body: serde_json::from_slice(&body_bytes(response.body())).unwrap_or_default(),
    }
}

fn registry(service: ServiceConfig) -> MeshConfig {
    MeshConfig {
        services: BTreeMap::from([("registry".to_owned(), service)]),
        ..MeshConfig::default()
    }
}

fn retry_route(retry_on: Vec<RetryOn>) -> RouteConfig {
    RouteConfig {
        name: "all".into(),
        retry: Some(RetryPolicy {
            retry_on,
            ..RetryPolicy::default()
        }),
        ..RouteConfig::default()
    }
}

fn sick_replica(fault: FaultInjection) -> Vec<EndpointFault> {
    vec![EndpointFault {
        hosts: vec!["registry-1".into()],
        from_ms: 0,
        until_ms: None,
        fault,
    }]
}

#[test]
fn retries_route_around_a_503_but_never_resend_a_post() {
    let mut config = registry(ServiceConfig {
        load_balancer: LoadBalancer::RoundRobin,
        routes: vec![retry_route(vec![RetryOn::Unavailable])],
        ..ServiceConfig::default()
    });
    config.endpoint_faults = sick_replica(FaultInjection {
        abort: Some(AbortFault {
            percent: 100.0,
            status: 503,
        }),
        delay: None,
    });
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let sink = statuses.clone();
    let (telemetry, _) = run(
        Setup {
            config,
            ..Setup::default()
        },
        move |env| async move {
            for method in ["GET", "GET", "GET", "GET", "POST", "POST"] {
                let answer = call(&env, method, "Registry:80", "/recs", &[]).await;
                sink.lock().unwrap().push((method, answer.status.as_u16()));
            }
        },
    );
    let statuses = statuses.lock().unwrap().clone();
    assert!(
        statuses
            .iter()
            .filter(|(m, _)| *m == "GET")
            .all(|(_, s)| *s == 200),
        "every GET is retried onto the healthy replica: {statuses:?}"
    );
    assert!(
        statuses.contains(&("POST", 503)),
        "a POST that reached the sick replica is not resent: {statuses:?}"
    );
    let report = telemetry.report();
    let total = report.service_total("registry", Duration::ZERO, Duration::from_secs(3600));
    assert_eq!(total.requests, 6);
    assert!(total.retries >= 1 && total.attempts == total.requests + total.retries);
}

#[test]
fn per_try_timeout_moves_a_read_to_another_replica() {
    let mut route = retry_route(vec![RetryOn::PerTryTimeout]);
    route.per_try_timeout_ms = Some(100);
    let mut config = registry(ServiceConfig {
        load_balancer: LoadBalancer::RoundRobin,
        routes: vec![route],
        ..ServiceConfig::default()
    });
    config.endpoint_faults = sick_replica(FaultInjection {
        abort: None,
        delay: Some(DelayFault {
            percent: 100.0,
            fixed_delay_ms: 2000,
        }),
    });
    run(
        Setup {
            config,
            ..Setup::default()
        },
        |env| async move {
            for _ in 0..4 {
                let started = tokio::time::Instant::now();
                let answer = call(&env, "GET", "registry", "/recs", &[]).await;
                assert_eq!(answer.status, StatusCode::OK);
                assert_eq!(answer.body["host"], "registry-0");
                assert!(
                    started.elapsed() < Duration::from_millis(400),
                    "{:?}",
                    started.elapsed()
                );
            }
        },
    );
}

#[test]
fn authorization_is_default_deny_with_a_bare_403_on_normalized_paths() {
    let config = registry(ServiceConfig {
        authorization: Some(AuthorizationPolicy {
            allow: vec![AuthzRule {
                paths: vec!["/public*".into()],
                ..AuthzRule::default()
            }],
            deny: vec![],
        }),
        ..ServiceConfig::default()
    });
    let (telemetry, trace) = run(
        Setup {
            config,
            ..Setup::default()
        },
        |env| async move {
            let allowed = call(&env, "GET", "registry", "/public/./a//b?x=1", &[]).await;
            assert_eq!(allowed.status, StatusCode::OK);
            assert_eq!(
                allowed.body["path"], "/public/a/b?x=1",
                "the app sees the normalized path"
            );
            assert_eq!(
                allowed.body["peer"], "spiffe://test.meshsim/ns/rec/sa/client",
                "the app learns the verified caller"
            );
            let spoofed = call(
                &env,
                "GET",
                "registry",
                "/public",
                &[(PEER_IDENTITY_HEADER.as_str(), "spiffe://x/admin")],
            )
            .await;
            assert_eq!(
                spoofed.body["peer"],
                "spiffe://test.meshsim/ns/rec/sa/client"
            );
            for target in ["/private", "/public/../private", "/public/%2e%2e/private"] {
                let denied = call(&env, "GET", "registry", target, &[]).await;
                assert_eq!(denied.status, StatusCode::FORBIDDEN, "{target}");
                assert_eq!(
                    denied.body,
                    serde_json::Value::Null,
                    "no detail leaks: {target}"
                );
            }
            let refused = call(&env, "GET", "registry", "/public%2F..%2Fprivate", &[]).await;
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        },
    );
    let decisions = telemetry.report().authz;
    assert!(
        decisions
            .iter()
            .any(|(d, _)| d.verdict == "deny" && d.raw_target == "/private")
    );
    assert!(decisions.iter().any(|(d, _)| d.verdict == "allow"));
    assert!(
        trace
            .events()
            .iter()
            .any(|e| e.kind == seam::event::INBOUND_AUTHZ_DENY)
    );
}

#[test]
fn rate_limit_answers_429_per_identity() {
    let config = registry(ServiceConfig {
        load_balancer: LoadBalancer::RoundRobin,
        rate_limit: Some(RateLimit {
            per_identity: Some(Rate {
                requests_per_s: 2.0,
                burst: Some(2),
            }),
            ..RateLimit::default()
        }),
        ..ServiceConfig::default()
    });
    run(
        Setup {
            config,
            ..Setup::default()
        },
        |env| async move {
            // Each replica limits on its own: 2 each, back to back.
            let mut statuses = Vec::new();
            for _ in 0..8 {
                statuses.push(
                    call(&env, "GET", "registry", "/recs", &[])
                        .await
                        .status
                        .as_u16(),
                );
            }
            assert_eq!(
                statuses.iter().filter(|s| **s == 200).count(),
                4,
                "{statuses:?}"
            );
            assert_eq!(
                statuses.iter().filter(|s| **s == 429).count(),
                4,
                "{statuses:?}"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                call(&env, "GET", "registry", "/recs", &[]).await.status,
                StatusCode::OK
            );
        },
    );
}

#[test]
fn circuit_breaker_overflow_fails_fast_with_a_reason() {
    let config = registry(ServiceConfig {
        circuit_breaker: CircuitBreaker {
            max_requests: 1,
            max_pending_requests: 0,
            ..CircuitBreaker::default()
        },
        ..ServiceConfig::default()
    });
    run(
        Setup {
            config,
            ..Setup::default()
        },
        |env| async move {
            let env = Arc::new(env);
            let mut calls = Vec::new();
            for _ in 0..4 {
                let env = env.clone();
                calls.push(seam::task::spawn(async move {
                    let started = tokio::time::Instant::now();
                    let answer = call(&env, "GET", "registry", "/sleep/300", &[]).await;
                    (answer.status, answer.proxy_error, started.elapsed())
                }));
            }
            let mut outcomes = Vec::new();
            for call in calls {
                outcomes.push(call.await.unwrap());
            }
            let ok = outcomes.iter().filter(|o| o.0 == StatusCode::OK).count();
            assert_eq!(ok, 2, "one in flight per replica: {outcomes:?}");
            for (status, reason, elapsed) in outcomes.iter().filter(|o| o.0 != StatusCode::OK) {
                assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(
                    reason.as_deref(),
                    Some("circuit open: max pending requests")
                );
                assert!(
                    *elapsed < Duration::from_millis(50),
                    "fails fast: {elapsed:?}"
                );
            }
        },
    );
}

#[test]
fn sidecars_multiplex_http2_and_propagate_trace_context() {
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (telemetry, trace) = run(Setup::default(), move |env| async move {
        let env = Arc::new(env);
        let mut calls = Vec::new();
        for _ in 0..20 {
            let env = env.clone();
            calls.push(seam::task::spawn(async move {
                call(
                    &env,
                    "GET",
                    "registry",
                    "/recs",
                    &[(TRACEPARENT_HEADER.as_str(), parent)],
                )
                .await
            }));
        }
        for call in calls {
            let answer = call.await.unwrap();
            assert_eq!(answer.status, StatusCode::OK);
            let seen = TraceContext::parse(answer.body["traceparent"].as_str().unwrap().as_bytes())
                .unwrap();
            assert_eq!(seen.trace_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_ne!(
                seen.parent_id,
                [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
            );
        }
    });
    let connects = trace
        .events()
        .iter()
        .filter(|e| e.kind == seam::event::OUTBOUND_CONNECT)
        .count();
    assert!(
        connects <= 2,
        "20 concurrent requests share one connection per replica, saw {connects}"
    );
    let spans = telemetry.spans();
    let outbound: Vec<_> = spans.iter().filter(|s| s.host == "client").collect();
    assert_eq!(outbound.len(), 20);
    assert!(
        outbound
            .iter()
            .all(|s| s.parent_id.as_deref() == Some("00f067aa0ba902b7"))
    );
    for server in spans.iter().filter(|s| s.host != "client") {
        assert!(
            outbound
                .iter()
                .any(|c| Some(&c.span_id) == server.parent_id.as_ref()),
            "every inbound span's parent is an outbound span"
        );
        assert_eq!(server.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    let metrics = telemetry.prometheus("registry-0");
    let inbound = metrics
        .lines()
        .find(|l| l.starts_with("response_total{direction=\"inbound\""))
        .unwrap_or_else(|| panic!("{metrics}"));
    for label in [
        "dst_service=\"registry\"",
        "tls=\"true\"",
        "client_id=\"spiffe://test.meshsim/ns/rec/sa/client\"",
        "classification=\"success\"",
        "status_code=\"200\"",
    ] {
        assert!(inbound.contains(label), "{label} in {inbound}");
    }
    assert!(!telemetry.access_log("client").is_empty());
}

#[test]
fn http2_toward_the_app_when_the_service_speaks_it() {
    let config = registry(ServiceConfig {
        app_protocol: AppProtocol::Http2,
        ..ServiceConfig::default()
    });
    run(
        Setup {
            config,
            ..Setup::default()
        },
        |env| async move {
            let answer = call(&env, "GET", "registry", "/recs?x=1", &[]).await;
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.body["version"], "HTTP/2.0");
            assert_eq!(answer.body["path"], "/recs?x=1");
        },
    );
}

#[test]
fn fault_injection_and_traffic_split_follow_their_percentages() {
    let route = RouteConfig {
        name: "split".into(),
        fault: Some(FaultInjection {
            abort: Some(AbortFault {
                percent: 20.0,
                status: 418,
            }),
            delay: None,
        }),
        backends: vec![
            WeightedBackend {
                service: "registry".into(),
                weight: 75,
            },
            WeightedBackend {
                service: "registry-canary".into(),
                weight: 25,
            },
        ],
        ..RouteConfig::default()
    };
    let config = registry(ServiceConfig {
        routes: vec![route],
        ..ServiceConfig::default()
    });
    let setup = Setup {
        config,
        canary: true,
        ..Setup::default()
    };
    run(setup, |env| async move {
        let mut teapots = 0;
        let mut canary = 0;
        for _ in 0..400 {
            let answer = call(&env, "GET", "registry", "/recs", &[]).await;
            if answer.status == StatusCode::IM_A_TEAPOT {
                assert_eq!(answer.proxy_error.as_deref(), Some("fault injected"));
                teapots += 1;
            } else if answer.body["host"] == "registry-1" {
                assert_eq!(answer.status, StatusCode::OK);
                canary += 1;
            }
        }
        assert!((50..110).contains(&teapots), "~20 % aborted: {teapots}");
        assert!(
            (50..110).contains(&canary),
            "~25 % of the rest to the canary: {canary}"
        );
    });
}

#[test]
fn loopback_targets_and_the_admin_port_are_never_reachable_through_the_proxy() {
    let (_, trace) = run(Setup::default(), |env| async move {
        let (_ready_tx, ready) = tokio::sync::watch::channel(true);
        seam::task::spawn(admin::serve(env.clone(), Telemetry::new(), ready));
        for host in [
            "localhost:4191",
            "127.0.0.1:4191",
            "client",
            "[::1]:4191",
            "LOCALHOST",
        ] {
            let answer = call(&env, "GET", host, "/shutdown", &[]).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{host}");
            assert_eq!(
                answer.proxy_error.as_deref(),
                Some("refusing a loopback target")
            );
        }
        let unknown = call(&env, "GET", "nosuchservice", "/", &[]).await;
        assert_eq!(unknown.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(unknown.proxy_error.as_deref(), Some("no endpoints"));
    });
    let events = trace.events();
    assert!(
        events
            .iter()
            .any(|e| e.kind == seam::event::ADMIN_REFUSED && e.host == "client"),
        "in the simulation no address is loopback, so the admin port declines to serve"
    );
    assert!(events.iter().all(|e| e.kind != seam::event::ADMIN_LISTEN));
}

#[test]
fn malformed_http_gets_400_oversized_headers_431_and_idle_connections_close() {
    let limits = Limits {
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    run(
        Setup {
            limits,
            ..Setup::default()
        },
        |env| async move {
            let raw = |bytes: Vec<u8>| {
                let env = env.clone();
                async move {
                    let mut io = env
                        .net
                        .connect(LOCALHOST, ports::PROXY_OUTBOUND)
                        .await
                        .unwrap();
                    io.write_all(&bytes).await.unwrap();
                    let mut reply = vec![0u8; 64];
                    let n = tokio::time::timeout(Duration::from_secs(5), io.read(&mut reply))
                        .await
                        .unwrap()
                        .unwrap_or(0);
                    String::from_utf8_lossy(&reply[..n]).into_owned()
                }
            };
            assert!(
                raw(b"GARBAGE\r\n\r\n".to_vec())
                    .await
                    .starts_with("HTTP/1.1 400")
            );
            let big = format!(
                "GET / HTTP/1.1\r\nhost: registry\r\nx-big: {}\r\n\r\n",
                "a".repeat(20_000)
            );
            assert!(raw(big.into_bytes()).await.starts_with("HTTP/1.1 431"));
            let mut idle = env
                .net
                .connect(LOCALHOST, ports::PROXY_OUTBOUND)
                .await
                .unwrap();
            let started = tokio::time::Instant::now();
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(30), idle.read(&mut byte)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "closed, not timed out: {read:?}"
            );
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_secs(2) && waited < Duration::from_secs(10),
                "{waited:?}"
            );
        },
    );
}

#[test]
fn admin_serves_metrics_on_the_loopback_in_real_mode() {
    use seam::SkewHandle;
    use seam::real::{AddressBook, SystemClock};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let book = AddressBook::ephemeral();
    let clock = SystemClock::new(SkewHandle::default());
    let env = HostEnv {
        name: "registry-0".into(),
        net: Arc::new(book.net_for("registry-0")),
        clock: Arc::new(clock.sibling(SkewHandle::default())),
        disk: Arc::new(seam::MemDisk::default()),
        slow: seam::SlowHandle::default(),
        seed: Seed::new(1),
        trace: Trace::keeping_events(),
    };
    let telemetry = Telemetry::new();
    telemetry
        .proxy("registry-0", env.clock.clone())
        .original_request("registry");
    runtime.block_on(async {
        let (_ready_tx, ready) = tokio::sync::watch::channel(true);
        seam::task::spawn(admin::serve(env.clone(), telemetry, ready));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let address = book
            .lookup("registry-0", ports::PROXY_ADMIN)
            .expect("admin bound");
        assert!(address.ip().is_loopback());
        let get = |method: &'static str, path: &'static str| {
            let env = env.clone();
            async move {
                let io = env
                    .net
                    .connect("registry-0", ports::PROXY_ADMIN)
                    .await
                    .unwrap();
                let mut sender = handshake(io).await.unwrap();
                let request = Request::builder()
                    .method(method)
                    .uri(path)
                    .header("host", "admin")
                    .body(Body::default())
                    .unwrap();
                let response =
                    buffer_response(sender.send_request(request).await.unwrap(), 1 << 20)
                        .await
                        .unwrap();
                (
                    response.status(),
                    String::from_utf8_lossy(&body_bytes(response.body())).into_owned(),
                )
            }
        };
        let (status, text) = get("GET", "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("# TYPE request_total counter"), "{text}");
        assert_eq!(get("GET", "/ready").await.0, StatusCode::OK);
        assert_eq!(
            get("POST", "/shutdown").await.0,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(get("GET", "/shutdown").await.0, StatusCode::NOT_FOUND);
    });
    assert!(
        env.trace
            .events()
            .iter()
            .any(|e| e.kind == seam::event::ADMIN_LISTEN)
    );
}

/// Another host must not use a workload's outbound listener as a relay: it
/// would borrow that workload's identity.
#[test]
fn the_outbound_listener_serves_only_its_own_host() {
    let (_, trace) = run(Setup::default(), |env| async move {
        // From the client's own host: served.
        assert_eq!(
            call(&env, "GET", "registry", "/recs", &[]).await.status,
            StatusCode::OK
        );
    });
    assert!(
        trace
            .events()
            .iter()
            .all(|e| e.kind != seam::event::OUTBOUND_REFUSED_REMOTE)
    );
    let refused = Arc::new(Mutex::new(None));
    let sink = refused.clone();
    let setup = Setup::default();
    let config = SimConfig {
        seed: Seed::new(12),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(1),
        duration_limit: Duration::from_secs(60),
        tcp_capacity: 64,
    };
    let trace = Trace::keeping_events();
    let mut world = SimWorld::new(config, trace.clone());
    let mut ca = TestCa::new(5, SimConfig::epoch());
    let relay_env = world.env_for("gateway-0");
    let relay_tls = ca.workload("gateway", relay_env.clock.clone(), 40);
    let outbound = outbound::OutboundConfig {
        request_timeout: Duration::from_secs(5),
        telemetry: Telemetry::new().proxy("gateway-0", relay_env.clock.clone()),
        limits: Limits::default(),
    };
    let discovery = Discovery::fixed(snapshot(&setup));
    world.host("gateway-0", move |env| {
        let (tls, discovery, outbound) = (relay_tls.clone(), discovery.clone(), outbound.clone());
        async move {
            outbound::serve_with(env, tls, discovery, outbound).await?;
            Ok(())
        }
    });
    world.client("rogue", move |env| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut io = env
            .net
            .connect("gateway-0", ports::PROXY_OUTBOUND)
            .await
            .unwrap();
        io.write_all(b"GET /recs HTTP/1.1\r\nhost: registry\r\n\r\n")
            .await
            .unwrap();
        let mut reply = vec![0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(2), io.read(&mut reply)).await;
        *sink.lock().unwrap() = Some(matches!(read, Ok(Ok(0)) | Ok(Err(_))));
        Ok(())
    });
    world.run(&FaultSchedule::default()).unwrap();
    assert_eq!(
        *refused.lock().unwrap(),
        Some(true),
        "the relay attempt got no answer"
    );
    assert!(
        trace
            .events()
            .iter()
            .any(|e| e.kind == seam::event::OUTBOUND_REFUSED_REMOTE)
    );
}
