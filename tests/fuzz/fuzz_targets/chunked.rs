//! The chunked decoder on arbitrary bytes: whole, a byte at a time and in pseudo-random pieces
//! it gives the same answer (where the body ends or which error), the same payload and the
//! same data runs; it never consumes past the end of the body, and stays done or failed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_core::http::h1::{ChunkError, ChunkedScanner};

/// Small, so that 'trailer section too large' is within the fuzzer's reach.
const MAX_TRAILER: usize = 64;

#[derive(Debug, PartialEq)]
struct Outcome {
    /// Bytes of the body, if it ended.
    end: Option<usize>,
    error: Option<ChunkError>,
    payload: u64,
    data: Vec<u8>,
}

/// Feeds `pieces` in order to one scanner, stopping at the end of the body or an error.
fn scan<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut scanner = ChunkedScanner::new(MAX_TRAILER);
    let mut out = Outcome {
        end: None,
        error: None,
        payload: 0,
        data: Vec::new(),
    };
    let mut offset = 0;
    for piece in pieces {
        let mut runs = Vec::new();
        let result = scanner.scan_data(piece, |r| runs.push(r));
        // Data runs before an error were data all the same.
        let consumed = result.map_or(piece.len(), |scan| scan.consumed);
        for r in runs {
            assert!(r.end <= consumed);
            out.data.extend_from_slice(&piece[r]);
        }
        match result {
            Ok(scan) if scan.done => {
                assert!(scanner.is_done());
                out.end = Some(offset + scan.consumed);
                // Done stays done and takes nothing more.
                let again = scanner.scan(piece).expect("done stays done");
                assert!(again.done && again.consumed == 0);
                break;
            }
            Ok(scan) => {
                assert_eq!(scan.consumed, piece.len());
                offset += piece.len();
            }
            Err(e) => {
                // An error stays the same error.
                assert_eq!(scanner.scan(b"0\r\n\r\n"), Err(e));
                out.error = Some(e);
                break;
            }
        }
    }
    out.payload = scanner.payload_bytes();
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = scan([data]);
    assert!(whole.data.len() as u64 <= whole.payload);
    assert_eq!(scan(data.chunks(1)), whole, "a byte at a time");
    assert_eq!(scan(ringway_fuzz::pieces(data)), whole, "in pieces");
});
