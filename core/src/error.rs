//! The data plane's error: who caused it, what the client should get, whether a retry is safe.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: bad input, too slow, went away.
    Downstream,
    /// The upstream: refused, reset, timed out, bad framing.
    Upstream,
    Internal,
}

#[derive(Debug)]
pub struct ProxyError {
    pub side: Side,
    /// The status to answer with, when no response head has gone to the client yet.
    pub status: u16,
    /// The request may be sent again on a fresh upstream connection.
    pub retryable: bool,
    pub context: &'static str,
    pub source: Option<std::io::Error>,
}

/// Boxed so that `Result<T, Error>` stays one word wide on the hot path.
pub type Error = Box<ProxyError>;

impl ProxyError {
    pub fn upstream(status: u16, context: &'static str, source: Option<std::io::Error>) -> Error {
        Box::new(ProxyError {
            side: Side::Upstream,
            status,
            retryable: false,
            context,
            source,
        })
    }

    pub fn downstream(status: u16, context: &'static str, source: Option<std::io::Error>) -> Error {
        Box::new(ProxyError {
            side: Side::Downstream,
            status,
            retryable: false,
            context,
            source,
        })
    }

    pub fn retryable(mut self: Box<Self>) -> Error {
        self.retryable = true;
        self
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {} ({})", self.side, self.context, self.status)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}
