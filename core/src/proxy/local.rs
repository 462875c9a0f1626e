//! Responses the gateway writes itself: errors (pre-serialised, static), direct responses and
//! redirects.

/// A short plain-text error response: `"<code> <reason>\n"`, nothing internal.
pub fn error_response(status: u16, close: bool) -> &'static [u8] {
    match (status, close) {
        (400, false) => b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n\r\n400 Bad Request\n",
        (400, true) => b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 16\r\nconnection: close\r\n\r\n400 Bad Request\n",
        // Every method a route may take can be asked for: API keys only, so far.
        (401, false) => b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: 17\r\nwww-authenticate: ApiKey realm=\"ringway\"\r\n\r\n401 Unauthorized\n",
        (401, true) => b"HTTP/1.1 401 Unauthorized\r\ncontent-type: text/plain\r\ncontent-length: 17\r\nwww-authenticate: ApiKey realm=\"ringway\"\r\nconnection: close\r\n\r\n401 Unauthorized\n",
        (403, false) => b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\n403 Forbidden\n",
        (403, true) => b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 14\r\nconnection: close\r\n\r\n403 Forbidden\n",
        (404, false) => b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 14\r\n\r\n404 Not Found\n",
        (404, true) => b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 14\r\nconnection: close\r\n\r\n404 Not Found\n",
        (405, false) => b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\ncontent-length: 23\r\n\r\n405 Method Not Allowed\n",
        (405, true) => b"HTTP/1.1 405 Method Not Allowed\r\ncontent-type: text/plain\r\ncontent-length: 23\r\nconnection: close\r\n\r\n405 Method Not Allowed\n",
        (408, false) => b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\n408 Request Timeout\n",
        (408, true) => b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n408 Request Timeout\n",
        (413, false) => b"HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain\r\ncontent-length: 22\r\n\r\n413 Content Too Large\n",
        (413, true) => b"HTTP/1.1 413 Content Too Large\r\ncontent-type: text/plain\r\ncontent-length: 22\r\nconnection: close\r\n\r\n413 Content Too Large\n",
        (414, false) => b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain\r\ncontent-length: 17\r\n\r\n414 URI Too Long\n",
        (414, true) => b"HTTP/1.1 414 URI Too Long\r\ncontent-type: text/plain\r\ncontent-length: 17\r\nconnection: close\r\n\r\n414 URI Too Long\n",
        (417, false) => b"HTTP/1.1 417 Expectation Failed\r\ncontent-type: text/plain\r\ncontent-length: 23\r\n\r\n417 Expectation Failed\n",
        (417, true) => b"HTTP/1.1 417 Expectation Failed\r\ncontent-type: text/plain\r\ncontent-length: 23\r\nconnection: close\r\n\r\n417 Expectation Failed\n",
        (431, false) => b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: 36\r\n\r\n431 Request Header Fields Too Large\n",
        (431, true) => b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\ncontent-length: 36\r\nconnection: close\r\n\r\n431 Request Header Fields Too Large\n",
        (500, false) => b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 26\r\n\r\n500 Internal Server Error\n",
        (500, true) => b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: 26\r\nconnection: close\r\n\r\n500 Internal Server Error\n",
        (501, false) => b"HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\n501 Not Implemented\n",
        (501, true) => b"HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n501 Not Implemented\n",
        (502, false) => b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 16\r\n\r\n502 Bad Gateway\n",
        (502, true) => b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: 16\r\nconnection: close\r\n\r\n502 Bad Gateway\n",
        (503, false) => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 24\r\n\r\n503 Service Unavailable\n",
        (503, true) => b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\n503 Service Unavailable\n",
        (504, false) => b"HTTP/1.1 504 Gateway Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\n\r\n504 Gateway Timeout\n",
        (504, true) => b"HTTP/1.1 504 Gateway Timeout\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\n504 Gateway Timeout\n",
        (505, false) => b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: 31\r\n\r\n505 HTTP Version Not Supported\n",
        (505, true) => b"HTTP/1.1 505 HTTP Version Not Supported\r\ncontent-type: text/plain\r\ncontent-length: 31\r\nconnection: close\r\n\r\n505 HTTP Version Not Supported\n",
        (_, false) => error_response(500, false),
        (_, true) => error_response(500, true),
    }
}

pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_responses_are_well_framed() {
        for status in [
            400, 401, 403, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 505,
        ] {
            for close in [false, true] {
                let text = std::str::from_utf8(error_response(status, close)).unwrap();
                let (head, body) = text.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
                assert!(body.starts_with(&status.to_string()) && body.ends_with('\n'));
                assert!(
                    head.contains(&format!("content-length: {}\r\n", body.len()))
                        || head.ends_with(&format!("content-length: {}", body.len()))
                );
                assert_eq!(head.contains("connection: close"), close);
            }
        }
    }
}
