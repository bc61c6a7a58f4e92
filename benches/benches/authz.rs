//! The authorization matcher on the inbound hot path: path normalization
//! (the CVE corpus's tricks) and policy evaluation against a policy of
//! realistic size (8 allow rules with prefix/suffix wildcards, 2 deny
//! rules). Run with `cargo bench -p benches --bench authz`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh::authz::{evaluate, normalize_path};
use mesh::config::{AuthorizationPolicy, AuthzRule};

fn rule(principals: &[&str], methods: &[&str], paths: &[&str]) -> AuthzRule {
    AuthzRule {
        principals: principals.iter().map(|s| s.to_string()).collect(),
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
        ..AuthzRule::default()
    }
}

fn policy() -> AuthorizationPolicy {
    let td = "spiffe://rec.meshsim/ns/rec/sa/";
    let p = |sa: &str| format!("{td}{sa}");
    let gateway = p("gateway");
    let settlement = p("settlement");
    AuthorizationPolicy {
        allow: vec![
            rule(&[&p("loadgen")], &["GET"], &["/quote*"]),
            rule(&[&p("loadgen")], &["POST"], &["/orders*", "/retirements"]),
            rule(&[&gateway], &[], &["/v1/*"]),
            rule(&[&settlement], &["POST"], &["/v1/transfer", "/v1/settle"]),
            rule(&[&p("market")], &["POST"], &["/v1/command"]),
            rule(&["spiffe://rec.meshsim/ns/ops/*"], &["GET"], &["/admin/*"]),
            rule(&[&p("registry")], &[], &["*/events"]),
            rule(&[&p("accounts")], &["GET"], &["/v1/balance/*"]),
        ],
        deny: vec![
            rule(&["*"], &[], &["/admin/secrets*"]),
            rule(&[&p("rogue")], &[], &["*"]),
        ],
    }
}

fn bench_authz(c: &mut Criterion) {
    let policy = policy();
    let mut group = c.benchmark_group("authz");
    group.bench_function("normalize_plain", |b| {
        b.iter(|| normalize_path(black_box("/v1/balance/participant-7")))
    });
    group.bench_function("normalize_tricky", |b| {
        b.iter(|| normalize_path(black_box("/public/%2e/%2E%2E//v1/./balance/%2e%2e/x")))
    });
    group.bench_function("evaluate_allow_late_rule", |b| {
        b.iter(|| {
            evaluate(
                black_box(&policy),
                black_box("spiffe://rec.meshsim/ns/rec/sa/accounts"),
                black_box("GET"),
                black_box("/v1/balance/participant-7"),
            )
        })
    });
    group.bench_function("evaluate_default_deny", |b| {
        b.iter(|| {
            evaluate(
                black_box(&policy),
                black_box("spiffe://rec.meshsim/ns/rec/sa/stranger"),
                black_box("DELETE"),
                black_box("/v1/everything"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench_authz);
criterion_main!(benches);
