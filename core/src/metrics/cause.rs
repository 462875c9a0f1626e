//! Why a request failed, as counted in metrics and written in the access log.

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCause {
    /// Malformed or ambiguous request (400).
    BadRequest,
    /// The request head or body did not arrive in time (408).
    ClientTimeout,
    /// Request body over the listener's limit (413).
    BodyTooLarge,
    /// Request line over the limit (414).
    UriTooLong,
    /// Request head over the limit (431).
    HeadTooLarge,
    /// No route matched (404).
    NoRoute,
    /// The client closed or reset the connection mid-request.
    ClientClosed,
    /// The upstream refused or failed the connection (502).
    ConnectFailed,
    /// Connecting to the upstream timed out (504).
    ConnectTimeout,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The upstream closed or reset the connection (502).
    UpstreamClosed,
    /// The upstream's response was malformed (502).
    BadResponse,
    /// No endpoint to send to (503): none configured, or none healthy.
    NoEndpoint,
    /// The upstream's circuit breaker is open: failed fast without trying (503).
    CircuitOpen,
    /// Refused by the route's rate limit (429).
    RateLimited,
    /// Refused at the route's `max_in_flight` (503).
    ConcurrencyLimited,
    /// The TLS handshake with the upstream failed: its certificate did not verify, or the
    /// protocol did not agree (502).
    UpstreamTls,
    /// The route's `auth` found no consumer: no credentials, or unknown ones (401).
    Unauthenticated,
    /// The route's `acl` refused the consumer (403).
    Forbidden,
    /// Credentials could not be checked now: every bcrypt thread busy (503).
    AuthUnavailable,
}

impl ErrorCause {
    pub const COUNT: usize = 20;
    pub const ALL: [ErrorCause; ErrorCause::COUNT] = [
        ErrorCause::BadRequest,
        ErrorCause::ClientTimeout,
        ErrorCause::BodyTooLarge,
        ErrorCause::UriTooLong,
        ErrorCause::HeadTooLarge,
        ErrorCause::NoRoute,
        ErrorCause::ClientClosed,
        ErrorCause::ConnectFailed,
        ErrorCause::ConnectTimeout,
        ErrorCause::UpstreamTimeout,
        ErrorCause::UpstreamClosed,
        ErrorCause::BadResponse,
        ErrorCause::NoEndpoint,
        ErrorCause::CircuitOpen,
        ErrorCause::RateLimited,
        ErrorCause::ConcurrencyLimited,
        ErrorCause::UpstreamTls,
        ErrorCause::Unauthenticated,
        ErrorCause::Forbidden,
        ErrorCause::AuthUnavailable,
    ];

    /// The label value in metrics and the `cause` field of the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCause::BadRequest => "bad_request",
            ErrorCause::ClientTimeout => "client_timeout",
            ErrorCause::BodyTooLarge => "body_too_large",
            ErrorCause::UriTooLong => "uri_too_long",
            ErrorCause::HeadTooLarge => "head_too_large",
            ErrorCause::NoRoute => "no_route",
            ErrorCause::ClientClosed => "client_closed",
            ErrorCause::ConnectFailed => "connect_failed",
            ErrorCause::ConnectTimeout => "connect_timeout",
            ErrorCause::UpstreamTimeout => "upstream_timeout",
            ErrorCause::UpstreamClosed => "upstream_closed",
            ErrorCause::BadResponse => "bad_response",
            ErrorCause::NoEndpoint => "no_endpoint",
            ErrorCause::CircuitOpen => "circuit_open",
            ErrorCause::RateLimited => "rate_limited",
            ErrorCause::ConcurrencyLimited => "concurrency_limited",
            ErrorCause::UpstreamTls => "upstream_tls",
            ErrorCause::Unauthenticated => "unauthenticated",
            ErrorCause::Forbidden => "forbidden",
            ErrorCause::AuthUnavailable => "auth_unavailable",
        }
    }

    /// The cause behind a status the gateway answered by itself.
    pub fn from_local_status(status: u16) -> Option<ErrorCause> {
        Some(match status {
            400 => ErrorCause::BadRequest,
            401 => ErrorCause::Unauthenticated,
            403 => ErrorCause::Forbidden,
            404 => ErrorCause::NoRoute,
            408 => ErrorCause::ClientTimeout,
            413 => ErrorCause::BodyTooLarge,
            414 => ErrorCause::UriTooLong,
            429 => ErrorCause::RateLimited,
            431 => ErrorCause::HeadTooLarge,
            // A request line of HTTP/2 or later: counted with the other unreadable requests.
            505 => ErrorCause::BadRequest,
            503 => ErrorCause::NoEndpoint,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_complete_and_indexed_in_order() {
        for (i, cause) in ErrorCause::ALL.iter().enumerate() {
            assert_eq!(*cause as usize, i);
        }
        let names: std::collections::HashSet<_> =
            ErrorCause::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCause::COUNT);
    }
}
