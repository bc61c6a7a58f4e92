//! One test body, three networks: a TCP echo, then one mTLS HTTP request,
//! run on turmoil's simulated network, on the event world's, and on real
//! loopback sockets.
//! If the seam leaks a difference between them, this is where it shows.

mod common;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestCa, id};
use http::{Request, Response, StatusCode};
use mesh::http::{Body, body_bytes, buffer_response, handshake, serve_connection};
use mesh::tls::{ClientAuth, MeshTls};
use seam::real::{AddressBook, SystemClock};
use seam::{HostEnv, Seed, SkewHandle, Trace};
use sim::{EventWorld, FaultSchedule, SimConfig, SimWorld, World};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ECHO_PORT: u16 = 7000;
const HTTPS_PORT: u16 = 7443;

/// The server half: an echo listener and an mTLS HTTP listener.
async fn server_body(env: HostEnv, tls: Arc<MeshTls>) {
    let mut echo = env.net.bind(ECHO_PORT).await.unwrap();
    let mut https = env.net.bind(HTTPS_PORT).await.unwrap();
    seam::task::spawn(async move {
        loop {
            let (mut io, _) = echo.accept().await.unwrap();
            seam::task::spawn(async move {
                let mut buf = [0u8; 64];
                let n = io.read(&mut buf).await.unwrap();
                io.write_all(&buf[..n]).await.unwrap();
            });
        }
    });
    loop {
        let (io, _) = https.accept().await.unwrap();
        let tls = tls.clone();
        seam::task::spawn(async move {
            let (stream, peer) = tls
                .accept(io, ClientAuth::Required, &[b"http/1.1"])
                .await
                .unwrap();
            let peer = peer.unwrap().to_string();
            let service = hyper::service::service_fn(move |_req| {
                let peer = peer.clone();
                async move {
                    Ok::<_, Infallible>(Response::new(Body::from(Bytes::from(format!(
                        "hello {peer}"
                    )))))
                }
            });
            let _ = serve_connection(stream, service).await;
        });
    }
}

/// The client half; returns what it observed.
async fn client_body(env: HostEnv, tls: Arc<MeshTls>) -> (Vec<u8>, StatusCode, String) {
    let mut io = retry_connect(&env, ECHO_PORT).await;
    io.write_all(b"ping").await.unwrap();
    let mut echoed = vec![0u8; 4];
    io.read_exact(&mut echoed).await.unwrap();

    let io = retry_connect(&env, HTTPS_PORT).await;
    let stream = tls
        .connect(io, &id("server"), &[b"http/1.1"], true)
        .await
        .unwrap();
    let mut sender = handshake(stream).await.unwrap();
    let request = Request::get("/")
        .header("host", "server")
        .body(Body::default())
        .unwrap();
    let response = buffer_response(sender.send_request(request).await.unwrap(), 1024)
        .await
        .unwrap();
    let text = String::from_utf8(body_bytes(response.body()).to_vec()).unwrap();
    (echoed, response.status(), text)
}

async fn retry_connect(env: &HostEnv, port: u16) -> seam::BoxIo {
    for _ in 0..100 {
        if let Ok(io) = env.net.connect("server", port).await {
            return io;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server never listened on {port}");
}

fn assert_observed(observed: (Vec<u8>, StatusCode, String)) {
    assert_eq!(observed.0, b"ping");
    assert_eq!(observed.1, StatusCode::OK);
    assert_eq!(observed.2, "hello spiffe://test.meshsim/ns/rec/sa/client");
}

fn sim_config() -> SimConfig {
    SimConfig {
        seed: Seed::new(1),
        tick: Duration::from_millis(1),
        link_latency_min: Duration::from_millis(1),
        link_latency_max: Duration::from_millis(1),
        duration_limit: Duration::from_secs(30),
        tcp_capacity: 64,
    }
}

/// The same hosts on any simulated world, through `sim::World`.
fn conformance_on(world: &mut dyn World<'static>) {
    let mut ca = TestCa::new(7, SimConfig::epoch());
    let server_env = world.env_for("server");
    let server_tls = ca.workload("server", server_env.clock.clone(), 1);
    let client_env = world.env_for("client");
    let client_tls = ca.workload("client", client_env.clock.clone(), 2);
    world.add_host(
        "server",
        Box::new(move |env| {
            let tls = server_tls.clone();
            Box::pin(async move {
                server_body(env, tls).await;
                Ok(())
            })
        }),
    );
    let observed = Arc::new(std::sync::Mutex::new(None));
    let sink = observed.clone();
    world.add_client(
        "client",
        Box::new(move |env| {
            Box::pin(async move {
                *sink.lock().unwrap() = Some(client_body(env, client_tls).await);
                Ok(())
            })
        }),
    );
    world.run(&FaultSchedule::default()).unwrap();
    assert_observed(observed.lock().unwrap().take().expect("client finished"));
}

#[test]
fn conformance_on_turmoil() {
    conformance_on(&mut SimWorld::new(sim_config(), Trace::hash_only()));
}

#[test]
fn conformance_on_the_event_world() {
    conformance_on(&mut EventWorld::new(sim_config(), Trace::hash_only()));
}

#[test]
fn conformance_on_real_sockets() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let book = AddressBook::ephemeral();
    let clock = SystemClock::new(SkewHandle::default());
    let env = |name: &str| HostEnv {
        name: name.into(),
        net: Arc::new(book.net_for(name)),
        clock: Arc::new(clock.sibling(SkewHandle::default())),
        disk: Arc::new(seam::MemDisk::default()),
        seed: Seed::new(1).child(name),
        trace: Trace::hash_only(),
        slow: seam::SlowHandle::default(),
    };
    let (server_env, client_env) = (env("server"), env("client"));
    let mut ca = TestCa::new(7, server_env.clock.wall());
    let server_tls = ca.workload("server", server_env.clock.clone(), 1);
    let client_tls = ca.workload("client", client_env.clock.clone(), 2);
    let observed = runtime.block_on(async move {
        seam::task::spawn(server_body(server_env, server_tls));
        client_body(client_env, client_tls).await
    });
    assert_observed(observed);
}
