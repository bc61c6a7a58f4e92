//! The real-mode security suite: a mesh that `meshsim up` started as
//! separate processes, attacked the way a local user, a workload gone bad or
//! a network attacker would, with real clients (rustls clients built here,
//! curl). Every attack is named and must fail closed; its refusal is shown.
//! Each attack whose success would prove something also runs a control
//! (the same request with the right credential), so no check here passes
//! because the request could never have worked.
//!
//! Heavy (a whole mesh, and a 10,000-connection flood): ignored in the
//! debug test run; `.ci/run` runs it in release:
//! `cargo test --release -p cli --test security -- --ignored --nocapture --test-threads=1`.
//! Needs `curl` on the PATH.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::{MESHSIM, Mesh, run, status_of};
use engine::deploy::MeshState;
use engine::install::Install;
use http::{Request, StatusCode};
use mesh::identity::{certificate_request, ed25519_key};
use mesh::tls::MeshTls;
use mesh::{KeySource, SpiffeId, ports};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use seam::real::SystemClock;
use seam::{Clock, SkewHandle};

/// What one attack got: refused (and how), or through (and what it got).
type Outcome = Result<String, String>;

struct Report(Vec<(&'static str, Outcome)>);

impl Report {
    fn attack(&mut self, name: &'static str, outcome: Outcome) {
        match &outcome {
            Ok(refusal) => println!("ATTACK {name:<44} REFUSED  {refusal}"),
            Err(got) => println!("ATTACK {name:<44} SUCCEEDED {got}"),
        }
        self.0.push((name, outcome));
    }

    fn assert_all_refused(&self) {
        let through: Vec<String> = self
            .0
            .iter()
            .filter_map(|(name, o)| o.as_ref().err().map(|got| format!("{name}: {got}")))
            .collect();
        println!(
            "{} attacks, {} refused, {} succeeded",
            self.0.len(),
            self.0.len() - through.len(),
            through.len()
        );
        assert!(
            through.is_empty(),
            "attacks that got through:\n{}",
            through.join("\n")
        );
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock::new(SkewHandle::default()))
}

fn now() -> SystemTime {
    clock().wall()
}

/// The mesh as an attacker who can read its public files sees it.
struct Target {
    dir: PathBuf,
    state: MeshState,
    /// The public trust bundle (`ca.pem`).
    roots: Vec<CertificateDer<'static>>,
}

impl Target {
    fn new(dir: &Path) -> Target {
        let state = MeshState::load(dir).expect("mesh.json");
        let pem = std::fs::read_to_string(dir.join("ca.pem")).expect("ca.pem");
        let roots = mesh::tls::bundle_from_pem(&[pem]).expect("bundle");
        Target {
            dir: dir.to_owned(),
            state,
            roots,
        }
    }

    fn addr(&self, host: &str, port: u16) -> SocketAddr {
        SocketAddr::new(self.state.ip(host).expect("host"), port)
    }

    fn id(&self, namespace: &str, sa: &str) -> SpiffeId {
        SpiffeId::new("rec.meshsim", namespace, sa).unwrap()
    }

    /// The install anyone can recompute from the scenario file's seed.
    fn derived(&self) -> Arc<Install> {
        let created = SystemTime::UNIX_EPOCH + Duration::from_secs(self.state.ca_created_unix_s);
        Install::new(
            self.state.scenario().expect("scenario"),
            seam::Seed::new(self.state.seed),
            created,
        )
        .expect("derived install")
    }

    /// TLS holding `chain` and `key`, trusting the mesh's real bundle.
    fn tls(&self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> MeshTls {
        let tls = MeshTls::new(clock(), self.roots.clone());
        tls.install(chain, key).expect("install");
        tls
    }

    fn anonymous(&self) -> MeshTls {
        MeshTls::new(clock(), self.roots.clone())
    }

    /// A certificate issued by the running CA (`meshsim certs issue`).
    fn issue(&self, identity: &str, out: &str) -> MeshTls {
        let out = self.dir.join(out);
        let issued = run(Command::new(MESHSIM)
            .args(["certs", "issue", "--identity", identity])
            .arg("--state-dir")
            .arg(&self.dir)
            .arg("--out")
            .arg(&out));
        assert!(
            issued.status.success(),
            "certs issue {identity}: {issued:?}"
        );
        let chain = CertificateDer::pem_file_iter(out.join("cert.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(out.join("key.pem")).unwrap();
        self.tls(chain, key)
    }
}

/// One HTTP/1.1 request over mTLS to a server that must prove `expected`.
async fn call(
    tls: &MeshTls,
    addr: SocketAddr,
    expected: &SpiffeId,
    present_leaf: bool,
    request: Request<mesh::http::Body>,
) -> Result<(StatusCode, String), String> {
    let io = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let stream = tls
        .connect(Box::new(io), expected, &[b"http/1.1"], present_leaf)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut sender = mesh::http::handshake(stream)
        .await
        .map_err(|e| format!("refused at the handshake: {e}"))?;
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
        .map_err(|e| format!("connection closed by the server (TLS alert): {e}"))?;
    let response = mesh::http::buffer_response(response, 64 * 1024)
        .await
        .map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&mesh::http::body_bytes(response.body())).into_owned();
    Ok((response.status(), body))
}

fn get(path: &str, host: &str) -> Request<mesh::http::Body> {
    Request::get(path)
        .header(http::header::HOST, host)
        .body(mesh::http::Body::default())
        .unwrap()
}

fn post(path: &str, host: &str, body: impl Into<Bytes>) -> Request<mesh::http::Body> {
    Request::post(path)
        .header(http::header::HOST, host)
        .body(mesh::http::Body::from(body.into()))
        .unwrap()
}

/// A refusal is anything but a 2xx; a 2xx is the attack succeeding.
fn refused(result: Result<(StatusCode, String), String>) -> Outcome {
    match result {
        Err(error) => Ok(error),
        Ok((status, body)) if !status.is_success() => Ok(format!("{status} {}", body.trim())),
        Ok((status, body)) => Err(format!("{status} {}", truncate(&body))),
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(120).collect()
}

fn csr_for(id: &SpiffeId) -> (String, PrivateKeyDer<'static>) {
    let (key, pkcs8) = ed25519_key(KeySource::Os).unwrap();
    (certificate_request(id, &key).unwrap(), pkcs8.into())
}

/// What the attacker holding the CA's issuer key signs: any identity.
fn forge_with_issuer(target: &Target, id: &SpiffeId) -> MeshTls {
    #[derive(serde::Deserialize)]
    struct Cert {
        der_hex: String,
        key_hex: String,
    }
    #[derive(serde::Deserialize)]
    struct State {
        issuers: Vec<Cert>,
    }
    let bytes = std::fs::read(target.dir.join("disk/ca/ca-state.json")).expect("ca state");
    let state: State = serde_json::from_slice(&bytes).unwrap();
    let issuer = &state.issuers[0];
    let issuer_der = CertificateDer::from(hex::decode(&issuer.der_hex).unwrap());
    let issuer_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &rustls_pki_types::PrivatePkcs8KeyDer::from(hex::decode(&issuer.key_hex).unwrap()),
        &rcgen::PKCS_ED25519,
    )
    .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_der(&issuer_der, issuer_key).unwrap();
    let (leaf_key, pkcs8) = ed25519_key(KeySource::Os).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![
        rcgen::SanType::URI(id.to_string().try_into().unwrap()),
        rcgen::SanType::DnsName(id.dns_name().try_into().unwrap()),
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::minutes(5);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
    target.tls(vec![leaf.der().clone(), issuer_der], pkcs8.into())
}

fn curl_status(args: &[&str]) -> (String, String) {
    let output = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args));
    let body = String::from_utf8_lossy(&output.stdout).into_owned();
    let err = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    (
        status_of(&output),
        format!("{} {err}", truncate(body.lines().next().unwrap_or(""))),
    )
}

fn curl_refused(args: &[&str]) -> Outcome {
    let (status, shown) = curl_status(args);
    if status.starts_with('2') {
        Err(format!("HTTP {status}: {shown}"))
    } else {
        Ok(format!("HTTP {status}: {}", shown.trim()))
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn file_modes(target: &Target) -> Outcome {
    let mut wrong = Vec::new();
    let mut expect = |path: PathBuf, want: u32| {
        let got = mode(&path);
        if got != want {
            wrong.push(format!("{} is {got:o}, not {want:o}", path.display()));
        }
    };
    expect(target.dir.clone(), 0o700);
    for private in [
        "tokens.json",
        "mesh.json",
        "disk/ca/ca-state.json",
        "disk/gateway-0/pod-secret",
    ] {
        expect(target.dir.join(private), 0o600);
    }
    expect(target.dir.join("disk/ca"), 0o700);
    expect(target.dir.join("logs"), 0o700);
    if wrong.is_empty() {
        Ok("state dir 0700; tokens.json, mesh.json, ca-state.json, pod-secret 0600".into())
    } else {
        Err(wrong.join("; "))
    }
}

/// Every refusal of the identity layer: forged and foreign certificates,
/// derived tokens.
async fn identity_attacks(target: &Target, report: &mut Report) {
    let gateway_addr = target.addr("gateway-0", ports::PROXY_INBOUND);
    let gateway = target.id("rec", "gateway");
    let registry_addr = target.addr("registry-0", ports::PROXY_INBOUND);
    let registry = target.id("rec", "registry");
    let ca_addr = target.addr("ca", ports::CA);
    let ca = target.id("system", "ca");
    let derived = target.derived();

    // Control: a leaf forged with the real issuer key for a mesh identity
    // gets through, so the forging below is sound and only the trust
    // domain differs.
    let forged_home = forge_with_issuer(target, &target.id("rec", "loadgen"));
    let control = call(
        &forged_home,
        gateway_addr,
        &gateway,
        true,
        get("/", "gateway"),
    )
    .await;
    assert!(
        control.is_ok(),
        "control forged-in-domain leaf must reach the app: {control:?}"
    );

    let evil = SpiffeId::new("evil-rec.meshsim", "rec", "gateway").unwrap();
    let forged_evil = forge_with_issuer(target, &evil);
    report.attack(
        "foreign-trust-domain-chained-to-mesh-ca",
        refused(
            call(
                &forged_evil,
                registry_addr,
                &registry,
                true,
                get("/", "registry"),
            )
            .await,
        ),
    );

    // The CA key anyone can derive from the scenario's seed.
    let mut authority = derived.ca_authority(&seam::MemDisk::default()).unwrap();
    let (csr, key) = csr_for(&gateway);
    let chain = authority.sign(&csr, &gateway, now()).unwrap();
    report.attack(
        "forged-cert-from-derived-ca-key",
        refused(
            call(
                &target.tls(chain, key),
                registry_addr,
                &registry,
                true,
                get("/", "registry"),
            )
            .await,
        ),
    );

    for (name, id) in [
        ("derived-bootstrap-token-gateway", gateway.clone()),
        (
            "derived-bootstrap-token-operator",
            target.id("system", "operator"),
        ),
    ] {
        let (csr, _) = csr_for(&id);
        let mut request = post("/v1/certify", "ca", csr);
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {}", derived.token(&id)).parse().unwrap(),
        );
        report.attack(
            name,
            refused(call(&target.anonymous(), ca_addr, &ca, false, request).await),
        );
    }

    // Self-signed, and a CA the mesh never trusted.
    let foreign = mesh::ca::CaMaterial::generate("rec.meshsim", KeySource::Os, now()).unwrap();
    let mut foreign = mesh::ca::Authority::new(foreign, Duration::from_secs(3600), BTreeMap::new());
    let (csr, key) = csr_for(&target.id("rec", "loadgen"));
    let chain = foreign
        .sign(&csr, &target.id("rec", "loadgen"), now())
        .unwrap();
    report.attack(
        "foreign-ca-client-certificate",
        refused(
            call(
                &target.tls(chain, key),
                gateway_addr,
                &gateway,
                true,
                get("/", "gateway"),
            )
            .await,
        ),
    );
    report.attack(
        "no-client-certificate",
        refused(
            call(
                &target.anonymous(),
                gateway_addr,
                &gateway,
                false,
                get("/", "gateway"),
            )
            .await,
        ),
    );
}

/// The control plane: registration, heartbeat and deregistration for a
/// service only from its own service account.
async fn control_attacks(target: &Target, loadgen: &MeshTls, report: &mut Report) {
    let control_addr = target.addr("control", ports::CONTROL);
    let control = target.id("system", "control");
    let registration = |service: &str, host: &str, sa: &str| {
        serde_json::json!({
            "service": service,
            "endpoint": {"host": host, "port": ports::PROXY_INBOUND, "identity": target.id("rec", sa).to_string()}
        })
        .to_string()
    };
    for (name, path, body) in [
        (
            "discovery-hijack-as-own-identity",
            "/v1/register",
            registration("registry", "gateway-0", "loadgen"),
        ),
        (
            "discovery-hijack-claiming-service-identity",
            "/v1/register",
            registration("registry", "gateway-0", "registry"),
        ),
        (
            "deregister-another-services-endpoint",
            "/v1/deregister",
            registration("registry", "registry-0", "registry"),
        ),
        (
            "register-a-service-that-does-not-exist",
            "/v1/register",
            registration("loadgen", "gateway-0", "loadgen"),
        ),
    ] {
        let outcome = refused(
            call(
                loadgen,
                control_addr,
                &control,
                true,
                post(path, "control", body),
            )
            .await,
        );
        report.attack(name, outcome);
    }
    // The endpoints are what the configuration says, still.
    let watched = call(
        loadgen,
        control_addr,
        &control,
        true,
        get("/v1/watch?after=0", "control"),
    )
    .await;
    let intact = match &watched {
        Ok((StatusCode::OK, body)) => {
            let snapshot: serde_json::Value = serde_json::from_str(body).unwrap();
            let registry = &snapshot["snapshot"]["services"]["registry"];
            let hosts: Vec<&str> = registry
                .as_array()
                .map(|eps| eps.iter().filter_map(|e| e["host"].as_str()).collect())
                .unwrap_or_default();
            if hosts == ["registry-0", "registry-1"] {
                Ok(format!("registry's endpoints still {hosts:?}"))
            } else {
                Err(format!("registry's endpoints are now {hosts:?}"))
            }
        }
        other => Err(format!("watch failed: {other:?}")),
    };
    report.attack("discovery-state-after-hijack-attempts", intact);
}

/// Revocation and token guessing at the CA.
async fn ca_attacks(target: &Target, report: &mut Report) {
    let ca_addr = target.addr("ca", ports::CA);
    let ca = target.id("system", "ca");
    let loadgen_id = target.id("rec", "loadgen");
    let victim = target.issue("loadgen", "victim");
    let workload = target.issue("loadgen", "workload");
    let renew = || {
        let (csr, _) = csr_for(&loadgen_id);
        post("/v1/certify", "ca", csr)
    };
    // Control: an unrevoked certificate renews.
    let control = call(&victim, ca_addr, &ca, true, renew()).await;
    assert!(
        matches!(&control, Ok((StatusCode::OK, _))),
        "an unrevoked certificate must renew: {control:?}"
    );
    let serial = victim.leaf().expect("leaf").serial_hex;
    let operator = target.issue("spiffe://rec.meshsim/ns/system/sa/operator", "operator");
    let revoked = call(
        &operator,
        ca_addr,
        &ca,
        true,
        post("/v1/revoke", "ca", serial.clone()),
    )
    .await;
    assert!(
        matches!(&revoked, Ok((StatusCode::OK, _))),
        "operator revokes: {revoked:?}"
    );
    report.attack(
        "renew-with-a-revoked-certificate",
        refused(call(&victim, ca_addr, &ca, true, renew()).await),
    );
    report.attack(
        "revoke-as-a-workload",
        refused(call(&workload, ca_addr, &ca, true, post("/v1/revoke", "ca", "")).await),
    );
    report.attack(
        "rotate-root-as-a-workload",
        refused(
            call(
                &workload,
                ca_addr,
                &ca,
                true,
                post("/v1/rotate/root/prepare", "ca", ""),
            )
            .await,
        ),
    );
    // Guessing tokens: each wrong one is refused, then the address is.
    let mut last = None;
    for guess in 0..6 {
        let (csr, _) = csr_for(&loadgen_id);
        let mut request = post("/v1/certify", "ca", csr);
        request.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("Bearer {guess:064x}").parse().unwrap(),
        );
        last = Some(call(&target.anonymous(), ca_addr, &ca, false, request).await);
    }
    let outcome = match last.expect("six guesses") {
        Ok((StatusCode::TOO_MANY_REQUESTS, body)) => Ok(format!("6th guess: 429 {}", body.trim())),
        other => Err(format!("6th guess was not throttled: {other:?}")),
    };
    report.attack("bootstrap-token-guessing", outcome);
}

/// Around the sidecar on the shared loopback, with curl.
fn loopback_attacks(target: &Target, report: &mut Report) {
    let gateway_ip = target.state.ip("gateway-0").unwrap();
    report.attack(
        "open-relay-through-outbound-listener",
        curl_refused(&[
            "-X",
            "POST",
            "-H",
            "host: registry",
            "-d",
            "{}",
            &format!("http://{gateway_ip}:{}/command", ports::PROXY_OUTBOUND),
        ]),
    );
    let registry_ip = target.state.ip("registry-0").unwrap();
    report.attack(
        "app-port-bypass-with-forged-peer-identity",
        curl_refused(&[
            "-H",
            "x-meshsim-peer-identity: spiffe://rec.meshsim/ns/rec/sa/gateway",
            &format!("http://{registry_ip}:{}/", ports::APP),
        ]),
    );
    report.attack(
        "plaintext-to-inbound",
        curl_refused(&[&format!("http://{gateway_ip}:{}/", ports::PROXY_INBOUND)]),
    );
    // The certificate `certs issue` wrote for loadgen earlier.
    let client = target.dir.join("loadgen");
    let name = "gateway.rec.identity.rec.meshsim";
    let path = |f: &str| client.join(f).to_string_lossy().into_owned();
    report.attack(
        "tls-1.2-with-a-valid-certificate",
        curl_refused(&[
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--cacert",
            &path("ca.pem"),
            "--cert",
            &path("cert.pem"),
            "--key",
            &path("key.pem"),
            "--resolve",
            &format!("{name}:{}:{gateway_ip}", ports::PROXY_INBOUND),
            &format!("https://{name}:{}/", ports::PROXY_INBOUND),
        ]),
    );
}

/// Secrets never leave through `/metrics` or the logs.
fn secrets_stay_home(target: &Target, report: &mut Report) {
    let tokens: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(target.dir.join("tokens.json")).unwrap())
            .unwrap();
    let pod_secret = std::fs::read_to_string(target.dir.join("disk/gateway-0/pod-secret")).unwrap();
    let mut secrets: Vec<&str> = tokens.values().map(String::as_str).collect();
    secrets.push(pod_secret.trim());
    let admin = target.addr("gateway-0", ports::PROXY_ADMIN);
    let (status, _) = curl_status(&[&format!("http://{admin}/metrics")]);
    let metrics = run(Command::new("curl").args([
        "-sS",
        "--max-time",
        "10",
        &format!("http://{admin}/metrics"),
    ]));
    let mut leaks = Vec::new();
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let mut texts = vec![("metrics".to_owned(), metrics)];
    for log in std::fs::read_dir(target.dir.join("logs"))
        .unwrap()
        .flatten()
    {
        texts.push((
            log.file_name().to_string_lossy().into_owned(),
            std::fs::read_to_string(log.path()).unwrap_or_default(),
        ));
    }
    for (name, text) in &texts {
        if secrets.iter().any(|s| text.contains(s)) {
            leaks.push(name.clone());
        }
    }
    let outcome = if status != "200" {
        Err(format!("/metrics answered {status}: cannot check it"))
    } else if leaks.is_empty() {
        Ok(format!(
            "no token or pod secret in /metrics or {} logs",
            texts.len() - 1
        ))
    } else {
        Err(format!("secrets in {leaks:?}"))
    };
    report.attack("secrets-in-metrics-or-logs", outcome);
}

#[test]
#[ignore = "a whole mesh of processes: run in release by .ci/run"]
fn every_attack_on_a_running_mesh_fails_closed() {
    let mesh = Mesh::start("security");
    let target = Target::new(&mesh.dir);
    let mut report = Report(Vec::new());
    report.attack("state-file-modes", file_modes(&target));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        identity_attacks(&target, &mut report).await;
        let loadgen = target.issue("loadgen", "loadgen");
        control_attacks(&target, &loadgen, &mut report).await;
        ca_attacks(&target, &mut report).await;
    });
    loopback_attacks(&target, &mut report);
    secrets_stay_home(&target, &mut report);
    report.assert_all_refused();
}

/// Connections each flood opens.
const FLOOD_CONNECTIONS: usize = 10_000;
/// How soon after the flood ends each listener must serve again.
const RECOVERY_MAX: Duration = Duration::from_secs(15);
/// The most memory a flooded process may hold (resident), during the flood
/// and after: the listener caps open connections at
/// `mesh::accept::CONNECTIONS_MAX` and reaps idle handshakes, so this
/// bounds the flood's cost whatever its size.
const RSS_MAX_MB: f64 = 96.0;

/// The pid of the mesh process whose command line has all of `words` and
/// the state directory.
fn pid_of(dir: &Path, words: &[&str]) -> u32 {
    let dir = dir.to_string_lossy();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let has = |w: &str| args.iter().any(|a| a == w);
        if args.iter().any(|a| *a == *dir) && words.iter().all(|w| has(w)) {
            return pid;
        }
    }
    panic!("no process {words:?} of {dir}");
}

fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Raises this process's soft descriptor limit to its hard limit (with
/// util-linux's `prlimit`: the workspace forbids `unsafe`, so no setrlimit
/// here) and returns the soft limit in force.
fn raise_fd_limit() -> u64 {
    let soft = || {
        std::fs::read_to_string("/proc/self/limits")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    if soft() < FLOOD_CONNECTIONS as u64 + 1000 {
        let _ = Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                "--nofile=unlimited:",
            ])
            .status();
        let hard = std::fs::read_to_string("/proc/self/limits")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
            .unwrap_or_default();
        let _ = Command::new("prlimit")
            .args([
                "--pid",
                &std::process::id().to_string(),
                &format!("--nofile={hard}:{hard}"),
            ])
            .status();
    }
    soft()
}

/// Opens `count` idle TCP connections to `addr` (none sends a byte);
/// returns the ones the kernel completed.
async fn flood(addr: SocketAddr, count: usize) -> Vec<tokio::net::TcpStream> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        // The flood is the test's own traffic on real sockets, not a
        // simulated host's task.
        #[allow(clippy::disallowed_methods)]
        set.spawn(tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(addr),
        ));
    }
    let mut open = Vec::new();
    while let Some(joined) = set.join_next().await {
        if let Ok(Ok(Ok(stream))) = joined {
            open.push(stream);
        }
    }
    open
}

#[test]
#[ignore = "a whole mesh and 30,000 connections: run in release by .ci/run"]
fn a_10000_connection_flood_leaves_sidecar_ca_and_control_plane_serving() {
    let limit = raise_fd_limit();
    assert!(
        limit >= FLOOD_CONNECTIONS as u64 + 500,
        "this test needs {} descriptors; the limit is {limit}",
        FLOOD_CONNECTIONS + 500
    );
    let mesh = Mesh::start("flood");
    let target = Target::new(&mesh.dir);
    let loadgen = target.issue("loadgen", "loadgen");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gateway = target.id("rec", "gateway");
    let (ca, control) = (target.id("system", "ca"), target.id("system", "control"));
    let targets: [(&str, SocketAddr, [&str; 2]); 3] = [
        (
            "sidecar gateway-0 inbound",
            target.addr("gateway-0", ports::PROXY_INBOUND),
            ["proxy", "gateway"],
        ),
        ("ca", target.addr("ca", ports::CA), ["ca", "serve"]),
        (
            "control plane",
            target.addr("control", ports::CONTROL),
            ["control", "serve"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, addr, words) in targets {
        let pid = pid_of(&mesh.dir, &words);
        let before = rss_mb(pid);
        let legit = || async {
            match name {
                "ca" => {
                    call(
                        &target.anonymous(),
                        addr,
                        &ca,
                        false,
                        get("/v1/bundle", "ca"),
                    )
                    .await
                }
                "control plane" => {
                    call(
                        &loadgen,
                        addr,
                        &control,
                        true,
                        get("/v1/watch?after=0", "control"),
                    )
                    .await
                }
                _ => call(&loadgen, addr, &gateway, true, get("/", "gateway")).await,
            }
        };
        let (opened, during, recovered, after) = runtime.block_on(async {
            let open = flood(addr, FLOOD_CONNECTIONS).await;
            let opened = open.len();
            tokio::time::sleep(Duration::from_secs(2)).await;
            let during = rss_mb(pid);
            drop(open);
            let ended = tokio::time::Instant::now();
            let mut recovered = None;
            while ended.elapsed() < RECOVERY_MAX {
                if legit().await.is_ok() {
                    recovered = Some(ended.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (opened, during, recovered, rss_mb(pid))
        });
        println!(
            "FLOOD {name:<26} {opened} of {FLOOD_CONNECTIONS} connections opened; RSS {before:.1} MB before, \
             {during:.1} MB during, {after:.1} MB after; serving again {}",
            recovered.map_or("NEVER".to_owned(), |d| format!(
                "{:.2} s after the flood ended",
                d.as_secs_f64()
            ))
        );
        if recovered.is_none() {
            failures.push(format!(
                "{name} did not serve within {RECOVERY_MAX:?} of the flood's end"
            ));
        }
        if during.max(after) > RSS_MAX_MB {
            failures.push(format!(
                "{name} RSS {:.1} MB over the {RSS_MAX_MB} MB bound",
                during.max(after)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
