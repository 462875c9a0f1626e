//! What the test upstream answers, scripted per request, and how each answer is written.

use crate::upstream::Received;
use std::io::{self, Write};
use std::time::Duration;

/// Size of each piece a `Sized` body is streamed in.
const STREAM_PIECE: usize = 64 * 1024;

/// One scripted answer of the test upstream.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A response with `content-length` added (unless `headers` has one). No body is written
    /// for HEAD requests and for 1xx, 204 and 304. With a `connection: close` header (or when
    /// the request asked for it) the upstream closes after writing, as servers do.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `transfer-encoding: chunked` added; each non-empty chunk written and flushed in turn.
    Chunked {
        status: u16,
        headers: Vec<(String, String)>,
        chunks: Vec<Vec<u8>>,
    },
    /// Bytes written as they are; the connection is kept for the next request.
    Raw(Vec<u8>),
    /// Bytes written as they are, then the connection is closed.
    RawThenClose(Vec<u8>),
    /// Close (FIN) without answering.
    Close,
    /// Reset (RST, `SO_LINGER` 0) without answering.
    Reset,
    /// Wait, then answer.
    Delay(Duration, Box<Reply>),
    /// A generated body of `len` bytes ([`Reply::sized_body`]), streamed in 64 KiB pieces,
    /// framed by `content-length` or (`chunked`) one chunk per piece.
    Sized {
        status: u16,
        len: u64,
        chunked: bool,
    },
    /// Several replies written one after the other (e.g. `Raw` 103 interim, then `Full`);
    /// stops at the first that closes the connection.
    Seq(Vec<Reply>),
}

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum After {
    KeepAlive,
    Close,
    Reset,
}

impl Reply {
    /// 200 with `body`.
    pub fn ok(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// `code` with an empty body.
    pub fn status(code: u16) -> Reply {
        Reply::Full {
            status: code,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// `Full` with headers given as `&str` pairs.
    pub fn with_headers(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        Reply::Full {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The byte at `offset` of every `Sized` body.
    pub fn sized_byte(offset: u64) -> u8 {
        b"0123456789abcdefghijklmnopqrstuvwxyz"[(offset % 36) as usize]
    }

    /// The first `len` bytes of every `Sized` body.
    pub fn sized_body(len: u64) -> Vec<u8> {
        (0..len).map(Reply::sized_byte).collect()
    }

    /// Writes this reply to `req`'s connection and says what the connection does next.
    pub(crate) fn write(self, out: &mut impl Write, req: &Received) -> io::Result<After> {
        match self {
            Reply::Full {
                status,
                mut headers,
                body,
            } => {
                let bodyless = no_body(status, req);
                // A HEAD response carries the length a GET would get.
                let no_length = status < 200 || status == 204 || status == 304;
                if !no_length && !has(&headers, "content-length") {
                    headers.push(("content-length".into(), body.len().to_string()));
                }
                let mut bytes = head(status, &headers, req);
                if !bodyless {
                    bytes.extend_from_slice(&body);
                }
                out.write_all(&bytes)?;
                Ok(after(req, &headers))
            }
            Reply::Chunked {
                status,
                mut headers,
                chunks,
            } => {
                headers.push(("transfer-encoding".into(), "chunked".into()));
                out.write_all(&head(status, &headers, req))?;
                if !no_body(status, req) {
                    for chunk in chunks.iter().filter(|c| !c.is_empty()) {
                        write_chunk(out, chunk)?;
                    }
                    out.write_all(b"0\r\n\r\n")?;
                }
                Ok(after(req, &headers))
            }
            Reply::Raw(bytes) => out.write_all(&bytes).map(|()| After::KeepAlive),
            Reply::RawThenClose(bytes) => out.write_all(&bytes).map(|()| After::Close),
            Reply::Close => Ok(After::Close),
            Reply::Reset => Ok(After::Reset),
            Reply::Delay(wait, reply) => {
                std::thread::sleep(wait);
                reply.write(out, req)
            }
            Reply::Sized {
                status,
                len,
                chunked,
            } => {
                let framing = if chunked {
                    ("transfer-encoding".into(), "chunked".into())
                } else {
                    ("content-length".into(), len.to_string())
                };
                out.write_all(&head(status, &[framing], req))?;
                if !no_body(status, req) {
                    write_sized(out, len, chunked)?;
                }
                Ok(after_request(req))
            }
            Reply::Seq(replies) => {
                for reply in replies {
                    let after = reply.write(out, req)?;
                    if after != After::KeepAlive {
                        return Ok(after);
                    }
                }
                Ok(after_request(req))
            }
        }
    }
}

fn write_sized(out: &mut impl Write, len: u64, chunked: bool) -> io::Result<()> {
    // The pattern repeats every 36 bytes, so one buffer that starts at a multiple of 36
    // serves every piece.
    let piece_len = STREAM_PIECE - STREAM_PIECE % 36;
    let piece = Reply::sized_body(piece_len as u64);
    let mut left = len;
    while left > 0 {
        let n = left.min(piece_len as u64) as usize;
        if chunked {
            write_chunk(out, &piece[..n])?;
        } else {
            out.write_all(&piece[..n])?;
        }
        left -= n as u64;
    }
    if chunked {
        out.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

fn write_chunk(out: &mut impl Write, chunk: &[u8]) -> io::Result<()> {
    let mut bytes = format!("{:x}\r\n", chunk.len()).into_bytes();
    bytes.extend_from_slice(chunk);
    bytes.extend_from_slice(b"\r\n");
    out.write_all(&bytes)?;
    out.flush()
}

/// Whether a response with `status` to `req` carries no body.
fn no_body(status: u16, req: &Received) -> bool {
    req.method == "HEAD" || status < 200 || status == 204 || status == 304
}

/// Whether the client asked to close after this exchange (HTTP/1.0 without keep-alive, or
/// `Connection: close`).
fn wants_close(req: &Received) -> bool {
    let connection = req.header_all("connection").join(",").to_ascii_lowercase();
    let tokens: Vec<&str> = connection.split(',').map(str::trim).collect();
    tokens.contains(&"close") || (req.version == "HTTP/1.0" && !tokens.contains(&"keep-alive"))
}

fn after_request(req: &Received) -> After {
    after(req, &[])
}

/// Closes when the client asked to, or the reply's own headers say `connection: close`.
fn after(req: &Received, headers: &[(String, String)]) -> After {
    let says_close = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("connection")
            && v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
    });
    if says_close || wants_close(req) {
        After::Close
    } else {
        After::KeepAlive
    }
}

fn has(headers: &[(String, String)], name: &str) -> bool {
    headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
}

/// Status line and headers; `connection: close` added when the client asked to close.
fn head(status: u16, headers: &[(String, String)], req: &Received) -> Vec<u8> {
    let mut text = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if wants_close(req) && !has(headers, "connection") {
        text.push_str("connection: close\r\n");
    }
    text.push_str("\r\n");
    text.into_bytes()
}

/// The reason phrase for the status codes tests use.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Whatever",
    }
}
