//! The chunked transfer coding (RFC 9112 section 7.1).
//!
//! [`ChunkedScanner`] validates a chunked body that the proxy passes through verbatim and finds
//! exactly where it ends. It is a byte-at-a-time state machine (chunk data is skipped in
//! bulk), so it resumes at any split of the input and gives the same answer however the body
//! arrives. It is strict where parsers are known to disagree: no whitespace anywhere in a
//! chunk line (not even the BWS RFC 9112 tolerates around extensions), CRLF only, at most 16
//! hex digits.

use std::ops::Range;

use super::scan::is_tchar;

/// The last chunk and an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Most bytes of chunk extensions on one chunk line.
pub const MAX_EXTENSION_BYTES: usize = 4096;

/// Most hex digits of a chunk size, leading zeros included.
const MAX_SIZE_DIGITS: u8 = 16;

/// Progress of one [`ChunkedScanner::scan`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    /// Bytes of the input that belong to the body. All of the input unless `done`.
    pub consumed: usize,
    /// The body ended within the input, `consumed` bytes in.
    pub done: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeOverflow,
    BadLineEnding,
    BadExtension,
    MissingDataCrlf,
    TrailerTooLarge,
    BadTrailer,
}

impl ChunkError {
    /// A short cause for logs.
    pub fn reason(self) -> &'static str {
        match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size too large",
            ChunkError::BadLineEnding => "chunk line not ended by CRLF",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::MissingDataCrlf => "chunk data not followed by CRLF",
            ChunkError::TrailerTooLarge => "trailer section too large",
            ChunkError::BadTrailer => "invalid trailer field",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size.
    Size,
    /// After ';': the first byte of an extension name.
    ExtNameStart,
    ExtName,
    /// After '=': a token or a quoted string.
    ExtValueStart,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    ExtAfterQuoted,
    /// CR of the chunk line seen.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// Start of a trailer field line, or of the empty line that ends the body.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed(ChunkError),
}

/// Validates a chunked body passed through verbatim; see the module docs.
#[derive(Clone, Debug)]
pub struct ChunkedScanner {
    state: State,
    digits: u8,
    size: u64,
    remaining: u64,
    extension_bytes: usize,
    trailer_bytes: usize,
    max_trailer_bytes: usize,
    payload: u64,
}

impl ChunkedScanner {
    /// `max_trailer_bytes` bounds the trailer field lines (the final empty line not counted).
    pub fn new(max_trailer_bytes: usize) -> Self {
        ChunkedScanner {
            state: State::Size,
            digits: 0,
            size: 0,
            remaining: 0,
            extension_bytes: 0,
            trailer_bytes: 0,
            max_trailer_bytes,
            payload: 0,
        }
    }

    /// Validates the next bytes of the body. Resumable at any byte boundary. If `!done`,
    /// `consumed == input.len()`. If `done`, `consumed` is exactly the end of the message
    /// (last chunk, trailers, final CRLF); bytes after it belong to the next message. After
    /// an error, every later call returns the same error.
    pub fn scan(&mut self, input: &[u8]) -> Result<Scan, ChunkError> {
        self.scan_data(input, |_| {})
    }

    /// As [`ChunkedScanner::scan`], and calls `data` with the range of `input` of every run
    /// of chunk data in it, in order: what is left once the chunked framing is taken off.
    pub fn scan_data(
        &mut self,
        input: &[u8],
        data: impl FnMut(Range<usize>),
    ) -> Result<Scan, ChunkError> {
        self.scan_parts(input, data, |_| {})
    }

    /// As [`ChunkedScanner::scan_data`], and calls `trailer` with every byte of the trailer
    /// section (its field lines and the empty line that ends it), for a relay that carries
    /// trailers into another protocol.
    pub fn scan_parts(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(Range<usize>),
        mut trailer: impl FnMut(u8),
    ) -> Result<Scan, ChunkError> {
        match self.state {
            State::Done => {
                return Ok(Scan {
                    consumed: 0,
                    done: true,
                })
            }
            State::Failed(err) => return Err(err),
            _ => {}
        }
        let mut i = 0;
        while i < input.len() {
            if self.state == State::Data {
                let take = self.remaining.min((input.len() - i) as u64);
                self.remaining -= take;
                data(i..i + take as usize);
                i += take as usize;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let byte = input[i];
            i += 1;
            if matches!(
                self.state,
                State::TrailerStart
                    | State::TrailerName
                    | State::TrailerValue
                    | State::TrailerLf
                    | State::FinalLf
            ) {
                trailer(byte);
            }
            if let Err(err) = self.step(byte) {
                self.state = State::Failed(err);
                return Err(err);
            }
            if self.state == State::Done {
                return Ok(Scan {
                    consumed: i,
                    done: true,
                });
            }
        }
        Ok(Scan {
            consumed: input.len(),
            done: false,
        })
    }

    /// Sum of the sizes of every chunk whose size line was read, including the one whose
    /// data is still arriving: a body limit trips as soon as a chunk announces too much.
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        self.state = match self.state {
            Size => match b {
                _ if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > MAX_SIZE_DIGITS {
                        return Err(ChunkError::SizeOverflow);
                    }
                    self.size = (self.size << 4) | u64::from(hex_value(b));
                    if self.size > i64::MAX as u64 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    Size
                }
                b'\n' => return Err(ChunkError::BadLineEnding),
                _ if self.digits == 0 => return Err(ChunkError::BadSize),
                b';' => {
                    self.extension_bytes = 0;
                    ExtNameStart
                }
                b'\r' => SizeLf,
                _ => return Err(ChunkError::BadSize),
            },
            ExtNameStart | ExtName | ExtValueStart | ExtToken | ExtQuoted | ExtQuotedEscape
            | ExtAfterQuoted => {
                self.extension_bytes += 1;
                if self.extension_bytes > MAX_EXTENSION_BYTES {
                    return Err(ChunkError::BadExtension);
                }
                self.extension(b)?
            }
            SizeLf => match b {
                b'\n' if self.size == 0 => TrailerStart,
                b'\n' => {
                    self.payload = self.payload.saturating_add(self.size);
                    self.remaining = self.size;
                    Data
                }
                _ => return Err(ChunkError::BadLineEnding),
            },
            DataCr if b == b'\r' => DataLf,
            DataLf if b == b'\n' => {
                self.digits = 0;
                self.size = 0;
                Size
            }
            DataCr | DataLf => return Err(ChunkError::MissingDataCrlf),
            TrailerStart if b == b'\r' => FinalLf,
            FinalLf if b == b'\n' => Done,
            FinalLf => return Err(ChunkError::BadLineEnding),
            TrailerStart | TrailerName | TrailerValue | TrailerLf => {
                if b == b'\n' && self.state != TrailerLf {
                    return Err(ChunkError::BadLineEnding);
                }
                self.trailer_bytes += 1;
                if self.trailer_bytes > self.max_trailer_bytes {
                    return Err(ChunkError::TrailerTooLarge);
                }
                self.trailer(b)?
            }
            // `scan` consumes data in bulk and returns before stepping when done or failed.
            Data | Done | Failed(_) => self.state,
        };
        Ok(())
    }

    /// One byte of `*( ";" token [ "=" ( token / quoted-string ) ] )`.
    fn extension(&self, b: u8) -> Result<State, ChunkError> {
        use State::*;
        if b == b'\n' {
            return Err(ChunkError::BadLineEnding);
        }
        Ok(match (self.state, b) {
            (ExtNameStart, _) if is_tchar(b) => ExtName,
            (ExtName, _) if is_tchar(b) => ExtName,
            (ExtName, b'=') => ExtValueStart,
            (ExtValueStart | ExtToken, _) if is_tchar(b) => ExtToken,
            (ExtValueStart, b'"') => ExtQuoted,
            (ExtQuoted, b'"') => ExtAfterQuoted,
            (ExtQuoted, b'\\') => ExtQuotedEscape,
            (ExtQuoted, _) if is_quoted_text(b) => ExtQuoted,
            (ExtQuotedEscape, _) if is_field_text(b) => ExtQuoted,
            (ExtName | ExtToken | ExtAfterQuoted, b';') => ExtNameStart,
            (ExtName | ExtToken | ExtAfterQuoted, b'\r') => SizeLf,
            _ => return Err(ChunkError::BadExtension),
        })
    }

    /// One byte of the trailer field lines: `token ":" field-value CRLF`, no obs-fold.
    fn trailer(&self, b: u8) -> Result<State, ChunkError> {
        use State::*;
        Ok(match (self.state, b) {
            (TrailerLf, b'\n') => TrailerStart,
            (TrailerLf, _) => return Err(ChunkError::BadLineEnding),
            (TrailerStart | TrailerName, _) if is_tchar(b) => TrailerName,
            (TrailerName, b':') => TrailerValue,
            (TrailerValue, b'\r') => TrailerLf,
            (TrailerValue, _) if is_field_text(b) => TrailerValue,
            _ => return Err(ChunkError::BadTrailer),
        })
    }
}

/// HTAB, SP, VCHAR and obs-text: what a field value or a quoted-pair may hold.
fn is_field_text(b: u8) -> bool {
    b == b'\t' || b == b' ' || b.is_ascii_graphic() || b >= 0x80
}

/// `qdtext`: field text but '"' and '\\'.
fn is_quoted_text(b: u8) -> bool {
    is_field_text(b) && b != b'"' && b != b'\\'
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Appends a chunk-size line: `len` in lower-case hex, then CRLF.
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * std::mem::size_of::<usize>()];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[path = "chunked_tests.rs"]
mod tests;
