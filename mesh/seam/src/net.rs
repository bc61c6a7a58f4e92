//! The network half of the seam: bind and connect, nothing more.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// Host name that always means "this host" (the sidecar and its app talk
/// over it), in both the real and the simulated network.
pub const LOCALHOST: &str = "localhost";

/// A byte stream from either network.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A boxed stream, so components are not generic over the network type.
pub type BoxIo = Box<dyn Io>;

/// A boxed, `Send` future, for object-safe async trait methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A bound listening socket.
pub trait Listener: Send {
    /// Waits for the next inbound connection.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>>;
    /// The address peers reach this listener on.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// The network as seen from one host.
///
/// Ports are *logical*: a component binds port 4143 in both modes. The real
/// implementation may map that to an ephemeral OS port so that parallel tests
/// never collide, and `connect` follows the mapping.
pub trait Net: Send + Sync + 'static {
    /// Name of the host this view belongs to.
    fn host_name(&self) -> &str;
    /// Listens on `port` on this host's address (and its loopback).
    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;
    /// Connects to `port` on the named host ([`LOCALHOST`] for this host).
    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxIo>>;
}
