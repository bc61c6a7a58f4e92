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
