//! HTTP codecs of the data plane.
//!
//! `h1` is the strict HTTP/1.1 codec (RFC 9112): pure functions over byte buffers, no I/O and
//! no allocation per call. The shard's connection code owns the sockets and buffers and asks
//! these functions what the bytes mean.

pub mod h1;
pub mod h2;
pub mod path;
pub mod text;
