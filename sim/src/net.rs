//! turmoil behind the seam.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use seam::{BoxFuture, BoxIo, Clock, LOCALHOST, Listener, Net, SkewHandle};

/// One host's view of turmoil's network.
pub struct TurmoilNet {
    host: String,
}

impl TurmoilNet {
    /// The view for `host` (must run inside that host's future).
    pub fn new(host: &str) -> Self {
        TurmoilNet {
            host: host.to_owned(),
        }
    }
}

struct SimListener(turmoil::net::TcpListener);

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxIo, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = self.0.accept().await?;
            Ok((Box::new(stream) as BoxIo, peer))
        })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl Net for TurmoilNet {
    fn host_name(&self) -> &str {
        &self.host
    }

    fn bind(&self, port: u16) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).await?;
            Ok(Box::new(SimListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect<'a>(&'a self, host: &'a str, port: u16) -> BoxFuture<'a, io::Result<BoxIo>> {
        Box::pin(async move {
            let stream = if host == LOCALHOST {
                turmoil::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?
            } else {
                turmoil::net::TcpStream::connect((host, port)).await?
            };
            Ok(Box::new(stream) as BoxIo)
        })
    }
}

/// Sim time as a wall clock: the fixed epoch plus sim elapsed, plus skew.
pub struct SimClock {
    epoch: SystemTime,
    skew: SkewHandle,
}

impl SimClock {
    /// A clock for one host.
    pub fn new(epoch: SystemTime, skew: SkewHandle) -> Self {
        SimClock { epoch, skew }
    }
}

impl Clock for SimClock {
    fn wall(&self) -> SystemTime {
        self.skew.apply(self.epoch + self.run_elapsed())
    }

    /// Outside any host (while the world is being built) this is zero.
    fn run_elapsed(&self) -> Duration {
        turmoil::sim_elapsed().unwrap_or_default()
    }

    fn simulated(&self) -> bool {
        true
    }
}
