//! What the tests that start `meshsim up` share: the running mesh, and
//! real clients (curl) against it.
#![allow(dead_code)] // each test file uses its own part

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const MESHSIM: &str = env!("CARGO_BIN_EXE_meshsim");

pub fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../library/smoke.toml")
}

/// A running `meshsim up`; dropping it stops the mesh (SIGTERM, then kill).
pub struct Mesh {
    pub up: Child,
    pub dir: PathBuf,
}

impl Mesh {
    pub fn start(name: &str) -> Mesh {
        Self::start_with(name, &[])
    }

    /// `meshsim up` on smoke with `extra` arguments.
    pub fn start_with(name: &str, extra: &[&str]) -> Mesh {
        let dir = std::env::temp_dir().join(format!("meshsim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let up = Command::new(MESHSIM)
            .arg("up")
            .arg(smoke())
            .arg("--state-dir")
            .arg(&dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("meshsim up starts");
        let mut mesh = Mesh { up, dir };
        mesh.wait_ready(Duration::from_secs(120));
        mesh
    }

    /// Polls for addresses.json, which `up` publishes only once every
    /// sidecar's inbound listener and every process (CA and control plane
    /// included) accepts connections.
    pub fn wait_ready(&mut self, limit: Duration) {
        let step = Duration::from_millis(200);
        let mut waited = Duration::ZERO;
        while !self.dir.join("addresses.json").exists() {
            if let Some(status) = self.up.try_wait().expect("poll up") {
                panic!("meshsim up exited before it was ready: {status}");
            }
            assert!(waited < limit, "the mesh was not ready within {limit:?}");
            std::thread::sleep(step);
            waited += step;
        }
    }

    pub fn addresses(&self) -> BTreeMap<String, serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join("addresses.json")).expect("addresses");
        serde_json::from_str(&text).expect("addresses.json is JSON")
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.up.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.up.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its children exit on their own when its stdin pipes close.
        let _ = self.up.kill();
        let _ = self.up.wait();
    }
}

pub fn run(command: &mut Command) -> Output {
    command.output().expect("the command runs")
}

/// `curl` against one replica's inbound listener, naming it by the DNS name
/// in its certificate.
pub fn curl(entry: &serde_json::Value, extra: &[&str], path: &str) -> Output {
    let inbound = entry["inbound"].as_str().expect("inbound");
    let (ip, port) = inbound.rsplit_once(':').expect("host:port");
    let name = entry["server_name"].as_str().expect("server_name");
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(["--resolve", &format!("{name}:{port}:{ip}")])
        .args(extra)
        .arg(format!("https://{name}:{port}{path}")))
}

pub fn status_of(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines().last().unwrap_or_default().to_owned()
}
