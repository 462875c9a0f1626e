//! HTTP/2's connection I/O. The protocol itself is the `h2` crate's (its limits for rapid
//! reset, CONTINUATION floods and HPACK bombs are why); it is written against tokio's
//! poll-based I/O traits, which [`io::PollStream`] gives it over a shard's socket without
//! monoio's `poll-io` feature (that feature costs every HTTP/1.1 request on io_uring 4-5%
//! more instructions, perf/RESULTS.md, session 6).

pub mod bridge;
pub mod head;
pub mod io;

/// The client connection preface (RFC 9113 section 3.4): how an h2c client with prior
/// knowledge starts, and what no HTTP/1.1 request line can begin with.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
