//! ringway-control's library: the parts of the control plane that are plain functions of
//! their input, kept apart from the `ringway` binary (src/main.rs) so that tests and the fuzz
//! targets in tests/fuzz can call them. Today that is the control socket's request decoding
//! ([`command`]).
//!
//! Threading: none; everything here is synchronous and stateless. Errors: a `String` meant for
//! the client, never a panic, whatever the input.
#![forbid(unsafe_code)]

pub mod command;
