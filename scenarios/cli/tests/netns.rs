//! Pods in network namespaces (`up --netns`, `run --real --netns`): the
//! isolation is checked with the real `curl`, from the host namespace and
//! from inside a pod (`ip netns exec`). Every test needs root and iproute2,
//! so all are ignored by default; `.ci/run` (root) runs them with
//! `--ignored`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{MESHSIM, Mesh, curl, run, smoke, status_of};

/// Every namespace whose name starts with `prefix`.
fn namespaces(prefix: &str) -> Vec<String> {
    let listed = run(Command::new("ip").args(["netns", "list"]));
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The pod address of every host, from the state `up` wrote.
fn pod_addresses(dir: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("mesh.json")).expect("mesh.json");
    let state: serde_json::Value = serde_json::from_str(&text).expect("mesh.json is JSON");
    assert_eq!(state["netns"], true, "{text}");
    state["hosts"]
        .as_object()
        .expect("hosts")
        .iter()
        .map(|(host, ip)| (host.clone(), ip.as_str().expect("ip").to_owned()))
        .collect()
}

/// What `curl` makes of `http://ADDRESS`: the status, or `000` (with its
/// exit code) when no HTTP answer came; run in `namespace` if given.
fn plain_curl(namespace: Option<&str>, address: &str) -> (String, Option<i32>) {
    let mut command = match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace, "curl"]);
            command
        }
        None => Command::new("curl"),
    };
    let output = run(command
        .args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{address}")));
    (
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        output.status.code(),
    )
}

/// `meshsim up --netns` on smoke: from the host namespace, curl reaches
/// no app port and no outbound listener (nothing listens on a pod's
/// address there, and a pod's loopback is its own), nor an admin
/// listener; from inside the pod, curl gets an HTTP answer from each; mesh traffic flows over the bridge
/// (`meshsim load` with a mesh certificate gets 2xx through the gateway's
/// inbound listener); every namespace is gone after shutdown.
#[test]
#[ignore = "needs root (network namespaces); run by .ci/run"]
fn up_in_pods_keeps_app_ports_and_outbound_listeners_inside_the_pod() {
    let mesh = Mesh::start_with("netns-up", &["--netns"]);
    let prefix = format!("msim-{}-", mesh.up.id());
    let pods = namespaces(&prefix);
    assert!(pods.iter().any(|n| n.ends_with("-gateway-0")), "{pods:?}");
    assert!(pods.iter().any(|n| n.ends_with("-ca")), "{pods:?}");
    assert!(pods.iter().any(|n| n.ends_with("-control")), "{pods:?}");
    let hosts = pod_addresses(&mesh.dir);
    let gateway_ip = &hosts["gateway-0"];
    assert!(gateway_ip.starts_with("10.213."), "{hosts:?}");

    for port in [8080, 4140, 4191] {
        for address in [format!("{gateway_ip}:{port}"), format!("127.0.0.1:{port}")] {
            let (status, code) = plain_curl(None, &address);
            assert_eq!(status, "000", "host namespace reached {address}");
            assert_ne!(code, Some(0), "host namespace reached {address}");
        }
        let gateway_pod = pods.iter().find(|n| n.ends_with("-gateway-0")).unwrap();
        let (status, code) = plain_curl(Some(gateway_pod), &format!("127.0.0.1:{port}"));
        assert_ne!(
            status, "000",
            "inside its pod, port {port} gave no HTTP answer (curl exit {code:?})"
        );
    }

    let gateway_pod = pods.iter().find(|n| n.ends_with("-gateway-0")).unwrap();
    let (metrics, _) = plain_curl(Some(gateway_pod), "127.0.0.1:4191/metrics");
    assert_eq!(metrics, "200", "the admin endpoint inside the pod");
    assert!(!mesh.dir.join("prometheus.yml").exists());

    // The inbound listener is on the bridge: mTLS refuses a plain client,
    // which proves it is reachable from the host namespace.
    let addresses = mesh.addresses();
    let gateway = &addresses["gateway-0"];
    assert!(gateway["inbound"].as_str().unwrap().starts_with(gateway_ip));
    let plaintext = curl(gateway, &["-k"], "/");
    assert_eq!(status_of(&plaintext), "000", "{plaintext:?}");

    mesh_traffic_flows(&mesh.dir, gateway);
    drop(mesh);
    assert_eq!(namespaces(&prefix), Vec::<String>::new(), "left behind");
}

/// `meshsim load` from the host namespace, with a certificate `certs
/// issue` got from the CA in its pod, gets 2xx through the gateway.
fn mesh_traffic_flows(dir: &Path, gateway: &serde_json::Value) {
    let client = dir.join("client");
    let issued = run(Command::new(MESHSIM)
        .args(["certs", "issue", "--identity", "loadgen", "--state-dir"])
        .arg(dir)
        .arg("--out")
        .arg(&client));
    assert!(issued.status.success(), "certs issue: {issued:?}");
    let inbound = gateway["inbound"].as_str().expect("inbound");
    let (ip, port) = inbound.rsplit_once(':').expect("host:port");
    let name = gateway["server_name"].as_str().expect("server_name");
    let scenario = spec::Scenario::load(&smoke()).expect("smoke loads");
    let genesis = apps::rec::genesis::Genesis::new(&scenario.app);
    let bearer = format!("authorization: Bearer {}", genesis.participants[0].token);
    let path = |file: &str| client.join(file).to_str().unwrap().to_owned();
    let mut last = None;
    for _ in 0..50 {
        let output = run(Command::new(MESHSIM)
            .arg("load")
            .arg(format!("https://{name}:{port}/quote?product=solar-2025"))
            .args(["--resolve", &format!("{name}:{port}:{ip}")])
            .args(["--cacert", &path("ca.pem"), "--cert", &path("cert.pem")])
            .args(["--key", &path("key.pem"), "-H", &bearer])
            .args(["-n", "20", "--rate", "20", "--timeout", "5s"])
            .args(["--threshold", "error_rate<1%", "--out"])
            .arg(dir.join("load")));
        if output.status.success() {
            return;
        }
        last = Some(output);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("no 2xx through the gateway's pod: {last:?}");
}

/// An `up --netns` killed with SIGKILL cannot clean up; the next one
/// removes its namespaces, bridge and veths before it makes its own.
#[test]
#[ignore = "needs root (network namespaces); run by .ci/run"]
fn the_next_up_removes_what_a_killed_up_left() {
    let mut killed = Mesh::start_with("netns-killed", &["--netns"]);
    let killed_prefix = format!("msim-{}-", killed.up.id());
    assert!(!namespaces(&killed_prefix).is_empty());
    killed.up.kill().expect("SIGKILL");
    killed.up.wait().expect("reaped");
    assert!(
        !namespaces(&killed_prefix).is_empty(),
        "a killed up leaves its pods"
    );
    let next = Mesh::start_with("netns-next", &["--netns"]);
    assert_eq!(
        namespaces(&killed_prefix),
        Vec::<String>::new(),
        "the next up removes them"
    );
    let links = run(Command::new("ip").args(["-o", "link", "show"]));
    let links = String::from_utf8_lossy(&links.stdout);
    for left in [
        format!("msb{:x}x", killed.up.id()),
        format!("msv{:x}x", killed.up.id()),
    ] {
        assert!(!links.contains(&left), "{left}… left: {links}");
    }
    drop(next);
}

fn library(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../library/{name}.toml"))
}

/// `run --real --netns` of a library scenario; its stdout once it passed,
/// with no pod left behind.
fn passes_in_pods(name: &str, time_scale: &str) -> String {
    let out = std::env::temp_dir().join(format!("meshsim-netns-{name}-{}", std::process::id()));
    let output = run(Command::new(MESHSIM)
        .arg("run")
        .arg(library(name))
        .args(["--real", "--netns", "--time-scale", time_scale, "--out"])
        .arg(&out));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}\n{errors}");
    assert!(!errors.contains("kernel cut"), "{errors}");
    assert!(!errors.contains("could not enter its pod"), "{errors}");
    assert!(text.contains("--real --time-scale"), "{text}");
    assert!(text.contains("--netns"), "the reproduce line: {text}");
    // Run by this test's own child, now gone: nothing of it may remain.
    let _ = std::fs::remove_dir_all(&out);
    text
}

/// replica-crash with every host in a pod: the crashed replica is ejected
/// and the restarted one restored, as on loopback.
#[test]
#[ignore = "needs root (network namespaces); run by .ci/run"]
fn replica_crash_passes_in_pods() {
    let text = passes_in_pods("replica-crash", "0.25");
    assert!(
        text.contains("[ok] crashed_replica_ejected_within_2s"),
        "{text}"
    );
    assert!(
        text.contains("[ok] restarted_replica_restored_within_15s"),
        "{text}"
    );
}

/// control-plane-partition with the cut between the control plane's pod
/// and every workload's pod made in the kernel (packets dropped): the
/// data plane keeps serving and the proxies reconverge after the repair.
/// `--time-scale 0.25` (3 minutes): the last phase must outlast the
/// proxies' reconnect backoff (up to 7.5 s), which 0.1 does not, pods or
/// not.
#[test]
#[ignore = "needs root (network namespaces); run by .ci/run"]
fn control_plane_partition_passes_in_pods() {
    let text = passes_in_pods("control-plane-partition", "0.25");
    assert!(text.contains("[ok] no_added_errors"), "{text}");
    assert!(
        text.contains("[ok] proxies_reconverge_after_heal"),
        "{text}"
    );
}

/// Without root (here: `setpriv` to `nobody`), `up --netns` cannot make
/// namespaces: it says so plainly, falls back to the shared loopback and
/// serves there, where the pod secret guards app ports and outbound
/// listeners.
#[test]
#[ignore = "needs root (to drop to nobody with setpriv); run by .ci/run"]
fn without_root_up_netns_falls_back_to_loopback_and_says_so() {
    const NOBODY: u32 = 65534;
    // Not under /tmp, which may be root's alone.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("netns-fallback-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown");
    let state = dir.join("state");
    let log = std::fs::File::create(dir.join("up.log")).expect("log");
    let mut up = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            MESHSIM,
            "up",
        ])
        .arg(smoke())
        .arg("--state-dir")
        .arg(&state)
        .arg("--netns")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("setpriv meshsim up");
    let mut waited = Duration::ZERO;
    while !state.join("addresses.json").exists() {
        if let Some(status) = up.try_wait().expect("poll") {
            let log = std::fs::read_to_string(dir.join("up.log")).unwrap_or_default();
            panic!("up exited ({status}) before it was ready: {log}");
        }
        assert!(waited < Duration::from_secs(120), "not ready");
        std::thread::sleep(Duration::from_millis(200));
        waited += Duration::from_millis(200);
    }
    let text = std::fs::read_to_string(state.join("mesh.json")).expect("mesh.json");
    let mesh: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let _ = Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status();
    let _ = up.wait();
    let log = std::fs::read_to_string(dir.join("up.log")).expect("up.log");
    assert!(log.contains("WARNING: --netns"), "{log}");
    assert!(log.contains("falling back to the shared loopback"), "{log}");
    assert_eq!(mesh["netns"], false, "{text}");
    assert!(
        mesh["hosts"]["gateway-0"]
            .as_str()
            .unwrap()
            .starts_with("127.")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
