//! `meshsim load` against real servers on loopback, as a user runs it: a
//! plain HTTP server, an impossible threshold, bad input, and an HTTPS
//! server that requires client certificates.

// The loadgen crate's test server (HTTP/1.1 and HTTP/2, optional mTLS,
// rcgen certificates): one server for both crates' tests.
#[path = "../../../loadgen/tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use common::{Behaviour, Log, Pki, ServerSetup, serve, temp_dir};
use seam::Net;
use seam::real::AddressBook;

/// A server on a loopback port, on its own runtime; dropped with the test.
struct Server {
    port: u16,
    log: Log,
    _runtime: tokio::runtime::Runtime,
}

fn server(setup: ServerSetup) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let port = runtime.block_on(async {
        let net = AddressBook::ephemeral().net_for("server");
        let listener = net.bind(80).await.unwrap();
        let addr = listener.local_addr().unwrap();
        assert_eq!(addr.ip().to_string(), "127.0.0.2");
        seam::task::spawn(serve(listener, setup, log.clone()));
        addr.port()
    });
    Server {
        port,
        log,
        _runtime: runtime,
    }
}

fn plain() -> ServerSetup {
    ServerSetup {
        http2: false,
        tls: None,
        behaviour: Behaviour::default(),
    }
}

fn meshsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args(args)
        .output()
        .expect("meshsim runs")
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn explain(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn out_dir(name: &str) -> (PathBuf, String) {
    let dir = temp_dir(&format!("cli-{name}"));
    let text = dir.to_str().unwrap().to_owned();
    (dir, text)
}

#[test]
fn load_at_200_per_second_for_5s_gets_every_request_answered() {
    let server = server(plain());
    let (out, out_text) = out_dir("http");
    let url = format!("http://127.0.0.1:{}/", server.port).replace("127.0.0.1", "127.0.0.2");
    let output = meshsim(&[
        "load",
        &url,
        "--rate",
        "200",
        "--duration",
        "5s",
        "--out",
        &out_text,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let s = summary(&out);
    assert_eq!(s["mode"], "real");
    assert_eq!(s["verdict"], "pass");
    assert_eq!(s["scenario"], "load");
    let ok = s["requests"]["ok"].as_u64().unwrap();
    assert!(ok >= 950, "{ok} ok\n{}", explain(&output));
    assert_eq!(s["requests"]["total"], 1000);
    assert!(s["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(server.log.lock().unwrap().len() as u64, ok);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Detailed Percentile spectrum"), "{stdout}");
    assert!(stdout.contains("reproduce  meshsim load"), "{stdout}");
    // The interval log holds one histogram per second, readable back.
    let run = reports::read_run(&out).unwrap();
    assert_eq!(run.latency_intervals.len(), 5);
    let counted: u64 = run
        .latency_intervals
        .iter()
        .map(|i| i.histogram.len())
        .sum();
    assert_eq!(counted, 1000);
    assert!(
        run.start_unix_s > 1.7e9,
        "a real run has a wall-clock start"
    );
}

#[test]
fn an_impossible_threshold_exits_1() {
    let server = server(plain());
    let (out, out_text) = out_dir("threshold");
    let url = format!("http://127.0.0.2:{}/", server.port);
    let output = meshsim(&[
        "load",
        &url,
        "--rate",
        "100",
        "--duration",
        "1s",
        "--threshold",
        "p(99)<0.001ms",
        "--threshold",
        "error_rate<1%",
        "--out",
        &out_text,
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    let s = summary(&out);
    assert_eq!(s["verdict"], "fail");
    let checks = s["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 2);
    assert_eq!(checks[0]["passed"], false, "{checks:?}");
    assert_eq!(checks[0]["kind"], "slo");
    assert_eq!(checks[1]["passed"], true, "{checks:?}");
    assert!(
        std::fs::read_to_string(out.join("junit.xml"))
            .unwrap()
            .contains("failure")
    );
}

#[test]
fn bad_input_exits_2_with_a_reason() {
    for (args, expected) in [
        (
            vec!["load", "ftp://x/", "--rate", "1", "--duration", "1s"],
            "http://",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "-5",
                "--duration",
                "1s",
            ],
            "positive",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "soon",
            ],
            "duration",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "99999999999999h",
            ],
            "out of range",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--threshold",
                "p(99)<5",
            ],
            "unit",
        ),
        (
            vec![
                "load",
                "https://localhost:1/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--cacert",
                "/nonexistent.pem",
            ],
            "/nonexistent.pem",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--cert",
                "c.pem",
            ],
            "--key",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "-H",
                "no colon",
            ],
            "Name: value",
        ),
        (
            vec![
                "load",
                "http://127.0.0.1:1/",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--body",
                "{{nope}}",
            ],
            "nope",
        ),
    ] {
        let output = meshsim(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            explain(&output)
        );
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn mtls_load_works_with_cert_key_and_cacert() {
    let pki = Pki::create(&temp_dir("cli-pki"));
    let server = server(ServerSetup {
        http2: false,
        tls: Some(pki.server_config()),
        behaviour: Behaviour::default(),
    });
    let url = format!("https://localhost:{}/", server.port);
    let url_ip = format!("https://127.0.0.2:{}/", server.port);
    let (cert, key, ca) = (
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
        pki.ca_pem.to_str().unwrap(),
    );
    let tls = ["--cert", cert, "--key", key, "--cacert", ca];
    for (name, target, extra) in [
        ("mtls-h1", &url_ip, None),
        ("mtls-h2", &url_ip, Some("--http2")),
    ] {
        let (out, out_text) = out_dir(name);
        let mut args = vec![
            "load",
            target,
            "--rate",
            "100",
            "--duration",
            "1s",
            "--out",
            &out_text,
            "--threshold",
            "error_rate<1%",
        ];
        args.extend(tls);
        args.extend(extra);
        let output = meshsim(&args);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            explain(&output)
        );
        assert_eq!(summary(&out)["requests"]["ok"], 100, "{name}");
    }
    assert!(server.log.lock().unwrap().iter().all(|s| s.client_cert));
    assert!(
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.version == http::Version::HTTP_2)
    );
    // Without a client certificate the server refuses every request, and
    // the threshold turns that into exit 1.
    let (out, out_text) = out_dir("mtls-refused");
    let output = meshsim(&[
        "load",
        &url_ip,
        "--rate",
        "50",
        "--duration",
        "1s",
        "--cacert",
        ca,
        "--out",
        &out_text,
        "--threshold",
        "error_rate<1%",
        "--timeout",
        "2s",
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    assert_eq!(summary(&out)["requests"]["ok"], 0);
    // `localhost` resolves to 127.0.0.1, where nothing listens: a
    // connection error, reported, not a hang.
    let (out, out_text) = out_dir("mtls-wrong-host");
    let output = meshsim(&[
        "load",
        &url,
        "--rate",
        "20",
        "--duration",
        "500ms",
        "--out",
        &out_text,
        "--timeout",
        "2s",
        "--cert",
        cert,
        "--key",
        key,
        "--cacert",
        ca,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    assert_eq!(summary(&out)["requests"]["failed"], 10);
}

/// `--resolve` dials the given address while the URL's host stays the TLS
/// server name; `--server-name` overrides the name; `--insecure` skips the
/// server check; `-n` sends exactly that many; `--json` prints the summary
/// alone on stdout and `--summary-export` writes it to a file too.
#[test]
fn resolve_server_name_insecure_requests_and_json() {
    let pki = Pki::create(&temp_dir("cli-pki-resolve"));
    let server = server(ServerSetup {
        http2: false,
        tls: Some(pki.server_config()),
        behaviour: Behaviour::default(),
    });
    let port = server.port.to_string();
    let url = format!("https://localhost:{port}/resolved");
    let resolve = format!("localhost:{port}:127.0.0.2");
    let (cert, key, ca) = (
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
        pki.ca_pem.to_str().unwrap(),
    );
    let (out, out_text) = out_dir("resolve");
    let export = out.join("exported.json");
    let output = meshsim(&[
        "load",
        &url,
        "--resolve",
        &resolve,
        "--cert",
        cert,
        "--key",
        key,
        "--cacert",
        ca,
        "-n",
        "50",
        "--rate",
        "100",
        "--json",
        "--summary-export",
        export.to_str().unwrap(),
        "--out",
        &out_text,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON summary ({e}): {}", explain(&output)));
    assert_eq!(printed["requests"]["total"], 50, "-n 50 sends exactly 50");
    assert_eq!(printed["requests"]["ok"], 50);
    assert_eq!(printed, summary(&out));
    let exported: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(exported, printed);
    assert!(String::from_utf8_lossy(&output.stderr).contains("statuses   200: 50"));

    // A server name the certificate does not carry fails verification…
    let (_, out_text) = out_dir("wrong-name");
    let wrong = [
        "load",
        &url,
        "--resolve",
        &resolve,
        "--cert",
        cert,
        "--key",
        key,
        "-n",
        "5",
        "--rate",
        "50",
        "--server-name",
        "elsewhere.example",
        "--timeout",
        "2s",
        "--out",
        &out_text,
        "--threshold",
        "error_rate<1%",
    ];
    let mut verified = wrong.to_vec();
    verified.extend(["--cacert", ca]);
    let output = meshsim(&verified);
    assert_eq!(output.status.code(), Some(1), "{}", explain(&output));
    // …unless the check is off.
    let mut insecure = wrong.to_vec();
    insecure.push("--insecure");
    let output = meshsim(&insecure);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
}

/// k6 stages ramp the rate; a targets file rotates methods and paths, each
/// line its own operation; --body-file sends the file.
#[test]
fn stages_targets_file_and_body_file() {
    let server = server(plain());
    let base = format!("http://127.0.0.2:{}", server.port);
    let (out, out_text) = out_dir("targets");
    let targets = out.join("targets.txt");
    let body = out.join("body.json");
    std::fs::write(&body, "{\"seq\": {{seq}}}").unwrap();
    std::fs::write(
        &targets,
        format!("# two endpoints\n{base}/a\nPOST {base}/b\n"),
    )
    .unwrap();
    let output = meshsim(&[
        "load",
        "--targets",
        targets.to_str().unwrap(),
        "--stage",
        "1s:100",
        "--stage",
        "1s:100",
        "--body-file",
        body.to_str().unwrap(),
        "--out",
        &out_text,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", explain(&output));
    let total = summary(&out)["requests"]["total"].as_u64().unwrap();
    // From 0 to 100/s over 1 s, then 100/s for 1 s: about 50 + 100.
    assert!(
        (140..=160).contains(&total),
        "{total}: {}",
        explain(&output)
    );
    let seen = server.log.lock().unwrap();
    let paths: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/a", "/b"].into_iter().collect());
    assert!(
        seen.iter().all(|s| s.body.starts_with(b"{\"seq\": ")),
        "the body file's template is rendered"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 targets from"), "{stdout}");

    // A malformed targets line names file:line:column and exits 2.
    std::fs::write(&targets, format!("{base}/a\nFETCH\n")).unwrap();
    let output = meshsim(&[
        "load",
        "--targets",
        targets.to_str().unwrap(),
        "--rate",
        "1",
        "-d",
        "1s",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", explain(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("targets.txt:2:1"),
        "{}",
        explain(&output)
    );
}

/// Ctrl-C stops the offer: SIGINT after 5 s of a 60 s run leaves a
/// complete summary.json for about 5 s of load, and exit code 4.
#[test]
fn sigint_writes_the_summary_of_what_ran_and_exits_4() {
    let server = server(plain());
    let url = format!("http://127.0.0.2:{}/", server.port);
    let (out, out_text) = out_dir("sigint");
    let child = Command::new(env!("CARGO_BIN_EXE_meshsim"))
        .args([
            "load", &url, "--rate", "100", "-d", "60s", "--out", &out_text,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("meshsim runs");
    std::thread::sleep(std::time::Duration::from_secs(5));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", explain(&output));
    let s = summary(&out);
    let total = s["requests"]["total"].as_u64().unwrap();
    assert!((400..=600).contains(&total), "about 5 s at 100/s: {total}");
    assert_eq!(s["requests"]["ok"], total, "what was sent was answered");
    for file in ["timeseries.csv", "latency.hlog", "report.html", "junit.xml"] {
        assert!(out.join(file).is_file(), "{file} written");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("stopped early"), "{stdout}");
}
