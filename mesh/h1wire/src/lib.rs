//! HTTP/1.1 on the wire, for clients that do their own I/O.
//!
//! hyper's client runs each connection as a second task and hands every
//! request and response across a channel: two task switches and a copy
//! per exchange, which was about a quarter of a backend sidecar's
//! instructions (BENCHMARKS.md, session 10). Here the task that wants the
//! answer writes the request and reads the response itself:
//! - [`request`] writes a request line, headers and body into one reused
//!   buffer (one `write` per request);
//! - [`response`] reads a response with `httparse` (the parser hyper
//!   itself uses), frames its body by Content-Length, chunked coding or
//!   the connection's close (RFC 9112 §6.3), and hands the headers and
//!   body to a [`ResponseSink`], which keeps them or drops them;
//! - [`connection`] is one kept-alive connection: its read buffer, when it
//!   went idle, and whether the server closed it meanwhile.
//!
//! The load generator's connection workers and the mesh's connection pool
//! (the sidecar's hop to its app, apps to their sidecar, the control
//! plane's clients) both run on it.

pub mod connection;
pub mod request;
pub mod response;

pub use connection::{Connection, may_resend};
pub use request::{
    EncodeError, check_target, encode_request, finish_request, needs_length, put_decimal,
    put_header, put_request_line,
};
pub use response::{Discard, ReadError, Response, ResponseSink, read_response};
