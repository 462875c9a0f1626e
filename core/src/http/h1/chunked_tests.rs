use super::*;

const TRAILER_LIMIT: usize = 64;

/// Feeds `input` in one call.
fn whole(input: &[u8]) -> Result<Scan, ChunkError> {
    ChunkedScanner::new(TRAILER_LIMIT).scan(input)
}

/// Feeds `input` in pieces ending at `cuts`, stopping when done; reports the total consumed.
fn pieces(input: &[u8], cuts: &[usize]) -> Result<Scan, ChunkError> {
    let mut scanner = ChunkedScanner::new(TRAILER_LIMIT);
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&input.len())) {
        let scan = scanner.scan(&input[from..to])?;
        if scan.done {
            assert!(scanner.is_done());
            return Ok(Scan {
                consumed: from + scan.consumed,
                done: true,
            });
        }
        assert_eq!(
            scan.consumed,
            to - from,
            "not done, so all of the input is consumed"
        );
        from = to;
    }
    Ok(Scan {
        consumed: input.len(),
        done: false,
    })
}

fn done_at(consumed: usize) -> Result<Scan, ChunkError> {
    Ok(Scan {
        consumed,
        done: true,
    })
}

const NOT_DONE: Result<Scan, ChunkError> = Ok(Scan {
    consumed: 0,
    done: false,
});

/// Messages covering every state, good and bad; some followed by the next message's bytes.
const MESSAGES: &[&[u8]] = &[
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
    b"A\r\n0123456789\r\n00\r\n\r\n",
    b"5;a=b;c;d=\"x y\\\"z\"\r\nhello\r\n0;last\r\nX-Sum: 1\r\nY:\r\n\r\nnext",
    b"0\r\nX-A: b\t c\r\n\r\n",
    b"5\r\nhello\r\n",
    b"5\r\nhel",
    b"5 \r\nhello\r\n0\r\n\r\n",
    b"5\nhello\r\n0\r\n\r\n",
    b"5\r\nhelloX\r\n0\r\n\r\n",
    b"5\r\nhello\n0\r\n\r\n",
    b"5;=x\r\nhello\r\n0\r\n\r\n",
    b"5;a=\"b\r\nhello\r\n0\r\n\r\n",
    b"0\r\n X: y\r\n\r\n",
    b"0\r\nX : y\r\n\r\n",
    b"0\r\nX: y\n\r\n",
    b"0\r\n\r\r",
    b"0\r\nX: y\r\n\n",
    b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    b"8000000000000000\r\n",
    b"0\r\nX-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
];

#[test]
fn a_body_and_the_next_message() {
    let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let mut scanner = ChunkedScanner::new(TRAILER_LIMIT);
    assert_eq!(scanner.scan(input), done_at(input.len() - 16));
    assert_eq!(scanner.payload_bytes(), 11);
    assert!(scanner.is_done());
    assert_eq!(scanner.scan(b"more"), done_at(0));
}

#[test]
fn payload_counts_announced_sizes() {
    let mut scanner = ChunkedScanner::new(TRAILER_LIMIT);
    assert_eq!(
        scanner.scan(b"10\r\nab"),
        Ok(Scan {
            consumed: 6,
            done: false
        })
    );
    assert_eq!(scanner.payload_bytes(), 16);
    assert!(!scanner.is_done());
}

#[test]
fn chunk_sizes() {
    assert_eq!(
        whole(b"7fffffffffffffff\r\n"),
        Ok(Scan {
            consumed: 18,
            done: false
        })
    );
    assert_eq!(whole(b"0000000000000001\r\nx\r\n0\r\n\r\n"), done_at(26));
    assert_eq!(
        whole(b"8000000000000000\r\n"),
        Err(ChunkError::SizeOverflow)
    );
    assert_eq!(
        whole(b"00000000000000001\r\n"),
        Err(ChunkError::SizeOverflow)
    );
    assert_eq!(whole(b"ffffffffffffffffff"), Err(ChunkError::SizeOverflow));
    for bad in [
        &b"\r\n"[..],
        b" 5\r\n",
        b"0x5\r\n",
        b"-5\r\n",
        b"+5\r\n",
        b"g\r\n",
        b"5 \r\n",
        b"5\t\r\n",
        b";a\r\n",
    ] {
        assert_eq!(
            whole(bad),
            Err(ChunkError::BadSize),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn chunk_extensions() {
    assert_eq!(
        whole(b"1;a\r\nx\r\n0;b=c;d=\"e;f\\\\\"\r\n\r\n"),
        done_at(27)
    );
    for bad in [
        &b"1;\r\n"[..],
        b"1; a\r\n",
        b"1;a \r\n",
        b"1;a=\r\n",
        b"1;a=b c\r\n",
        b"1;a=\"b\r\n",
        b"1;a=\"b\x01\"\r\n",
        b"1;a=\"b\"c\r\n",
        b"1;a==b\r\n",
        b"1;a;;b\r\n",
        b"1;a@b\r\n",
    ] {
        assert_eq!(
            whole(bad),
            Err(ChunkError::BadExtension),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let long = [
        &b"1;a="[..],
        &vec![b'b'; MAX_EXTENSION_BYTES - 3],
        b"\r\nx\r\n0\r\n\r\n",
    ]
    .concat();
    assert!(whole(&long).unwrap().done);
    let too_long = [
        &b"1;a="[..],
        &vec![b'b'; MAX_EXTENSION_BYTES - 2],
        b"\r\nx\r\n0\r\n\r\n",
    ]
    .concat();
    assert_eq!(whole(&too_long), Err(ChunkError::BadExtension));
}

#[test]
fn line_endings_are_crlf() {
    for bad in [
        &b"5\nhello"[..],
        b"5\rhello",
        b"5;a\nhello",
        b"5;a=\"b\"\n",
        b"0\r\n\n",
        b"0\r\nX: y\n",
        b"0\r\nX: y\rz",
        b"0\r\n\rz",
        b"0\r\nX\n",
    ] {
        assert_eq!(
            whole(bad),
            Err(ChunkError::BadLineEnding),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn data_is_followed_by_crlf() {
    for bad in [
        &b"5\r\nhelloX"[..],
        b"5\r\nhello\n",
        b"5\r\nhello\rX",
        b"5\r\nhello\r\r",
        b"1\r\nxy\r\n",
    ] {
        assert_eq!(
            whole(bad),
            Err(ChunkError::MissingDataCrlf),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn trailers() {
    let mut scanner = ChunkedScanner::new(0);
    assert_eq!(scanner.scan(LAST_CHUNK), done_at(5));
    let trailer = b"0\r\nX-A: b\r\n\r\n";
    assert_eq!(ChunkedScanner::new(8).scan(trailer), done_at(trailer.len()));
    assert_eq!(
        ChunkedScanner::new(7).scan(trailer),
        Err(ChunkError::TrailerTooLarge)
    );
    for bad in [
        &b"0\r\n X: y\r\n\r\n"[..],
        b"0\r\nX : y\r\n\r\n",
        b"0\r\nX\r\n\r\n",
        b"0\r\n: y\r\n\r\n",
        b"0\r\nX: a\0b\r\n\r\n",
    ] {
        assert_eq!(
            whole(bad),
            Err(ChunkError::BadTrailer),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn errors_are_sticky() {
    let mut scanner = ChunkedScanner::new(TRAILER_LIMIT);
    assert_eq!(scanner.scan(b"zz"), Err(ChunkError::BadSize));
    assert_eq!(scanner.scan(b"0\r\n\r\n"), Err(ChunkError::BadSize));
    assert!(!scanner.is_done());
    assert_eq!(ChunkError::BadSize.reason(), "invalid chunk size");
}

#[test]
fn empty_input_changes_nothing() {
    assert_eq!(whole(b""), NOT_DONE);
}

#[test]
fn one_byte_at_a_time_matches_whole() {
    for message in MESSAGES {
        let cuts: Vec<usize> = (1..message.len()).collect();
        assert_eq!(
            pieces(message, &cuts),
            whole(message),
            "{}",
            String::from_utf8_lossy(message)
        );
    }
}

#[test]
fn random_splits_match_whole() {
    // xorshift64 with a fixed seed: reproducible, no dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for message in MESSAGES {
        for _ in 0..200 {
            let mut cuts: Vec<usize> = (0..(next() % 6))
                .map(|_| (next() % (message.len() as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                pieces(message, &cuts),
                whole(message),
                "{} at {cuts:?}",
                String::from_utf8_lossy(message)
            );
        }
    }
}

#[test]
fn chunk_headers_round_trip() {
    let mut out = Vec::new();
    write_chunk_header(&mut out, 0);
    write_chunk_header(&mut out, 255);
    write_chunk_header(&mut out, 4096);
    assert_eq!(out, b"0\r\nff\r\n1000\r\n");
    out.clear();
    write_chunk_header(&mut out, usize::MAX);
    assert_eq!(out, b"ffffffffffffffff\r\n");
    let mut body = Vec::new();
    for piece in [&b"hello"[..], b" ", b"world, chunked"] {
        write_chunk_header(&mut body, piece.len());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(LAST_CHUNK);
    let mut scanner = ChunkedScanner::new(0);
    assert_eq!(scanner.scan(&body), done_at(body.len()));
    assert_eq!(scanner.payload_bytes(), 20);
}

#[test]
fn scan_data_yields_the_chunk_data_at_any_split() {
    let body = b"5;a=b\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nt: v\r\n\r\nNEXT";
    let end = body.len() - 4;
    for split in 0..=body.len() {
        let mut scanner = ChunkedScanner::new(64);
        let mut data = Vec::new();
        let (a, b) = body.split_at(split);
        let first = scanner
            .scan_data(a, |r| data.extend_from_slice(&a[r]))
            .unwrap();
        let consumed = if first.done {
            first.consumed
        } else {
            let second = scanner
                .scan_data(b, |r| data.extend_from_slice(&b[r]))
                .unwrap();
            assert!(second.done, "split {split}");
            split + second.consumed
        };
        assert_eq!(consumed, end, "split {split}");
        assert_eq!(data, b"hello world!", "split {split}");
    }
}
