//! The data plane's error: who caused it, why (the metrics cause), what the client should get,
//! and whether a retry is safe.

use std::fmt;

use crate::metrics::ErrorCause;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: bad input, too slow, went away.
    Downstream,
    /// The upstream: refused, reset, timed out, bad framing.
    Upstream,
}

impl ErrorCause {
    pub fn side(self) -> Side {
        match self {
            ErrorCause::BadRequest
            | ErrorCause::ClientTimeout
            | ErrorCause::BodyTooLarge
            | ErrorCause::UriTooLong
            | ErrorCause::HeadTooLarge
            | ErrorCause::NoRoute
            | ErrorCause::ClientClosed
            // Route policies refuse before any upstream is involved.
            | ErrorCause::RateLimited
            | ErrorCause::ConcurrencyLimited
            | ErrorCause::Unauthenticated
            | ErrorCause::Forbidden
            | ErrorCause::AuthUnavailable => Side::Downstream,
            _ => Side::Upstream,
        }
    }

    /// The status the client gets for this cause while no response head has gone out (0: none,
    /// the client is gone).
    pub fn status(self) -> u16 {
        match self {
            ErrorCause::BadRequest => 400,
            ErrorCause::ClientTimeout => 408,
            ErrorCause::BodyTooLarge => 413,
            ErrorCause::UriTooLong => 414,
            ErrorCause::HeadTooLarge => 431,
            ErrorCause::NoRoute => 404,
            ErrorCause::ClientClosed => 0,
            ErrorCause::ConnectFailed
            | ErrorCause::UpstreamClosed
            | ErrorCause::BadResponse
            | ErrorCause::UpstreamTls => 502,
            ErrorCause::ConnectTimeout | ErrorCause::UpstreamTimeout => 504,
            ErrorCause::NoEndpoint | ErrorCause::ConcurrencyLimited => 503,
            ErrorCause::RateLimited => 429,
            ErrorCause::CircuitOpen => 503,
            ErrorCause::Unauthenticated => 401,
            ErrorCause::Forbidden => 403,
            ErrorCause::AuthUnavailable => 503,
        }
    }
}

#[derive(Debug)]
pub struct ProxyError {
    pub cause: ErrorCause,
    /// The status to answer with; 0 when nothing can be sent any more (the response head
    /// already went out, or the client is gone).
    pub status: u16,
    /// The request may be sent again on a fresh upstream connection.
    pub retryable: bool,
    pub context: &'static str,
    pub source: Option<std::io::Error>,
}

/// Boxed so that `Result<T, Error>` stays one word wide on the hot path.
pub type Error = Box<ProxyError>;

impl ProxyError {
    pub fn new(cause: ErrorCause, context: &'static str, source: Option<std::io::Error>) -> Error {
        Box::new(ProxyError {
            cause,
            status: cause.status(),
            retryable: false,
            context,
            source,
        })
    }

    /// The response head already went out: the only answer left is closing the connection.
    pub fn after_head(
        cause: ErrorCause,
        context: &'static str,
        source: Option<std::io::Error>,
    ) -> Error {
        let mut e = Self::new(cause, context, source);
        e.status = 0;
        e
    }

    /// A write to the client failed: it went away, or (`TimedOut`, the listener's
    /// `send_timeout`) took none of the response in time. Nothing more can be sent either way.
    pub fn client_write(e: std::io::Error) -> Error {
        let cause = if e.kind() == std::io::ErrorKind::TimedOut {
            ErrorCause::ClientTimeout
        } else {
            ErrorCause::ClientClosed
        };
        Self::after_head(cause, "client write failed", Some(e))
    }

    pub fn retryable(mut self: Box<Self>) -> Error {
        self.retryable = true;
        self
    }

    pub fn side(&self) -> Side {
        self.cause.side()
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.cause.as_str(), self.context)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProxyError {}
