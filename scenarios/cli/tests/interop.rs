//! Real clients against a mesh that `meshsim up` started as separate
//! processes: `meshsim load` with a certificate from `meshsim certs issue`
//! and `--resolve` drives the gateway over mTLS; curl reaches the app and,
//! without a certificate, with a foreign CA's certificate and in plaintext,
//! is refused; `openssl s_client` sees TLS 1.3 and the server's SPIFFE ID;
//! `run --real --otlp-endpoint` posts the run's spans to a receiver on a
//! real socket; a real Prometheus scrapes every sidecar (ignored: run by `.ci/run` after
//! `scripts/install-prometheus.sh`). Needs `curl` and `openssl` on the PATH.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{MESHSIM, Mesh, curl, run, smoke, status_of};

use apps::rec::genesis::Genesis;
use spec::Scenario;

/// `meshsim load` against one replica's inbound listener over mTLS, named
/// by the DNS name in its certificate and dialled with `--resolve`.
fn load(entry: &serde_json::Value, tls: [&str; 6], bearer: &str, extra: &[&str]) -> Command {
    let inbound = entry["inbound"].as_str().expect("inbound");
    let (ip, port) = inbound.rsplit_once(':').expect("host:port");
    let name = entry["server_name"].as_str().expect("server_name");
    let mut command = Command::new(MESHSIM);
    command
        .arg("load")
        .arg(format!("https://{name}:{port}/quote?product=solar-2025"))
        .args(["--resolve", &format!("{name}:{port}:{ip}")])
        .args(tls)
        .args(["-H", bearer])
        .args(extra);
    command
}

/// Polls with single requests until the gateway answers 2xx (discovery
/// may still be converging on a cold mesh).
fn wait_for_gateway(entry: &serde_json::Value, tls: [&str; 6], bearer: &str, out: &Path) {
    let out = out.to_str().unwrap();
    let mut last = None;
    for _ in 0..50 {
        let output = run(load(
            entry,
            tls,
            bearer,
            &["-n", "1", "--rate", "10", "--timeout", "5s", "--out", out],
        )
        .args(["--threshold", "error_rate<1%"]));
        if output.status.success() {
            return;
        }
        last = Some(output);
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("meshsim load with a mesh certificate never got 2xx from the gateway: {last:?}");
}

#[test]
fn real_clients_against_a_mesh_of_processes() {
    let mesh = Mesh::start("interop");
    let dir = mesh.dir.clone();
    let ca = dir.join("ca.pem");
    assert!(
        std::fs::read_to_string(&ca)
            .expect("ca.pem")
            .contains("BEGIN CERTIFICATE")
    );
    let addresses = mesh.addresses();
    let gateway = &addresses["gateway-0"];
    assert_eq!(
        gateway["identity"],
        "spiffe://rec.meshsim/ns/rec/sa/gateway"
    );
    assert!(addresses.contains_key("registry-1"));

    // A certificate for the load generator's identity, the one the gateway serves.
    let client = dir.join("client");
    let issued = run(Command::new(MESHSIM)
        .args(["certs", "issue", "--identity", "loadgen"])
        .arg("--state-dir")
        .arg(&dir)
        .arg("--out")
        .arg(&client));
    assert!(issued.status.success(), "certs issue: {issued:?}");
    let (cert, key) = (client.join("cert.pem"), client.join("key.pem"));
    let (cert, key, ca) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        ca.to_str().unwrap(),
    );

    // An identity without a bootstrap token gets nothing.
    let refused = run(Command::new(MESHSIM)
        .args(["certs", "issue", "--identity", "nobody"])
        .arg("--state-dir")
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("nobody")));
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");

    // The full path: gateway → accounts (bearer check) → market → market-db,
    // driven by meshsim's own load generator over mTLS: 1,000 requests at
    // 200/s, every one answered 2xx.
    let scenario = Scenario::load(&smoke()).expect("smoke loads");
    let genesis = Genesis::new(&scenario.app);
    let bearer = format!("authorization: Bearer {}", genesis.participants[0].token);
    let tls = ["--cacert", ca, "--cert", cert, "--key", key];
    wait_for_gateway(gateway, tls, &bearer, &dir.join("load-ready"));
    let load_out = dir.join("load");
    let loaded = run(load(
        gateway,
        tls,
        &bearer,
        &["-n", "1000", "--rate", "200", "--json", "--out"],
    )
    .arg(&load_out));
    assert!(loaded.status.success(), "meshsim load: {loaded:?}");
    let summary: serde_json::Value =
        serde_json::from_slice(&loaded.stdout).expect("--json prints the summary");
    assert_eq!(summary["requests"]["total"], 1000, "{summary}");
    assert_eq!(summary["requests"]["ok"], 1000, "{summary}");
    let text = String::from_utf8_lossy(&loaded.stderr);
    assert!(
        text.contains("statuses   200: 1000"),
        "every answer a 200: {text}"
    );

    // curl, too, reaches the app with a mesh certificate.
    let answered = curl(
        gateway,
        &["--cacert", ca, "--cert", cert, "--key", key, "-H", &bearer],
        "/quote?product=solar-2025",
    );
    assert_eq!(status_of(&answered), "200", "{answered:?}");

    // The app itself answers (not the proxy): no bearer token is its 401.
    let no_bearer = curl(
        gateway,
        &["--cacert", ca, "--cert", cert, "--key", key],
        "/quote",
    );
    assert_eq!(status_of(&no_bearer), "401", "{no_bearer:?}");
    assert!(String::from_utf8_lossy(&no_bearer.stdout).contains("bearer"));

    // Refused: no client certificate.
    let anonymous = curl(gateway, &["--cacert", ca], "/quote");
    assert!(!anonymous.status.success(), "{anonymous:?}");
    assert_eq!(status_of(&anonymous), "000");

    // Refused: a self-signed certificate claiming the same SPIFFE ID.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    let made = run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ed25519", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=loadgen"])
        .args([
            "-addext",
            "subjectAltName=URI:spiffe://rec.meshsim/ns/rec/sa/loadgen",
        ])
        .arg("-keyout")
        .arg(foreign.join("key.pem"))
        .arg("-out")
        .arg(foreign.join("cert.pem")));
    assert!(made.status.success(), "{made:?}");
    let foreign_cert = foreign.join("cert.pem");
    let foreign_key = foreign.join("key.pem");
    let forged = curl(
        gateway,
        &[
            "--cacert",
            ca,
            "--cert",
            foreign_cert.to_str().unwrap(),
            "--key",
            foreign_key.to_str().unwrap(),
            "-H",
            &bearer,
        ],
        "/quote?product=solar-2025",
    );
    assert!(!forged.status.success(), "{forged:?}");
    assert_eq!(status_of(&forged), "000");

    // Refused: plaintext HTTP to the mTLS port.
    let inbound = gateway["inbound"].as_str().unwrap();
    let plaintext = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .arg(format!("http://{inbound}/quote")));
    assert!(!plaintext.status.success(), "{plaintext:?}");
    assert_eq!(status_of(&plaintext), "000");

    // openssl sees TLS 1.3 and the server's SPIFFE ID.
    let server_name = gateway["server_name"].as_str().unwrap();
    let mut s_client = Command::new("openssl")
        .args(["s_client", "-connect", inbound, "-servername", server_name])
        .args(["-CAfile", ca, "-cert", cert, "-key", key, "-showcerts"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    drop(s_client.stdin.take());
    let shown = s_client.wait_with_output().expect("openssl finishes");
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("TLSv1.3"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    let leaf_pem = text
        .split("-----BEGIN CERTIFICATE-----")
        .nth(1)
        .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
        .expect("the server sent a certificate");
    let mut x509 = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509 runs");
    use std::io::Write as _;
    x509.stdin
        .take()
        .unwrap()
        .write_all(
            format!("-----BEGIN CERTIFICATE-----{leaf_pem}-----END CERTIFICATE-----\n").as_bytes(),
        )
        .unwrap();
    let sans = x509.wait_with_output().expect("x509 finishes");
    let sans = String::from_utf8_lossy(&sans.stdout);
    assert!(
        sans.contains("URI:spiffe://rec.meshsim/ns/rec/sa/gateway"),
        "{sans}"
    );
    assert!(sans.contains(&format!("DNS:{server_name}")), "{sans}");
    drop(mesh);
}

/// `meshsim run --real` applies the scenario's faults on real sockets: the
/// crashed replica's runtime is dropped (its sockets close), the balancer
/// ejects it, the restart brings it back, and every check of the
/// simulation holds. `--time-scale 0.25` keeps it to about 12 s, and the
/// report draws the phase and the faults at the stretched times the run
/// used: the fault windows of `events.json` are the trace's own fault
/// events.
#[test]
fn a_crash_scenario_passes_on_real_sockets() {
    let out = std::env::temp_dir().join(format!("meshsim-real-crash-{}", std::process::id()));
    let trace = out.with_extension("trace.jsonl");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/replica-crash.toml");
    let collector = OtlpReceiver::start();
    let output = run(Command::new(MESHSIM)
        .arg("run")
        .arg(&scenario)
        .args(["--real", "--time-scale", "0.25", "--out"])
        .arg(&out)
        .arg("--trace")
        .arg(&trace)
        .arg("--otlp-endpoint")
        .arg(format!("http://{}/v1/traces", collector.address)));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    collector.assert_received_the_run_s_spans(&out);
    assert!(text.contains("mode=Real"), "{text}");
    assert!(
        text.contains("[ok] crashed_replica_ejected_within_2s"),
        "{text}"
    );
    assert!(
        text.contains("[ok] restarted_replica_restored_within_15s"),
        "{text}"
    );
    assert_report_draws_the_run_s_own_fault_times(&out, &trace);
    let _ = std::fs::remove_dir_all(&out);
    let _ = std::fs::remove_file(&trace);
}

/// Every fault window in `events.json` starts where the trace recorded
/// that fault (within the executor's scheduling slack), and the workload
/// phase is drawn stretched.
fn assert_report_draws_the_run_s_own_fault_times(out: &Path, trace: &Path) {
    let events: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("events.json")).unwrap()).unwrap();
    let windows = events["windows"].as_array().unwrap();
    let phase_end = windows
        .iter()
        .find(|w| w["kind"] == "phase")
        .and_then(|w| w["end_s"].as_f64())
        .unwrap();
    assert!(
        (phase_end - 10.0).abs() < 1e-9,
        "40 s phase at 0.25 ends at 10 s, drawn {phase_end}"
    );
    let drawn: Vec<(f64, String)> = windows
        .iter()
        .filter(|w| w["kind"] == "fault")
        .map(|w| {
            (
                w["start_s"].as_f64().unwrap(),
                w["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let warmup_s = 2.0; // replica-crash.toml: warmup = "2s"
    let applied: Vec<(f64, String)> = std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|e| e["kind"] == seam::event::FAULT)
        .map(|e| {
            let at_s = e["at_us"].as_u64().unwrap() as f64 / 1e6 - warmup_s;
            (at_s, e["detail"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(drawn.len(), 2, "crash and restart: {drawn:?}");
    assert_eq!(applied.len(), drawn.len(), "{applied:?} vs {drawn:?}");
    for ((drawn_s, label), (applied_s, detail)) in drawn.iter().zip(&applied) {
        assert_eq!(label, detail);
        assert!(
            (applied_s - drawn_s).abs() < 0.5,
            "{label}: drawn at {drawn_s} s, applied at {applied_s} s"
        );
    }
}

/// The p50 and p99 latency (ms) of one `meshsim run` of smoke, from its
/// summary.json; `extra` picks the world.
fn smoke_latency(label: &str, extra: &[&str]) -> (f64, f64) {
    let out = std::env::temp_dir().join(format!("meshsim-smoke-{label}-{}", std::process::id()));
    let output = run(Command::new(MESHSIM)
        .arg("run")
        .arg(smoke())
        .args(extra)
        .arg("--out")
        .arg(&out));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{label}: {text}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out);
    let at = |p: &str| {
        summary["latency_ms"][p]
            .as_f64()
            .expect("a latency percentile")
    };
    (at("p50"), at("p99"))
}

/// Sim and real run one file on one network: smoke's `[sim]` link latency
/// applies in both (through `seam::faultnet` in real mode), so their p50
/// and p99 agree within 25 %. A larger gap is a modelling difference to
/// explain (BENCHMARKS.md "Sim against real (smoke)"), not noise to widen.
///
/// Ignored because it fails today, by more than the tolerance: measured
/// p50 16.2 ms sim vs 29.4 ms real, p99 27.4 vs 50.1. The link-latency
/// part agrees (the 1-3 ms links add 13.0 ms p50 in the sim, 11.7 ms in
/// real mode); the gap is real mode's fixed cost, present with zero link
/// latency too (3.2 ms sim vs 17.7 ms real p50): CPU for TLS and HTTP that
/// the sim does not charge, millisecond timer rounding of every service
/// time and relay delay, and the relay's two extra tasks per direction
/// (about 8 ms p50 on its own). Run it with `--ignored` after changing
/// either side.
#[test]
#[ignore = "fails: real p50 is 1.8x the sim's on smoke; see BENCHMARKS.md \"Sim against real (smoke)\""]
fn sim_and_real_agree_on_smoke_latency() {
    let (sim_p50, sim_p99) = smoke_latency("sim", &[]);
    let (real_p50, real_p99) = smoke_latency("real", &["--real"]);
    eprintln!("smoke p50 sim {sim_p50:.3} ms real {real_p50:.3} ms");
    eprintln!("smoke p99 sim {sim_p99:.3} ms real {real_p99:.3} ms");
    // Within 25 % of each other: the larger at most 1.25 × the smaller.
    let within = |sim: f64, real: f64| sim.max(real) <= 1.25 * sim.min(real);
    assert!(
        within(sim_p50, real_p50),
        "p50: sim {sim_p50} ms, real {real_p50} ms"
    );
    assert!(
        within(sim_p99, real_p99),
        "p99: sim {sim_p99} ms, real {real_p99} ms"
    );
}

/// A free loopback port for a helper server (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// An instant PromQL query through Prometheus's HTTP API: the result vector.
fn promql(port: u16, query: &str) -> Vec<serde_json::Value> {
    let output = run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-G"])
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .args(["--data-urlencode", &format!("query={query}")]));
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("Prometheus answered JSON ({e}): {output:?}"));
    assert_eq!(answer["status"], "success", "{query}: {answer}");
    answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sample(result: &serde_json::Value) -> f64 {
    result["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// A running Prometheus; dropping it stops it.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The acceptance test: a real Prometheus (Debian's, installed by
/// `scripts/install-prometheus.sh`) scrapes the `prometheus.yml` that
/// `meshsim up` wrote while `meshsim load` offers 40/s to the gateway over
/// mTLS; PromQL then sees the offered rate at the gateway's inbound side
/// and a success rate of 1.0. About a minute of wall time.
#[test]
#[ignore = "needs the prometheus binary (scripts/install-prometheus.sh); .ci/run runs it"]
fn prometheus_scrapes_the_mesh_under_load() {
    const RATE: f64 = 40.0;
    let mesh = Mesh::start("prometheus");
    let dir = mesh.dir.clone();
    let addresses = mesh.addresses();
    let config = std::fs::read_to_string(dir.join("prometheus.yml")).expect("prometheus.yml");
    for entry in addresses.values() {
        assert!(
            config.contains(entry["admin"].as_str().unwrap()),
            "{config}"
        );
    }
    let client = dir.join("client");
    let issued = run(Command::new(MESHSIM)
        .args(["certs", "issue", "--identity", "loadgen", "--state-dir"])
        .arg(&dir)
        .arg("--out")
        .arg(&client));
    assert!(issued.status.success(), "certs issue: {issued:?}");
    let (cert, key, ca) = (
        client.join("cert.pem"),
        client.join("key.pem"),
        dir.join("ca.pem"),
    );
    let tls = [
        "--cacert",
        ca.to_str().unwrap(),
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ];
    let scenario = Scenario::load(&smoke()).expect("smoke loads");
    let bearer = format!(
        "authorization: Bearer {}",
        Genesis::new(&scenario.app).participants[0].token
    );
    let gateway = &addresses["gateway-0"];
    wait_for_gateway(gateway, tls, &bearer, &dir.join("load-ready"));

    let port = free_port();
    let prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (scripts/install-prometheus.sh installs it)"),
    );
    // Prometheus answers its API once /-/ready says so.
    let ready = (0..100).any(|_| {
        let probe = run(Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "2",
            ])
            .arg(format!("http://127.0.0.1:{port}/-/ready")));
        let up = String::from_utf8_lossy(&probe.stdout) == "200";
        if !up {
            std::thread::sleep(Duration::from_millis(300));
        }
        up
    });
    assert!(ready, "prometheus did not become ready");
    let mut load_run = load(
        gateway,
        tls,
        &bearer,
        &["--rate", &RATE.to_string(), "-d", "45s", "--out"],
    )
    .arg(dir.join("load"))
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("meshsim load starts");

    // Every target up, scraped at least twice, with 30 s of load behind.
    let targets = addresses.len() as f64;
    #[allow(clippy::disallowed_methods)] // a test's own deadline, outside any simulation
    let started = std::time::Instant::now();
    loop {
        let up = promql(
            port,
            "count(count_over_time(up{job=\"meshsim-proxy\"}[1m]) >= 2)",
        );
        let scraped = up.first().map(sample) == Some(targets);
        if scraped && started.elapsed() > Duration::from_secs(32) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "targets not scraped twice within 60 s: {up:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let down = promql(port, "up{job=\"meshsim-proxy\"} == 0");
    assert!(down.is_empty(), "targets down: {down:?}");

    let by_service = promql(
        port,
        "sum(rate(response_total{direction=\"inbound\"}[30s])) by (dst_service)",
    );
    let gateway_rate = by_service
        .iter()
        .find(|r| r["metric"]["dst_service"] == "gateway")
        .map(sample)
        .unwrap_or_else(|| panic!("no gateway series: {by_service:?}"));
    assert!(
        (gateway_rate - RATE).abs() <= 0.15 * RATE,
        "the gateway's inbound rate {gateway_rate:.2}/s is not the offered {RATE}/s: {by_service:?}"
    );
    for service in ["market", "market-db"] {
        assert!(
            by_service
                .iter()
                .any(|r| r["metric"]["dst_service"] == service && sample(r) > 0.0),
            "{service} answers under the quote path: {by_service:?}"
        );
    }
    let success = promql(
        port,
        "sum(rate(response_total{direction=\"inbound\",classification=\"success\"}[30s])) \
         / sum(rate(response_total{direction=\"inbound\"}[30s]))",
    );
    assert_eq!(
        success.first().map(sample),
        Some(1.0),
        "success rate: {success:?}"
    );
    let p99 = promql(
        port,
        "histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{direction=\"inbound\",dst_service=\"gateway\"}[30s])) by (le))",
    );
    let p99_ms = p99.first().map(sample).unwrap_or(f64::NAN);
    assert!(
        p99_ms > 0.0 && p99_ms < 1000.0,
        "gateway p99 {p99_ms} ms: {p99:?}"
    );
    let tls_series = promql(
        port,
        "sum(tcp_open_total{direction=\"inbound\",tls=\"true\"})",
    );
    assert!(
        tls_series.first().map(sample).unwrap_or(0.0) >= 1.0,
        "{tls_series:?}"
    );

    let _ = load_run.kill();
    let _ = load_run.wait();
    drop(prometheus);
    drop(mesh);
}

/// A one-request OTLP/HTTP receiver on a real socket: it reads one POST,
/// answers 200 as a collector does, and hands the request back.
struct OtlpReceiver {
    address: std::net::SocketAddr,
    received: std::sync::mpsc::Receiver<(String, String)>,
}

impl OtlpReceiver {
    fn start() -> OtlpReceiver {
        use std::io::{BufRead as _, BufReader, Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let (sender, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("the run connects");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut head = String::new();
            let mut content_length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("a header line");
                if let Some((name, value)) = line.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    content_length = value.trim().parse().expect("a length");
                }
                let end = line == "\r\n";
                head.push_str(&line);
                if end {
                    break;
                }
            }
            let mut body = vec![0; content_length];
            reader.read_exact(&mut body).expect("the body");
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
            let _ = sender.send((head, String::from_utf8(body).expect("UTF-8 JSON")));
        });
        OtlpReceiver { address, received }
    }

    /// The run POSTed OTLP JSON to /v1/traces, and it is the same document
    /// as the run's `traces.otlp.json`.
    fn assert_received_the_run_s_spans(self, out: &Path) {
        let (head, body) = self
            .received
            .recv_timeout(Duration::from_secs(30))
            .expect("the run exported its spans");
        assert!(head.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{head}"
        );
        let sent: serde_json::Value = serde_json::from_str(&body).expect("OTLP JSON");
        let spans = sent["resourceSpans"].as_array().expect("resourceSpans");
        assert!(!spans.is_empty(), "no resource spans: {body}");
        let written: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("traces.otlp.json")).expect("traces.otlp.json"),
        )
        .expect("the file is JSON");
        assert_eq!(sent, written, "the export differs from traces.otlp.json");
    }
}
