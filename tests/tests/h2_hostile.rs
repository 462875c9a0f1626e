//! Hostile HTTP/2 from clients, sent frame by frame with the raw client (`h2raw`): the
//! known denial-of-service patterns (rapid reset, "MadeYouReset", CONTINUATION flood, HPACK
//! bomb, control-frame floods, zero-window stalls) and the malformed requests RFC 9113 §8
//! says a server must refuse (stream id misuse, bad pseudo-headers, connection-specific
//! fields, `te`, content-length disagreeing with DATA, invalid field names and values).
//!
//! Each test checks three things: the protocol outcome RFC 9113 requires (the GOAWAY or
//! RST_STREAM code, or the HTTP status), that the attack cost the gateway little (the
//! connection closed within seconds, peak RSS grew by at most [`RSS_BUDGET_KIB`], a fresh
//! connection still served), and that nothing malformed reached the upstream. Where the RFC
//! leaves the choice between a stream error and a connection error (§5.4.1 lets an endpoint
//! treat any stream error as a connection error), the comment says which one the gateway's
//! HTTP/2 stack (the h2 crate) makes.

use std::time::{Duration, Instant};

use ringway_tests::h2raw::{self, hpack, Arrived, H2Raw};
use ringway_tests::h2raw::{
    CANCEL, CONTINUATION, ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR, HEADERS, PROTOCOL_ERROR,
    REFUSED_STREAM, SETTINGS_INITIAL_WINDOW_SIZE, STREAM_CLOSED,
};
use ringway_tests::{both_drivers, proxy_toml, Gateway, Received, Reply, Upstream};

/// Longest any one wait for the gateway's answer may take.
const LIMIT: Duration = Duration::from_secs(5);
/// How much the gateway's peak RSS may grow during one attack.
const RSS_BUDGET_KIB: u64 = 50 * 1024;

/// An upstream answering "ok", or a 1 MiB body for `/big`.
fn upstream() -> Upstream {
    Upstream::start(|req: &Received| {
        if req.target == "/big" {
            Reply::Sized {
                status: 200,
                len: 1 << 20,
                chunked: false,
            }
        } else {
            Reply::ok("ok")
        }
    })
}

/// A gateway on the default config in front of `up`, and its RSS before any attack.
fn gateway(driver: ringway_tests::Driver, up: &Upstream) -> (Gateway, u64) {
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let rss = gw.rss_kib();
    (gw, rss)
}

/// Asserts the attack cost little: peak RSS within budget of `rss_before`, and a fresh
/// connection still answered (by the upstream) with 200 "ok".
fn assert_unharmed(gw: &Gateway, rss_before: u64) {
    let peak = gw.peak_rss_kib();
    assert!(
        peak <= rss_before + RSS_BUDGET_KIB,
        "peak RSS {peak} KiB, {rss_before} KiB before the attack"
    );
    let (status, body) = h2raw::fresh_get(gw.addr(), "/after", LIMIT);
    assert_eq!(status, 200, "a fresh request after the attack");
    assert_eq!(body, b"ok");
}

/// Asserts the connection ended with GOAWAY `code` and then closed.
fn assert_goaway(conn: &mut H2Raw, got: Arrived, code: u32) {
    assert_eq!(got.goaway_code(), Some(code), "{}", got.summary());
    let after = conn.read_until_closed(LIMIT);
    assert!(after.closed, "not closed after GOAWAY: {}", after.summary());
}

/// How the gateway refuses a malformed request. RFC 9113 §8.1.1 makes it a stream error
/// of type PROTOCOL_ERROR; §5.4.1 lets an endpoint treat it as a connection error instead.
/// The h2 crate resets the stream when the request's fields decode but break a rule, and
/// ends the connection when the HPACK decoder itself rejects a field (an unknown
/// pseudo-header, a byte no field value may hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// RST_STREAM PROTOCOL_ERROR; the connection goes on.
    Stream,
    /// GOAWAY PROTOCOL_ERROR, then the close.
    Connection,
}

/// Sends `block` as a request on stream 1 of a fresh connection and asserts it is refused
/// as `refusal` says, never answered as HTTP nor forwarded. After a stream error a good GET
/// on stream 3 of the same connection is served: the refusal cost the connection nothing.
fn assert_malformed(gw: &Gateway, up: &Upstream, block: &[u8], what: &str, refusal: Refusal) {
    let before = up.requests();
    let mut conn = H2Raw::connect(gw.addr());
    conn.headers(1, block, true).unwrap();
    let got = conn.read_stream(1, LIMIT);
    assert_eq!(
        got.status(1),
        None,
        "{what}: answered as HTTP: {}",
        got.summary()
    );
    match refusal {
        Refusal::Stream => {
            assert_eq!(got.resets(1), [PROTOCOL_ERROR], "{what}: {}", got.summary());
            assert_eq!(got.goaway, None, "{what}: {}", got.summary());
            conn.get(3, "/good").unwrap();
            let good = conn.read_stream(3, LIMIT);
            assert_eq!(good.status(3), Some(200), "{what}: {}", good.summary());
            let received = up.received();
            assert_eq!(received.len(), before + 1, "{what}: {received:?}");
            assert_eq!(received[before].target, "/good", "{what}");
        }
        Refusal::Connection => {
            assert_eq!(
                got.goaway_code(),
                Some(PROTOCOL_ERROR),
                "{what}: {}",
                got.summary()
            );
            let after = conn.read_until_closed(LIMIT);
            assert!(after.closed, "{what}: not closed: {}", after.summary());
            assert_eq!(up.requests(), before, "{what}: forwarded");
        }
    }
}

// CVE-2023-44487: HEADERS then RST_STREAM(CANCEL) at once, thousands of times. The h2 crate
// counts streams reset before the gateway accepted them (max_pending_accept_reset_streams
// 20) and ends the connection with GOAWAY ENHANCE_YOUR_CALM.
both_drivers!(rapid_reset_ends_the_connection, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    let block = hpack::get("/reset");
    let chunks = (0..100u32).map(|batch| {
        let mut out = Vec::new();
        for i in 0..100u32 {
            let id = 2 * (batch * 100 + i) + 1;
            out.extend(h2raw::headers_frames(id, &block, true));
            out.extend(h2raw::rst_frame(id, CANCEL));
        }
        out
    });
    let start = Instant::now();
    conn.flood(chunks);
    let got = conn.read_until_goaway(LIMIT);
    // The GOAWAY's last stream id says how far the gateway went: a few dozen of the
    // 10000 streams.
    let (last, _) = got
        .goaway
        .unwrap_or_else(|| panic!("no GOAWAY: {}", got.summary()));
    assert!(last < 200, "processed up to stream {last}");
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    assert!(start.elapsed() < LIMIT, "took {:?}", start.elapsed());
    let forwarded = up.requests();
    assert!(
        forwarded <= 256,
        "{forwarded} reset requests reached the upstream"
    );
    assert_unharmed(&gw, rss);
});

/// `n` streams from `first` (odd ids), each a complete GET followed by a WINDOW_UPDATE that
/// overflows the stream's send window past 2^31 - 1: RFC 9113 §6.9.1 makes that a stream
/// error FLOW_CONTROL_ERROR, which the server has to send itself.
fn made_you_reset(first: u32, n: u32) -> Vec<u8> {
    let block = hpack::get("/made-you-reset");
    let mut out = Vec::new();
    for i in 0..n {
        let id = first + 2 * i;
        out.extend(h2raw::headers_frames(id, &block, true));
        out.extend(h2raw::window_update_frame(id, 0x7fff_ffff));
    }
    out
}

// "MadeYouReset" (CVE-2025-8671): requests the client makes the server reset itself. Sent
// in batches, each waited for, so that every stream is reset for its own error and none is
// refused for concurrency: the h2 crate resets each with FLOW_CONTROL_ERROR, counts the
// resets it made (max_local_error_reset_streams 256), and at the budget's end says GOAWAY
// ENHANCE_YOUR_CALM.
both_drivers!(made_you_reset_ends_the_connection, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    const BATCH: u32 = 32;
    let mut codes = Vec::new();
    let mut last = None;
    for batch in 0..40 {
        if conn
            .write(&made_you_reset(1 + 2 * BATCH * batch, BATCH))
            .is_err()
        {
            break;
        }
        let mut seen = 0;
        let got = conn.read_until(LIMIT, |f| {
            seen += usize::from(f.kind == h2raw::RST_STREAM);
            f.kind == h2raw::GOAWAY || seen == BATCH as usize
        });
        codes.extend(
            got.frames
                .iter()
                .filter(|f| f.kind == h2raw::RST_STREAM)
                .map(|f| f.error_code()),
        );
        if got.goaway.is_some() || got.closed {
            last = Some(got);
            break;
        }
        assert_eq!(seen, BATCH as usize, "batch {batch}: {}", got.summary());
    }
    let got = last.expect("no GOAWAY after 1280 self-reset streams");
    assert!(
        codes.iter().all(|c| *c == Some(FLOW_CONTROL_ERROR)),
        "{codes:?}"
    );
    assert!((200..=256).contains(&codes.len()), "{} resets", codes.len());
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    // Streams the gateway accepted before their reset may have gone upstream; no more.
    let forwarded = up.requests();
    assert!(
        forwarded <= codes.len(),
        "{forwarded} requests reached the upstream"
    );
    assert_unharmed(&gw, rss);
});

// The same in one burst: the reset streams still wait to be accepted and fill the 128
// concurrent-stream slots, so the h2 crate refuses the next ones (REFUSED_STREAM), which
// count against the same budget; GOAWAY ENHANCE_YOUR_CALM ends it before any request is
// served.
both_drivers!(made_you_reset_burst_ends_the_connection, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.flood((0..50).map(|batch| made_you_reset(1 + 100 * batch, 50)));
    let got = conn.read_until_goaway(LIMIT);
    assert!(
        got.frames
            .iter()
            .filter(|f| f.kind == h2raw::RST_STREAM)
            .all(|f| matches!(f.error_code(), Some(FLOW_CONTROL_ERROR | REFUSED_STREAM))),
        "{}",
        got.summary()
    );
    assert!(got.reset_count() <= 256, "{}", got.summary());
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    assert!(up.requests() <= 128, "{} requests forwarded", up.requests());
    assert_unharmed(&gw, rss);
});

// CONTINUATION flood (CVE-2024-27316 and kin): a header block that never ends. RFC 9113
// §10.5.1 lets the server end it once the block passes its limits; the h2 crate caps the
// CONTINUATION frames per block and says GOAWAY ENHANCE_YOUR_CALM.
both_drivers!(continuation_flood_ends_the_connection, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.send(HEADERS, 0, 1, &hpack::get("/continued")).unwrap();
    let mut field = Vec::new();
    hpack::literal(&mut field, b"x-filler", &[b'a'; 1000]);
    let chunks = (0..10_000).map(|_| h2raw::frame(CONTINUATION, 0, 1, &field));
    let written = conn.flood(chunks);
    let got = conn.read_until_goaway(LIMIT);
    assert!(
        written < 10_000,
        "the flood went in whole: {}",
        got.summary()
    );
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    assert_eq!(up.requests(), 0);
    assert_unharmed(&gw, rss);
});

// Empty CONTINUATION frames cost the attacker 9 bytes each and never grow the header list:
// the frame count, not the size, has to stop them.
both_drivers!(empty_continuation_flood_ends_the_connection, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.send(HEADERS, 0, 1, &hpack::get("/continued")).unwrap();
    let chunks = (0..1000).map(|_| {
        (0..100)
            .flat_map(|_| h2raw::frame(CONTINUATION, 0, 1, &[]))
            .collect()
    });
    conn.flood(chunks);
    let got = conn.read_until_goaway(LIMIT);
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    assert_eq!(up.requests(), 0);
    assert_unharmed(&gw, rss);
});

// HPACK bomb: one 4000-byte field put in the dynamic table, then referenced by its 1-byte
// index 200 times: 4 KB on the wire, 800 KB decoded. The decoded list passes
// SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB) many times over; the h2 crate treats that as abuse
// (GOAWAY ENHANCE_YOUR_CALM) rather than a plain 431, and decodes nothing more.
both_drivers!(hpack_bomb_is_refused, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    let mut block = hpack::get("/bomb");
    hpack::literal_indexed(&mut block, b"x-bomb", &[b'b'; 4000]);
    for _ in 0..200 {
        hpack::indexed(&mut block, 62);
    }
    conn.headers(1, &block, true).unwrap();
    let got = conn.read_until_goaway(LIMIT);
    assert_eq!(got.status(1), None, "{}", got.summary());
    assert_goaway(&mut conn, got, ENHANCE_YOUR_CALM);
    assert_eq!(up.requests(), 0);
    assert_unharmed(&gw, rss);
});

// A header list over SETTINGS_MAX_HEADER_LIST_SIZE but not absurdly so (one 20 KiB value):
// RFC 9113 §10.5.1 allows a 431 answer; the h2 crate sends it and resets the stream, and
// the connection goes on.
both_drivers!(oversized_header_list_is_431, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    let big = vec![b'v'; 20 * 1024];
    let block = hpack::get_with(
        "/big-header",
        &[("x-big", std::str::from_utf8(&big).unwrap())],
    );
    conn.headers(1, &block, true).unwrap();
    let got = conn.read_stream(1, LIMIT);
    assert_eq!(got.status(1), Some(431), "{}", got.summary());
    assert_eq!(got.goaway, None, "{}", got.summary());
    conn.get(3, "/good").unwrap();
    let good = conn.read_stream(3, LIMIT);
    assert_eq!(good.status(3), Some(200), "{}", good.summary());
    assert_eq!(up.requests(), 1);
    assert_eq!(up.received()[0].target, "/good");
    assert_unharmed(&gw, rss);
});

/// Floods one connection with `chunks`, then checks it is still healthy: a PING answered,
/// a GET on stream `next_stream` served.
fn flood_then_serve(
    gw: &Gateway,
    rss: u64,
    settings: &[(u16, u32)],
    chunks: impl Iterator<Item = Vec<u8>>,
    next_stream: u32,
) {
    let mut conn = H2Raw::connect_with(gw.addr(), settings);
    let start = Instant::now();
    conn.flood(chunks);
    let pong = conn.ping_pong(Duration::from_secs(20));
    assert_eq!(pong.goaway, None, "{}", pong.summary());
    assert!(
        pong.frames.iter().any(|f| f.kind == h2raw::PING),
        "no PING ACK after the flood: {}",
        pong.summary()
    );
    conn.get(next_stream, "/after-flood").unwrap();
    let got = conn.read_stream(next_stream, LIMIT);
    assert_eq!(got.status(next_stream), Some(200), "{}", got.summary());
    assert!(start.elapsed() < Duration::from_secs(30));
    assert_unharmed(gw, rss);
}

// SETTINGS flood: RFC 9113 sets no limit, and the h2 crate does not end the connection: it
// applies and acknowledges each SETTINGS in turn, holding no more than one pending ACK
// (it stops reading while it cannot write one), so the flood costs it nothing and the
// connection stays usable.
both_drivers!(settings_flood_is_bounded, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let settings = h2raw::settings_frame(&[(SETTINGS_INITIAL_WINDOW_SIZE, 65_535)]);
    let chunks = (0..200).map(|_| settings.repeat(100));
    flood_then_serve(&gw, rss, &[], chunks, 1);
});

// PING flood: each PING needs an ACK; the h2 crate keeps at most one ACK pending and stops
// reading while it cannot write it, so the flood is paced by the client's own reading and
// the connection stays usable (no GOAWAY).
both_drivers!(ping_flood_is_bounded, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let ping = h2raw::ping_frame(*b"flooding");
    let chunks = (0..200).map(|_| ping.repeat(100));
    flood_then_serve(&gw, rss, &[], chunks, 1);
});

// PRIORITY flood on idle streams: RFC 9113 §5.3.2 deprecates the priority scheme and the
// h2 crate ignores PRIORITY frames, so they create no state.
both_drivers!(priority_flood_is_bounded, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let chunks = (0..200u32).map(|batch| {
        (0..100u32)
            .flat_map(|i| h2raw::priority_frame(2 * (batch * 100 + i) + 1, 0, 16))
            .collect()
    });
    flood_then_serve(&gw, rss, &[], chunks, 2 * 20_000 + 1);
});

// Connection-level WINDOW_UPDATE flood of 1-byte increments: each only adds to a counter
// (2^31 - 1 is never reached), so the connection stays usable.
both_drivers!(window_update_flood_is_bounded, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let update = h2raw::window_update_frame(0, 1);
    let chunks = (0..200).map(|_| update.repeat(100));
    flood_then_serve(&gw, rss, &[], chunks, 1);
});

// A client that announces a zero stream window and never opens it holds its stream's
// response at the gateway; the listener's send_timeout resets that stream, and only it:
// another stream on the same connection, and another connection, are served meanwhile.
both_drivers!(zero_window_stall_is_reset_after_send_timeout, |driver| {
    let up = upstream();
    let toml =
        proxy_toml(up.addr(), "").replace("[[listeners]]", "[[listeners]]\nsend_timeout = \"1s\"");
    let gw = Gateway::start(driver, &toml);
    let rss = gw.rss_kib();
    let mut conn = H2Raw::connect_with(gw.addr(), &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    let start = Instant::now();
    conn.get(1, "/big").unwrap();
    conn.get(3, "/small").unwrap();
    conn.write(&h2raw::window_update_frame(3, 65_535)).unwrap();
    let small = conn.read_stream(3, LIMIT);
    assert_eq!(small.status(3), Some(200), "{}", small.summary());
    assert_eq!(small.body(3), b"ok");
    assert!(!small.stream_ended(1), "{}", small.summary());
    assert_eq!(h2raw::fresh_get(gw.addr(), "/other", LIMIT).0, 200);
    let big = conn.read_stream(1, LIMIT);
    let elapsed = start.elapsed();
    assert!(
        big.body(1).is_empty() && small.body(1).is_empty(),
        "DATA past a zero window"
    );
    assert_eq!(big.goaway, None, "{}", big.summary());
    assert_eq!(big.resets(1).len(), 1, "{}", big.summary());
    assert!(
        elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(4),
        "reset after {elapsed:?}"
    );
    // The connection itself is unharmed.
    conn.get(5, "/after-stall").unwrap();
    conn.write(&h2raw::window_update_frame(5, 65_535)).unwrap();
    let after = conn.read_stream(5, LIMIT);
    assert_eq!(after.status(5), Some(200), "{}", after.summary());
    assert_unharmed(&gw, rss);
});

// RFC 9113 §5.1.1: streams a client opens have odd ids, each larger than the last; anything
// else is a connection error PROTOCOL_ERROR, as is HEADERS on stream 0 (§6.2).
both_drivers!(even_stream_id_is_a_connection_error, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.get(2, "/even").unwrap();
    let got = conn.read_until_goaway(LIMIT);
    assert_goaway(&mut conn, got, PROTOCOL_ERROR);
    assert_eq!(up.requests(), 0);
    assert_unharmed(&gw, rss);
});

both_drivers!(decreasing_stream_id_is_a_connection_error, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.get(5, "/five").unwrap();
    let five = conn.read_stream(5, LIMIT);
    assert_eq!(five.status(5), Some(200), "{}", five.summary());
    conn.get(3, "/three").unwrap();
    let got = conn.read_until_goaway(LIMIT);
    assert_goaway(&mut conn, got, PROTOCOL_ERROR);
    assert_eq!(up.requests(), 1);
    assert_unharmed(&gw, rss);
});

// A stream id used again after the stream closed: the client already sent END_STREAM on
// it, so RFC 9113 §5.1 ("closed") makes any further frame a connection error
// STREAM_CLOSED; §5.1.1 (a new stream id not above the last) says PROTOCOL_ERROR. Either
// is a connection error.
both_drivers!(reused_stream_id_is_a_connection_error, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.get(1, "/once").unwrap();
    let once = conn.read_stream(1, LIMIT);
    assert_eq!(once.status(1), Some(200), "{}", once.summary());
    conn.get(1, "/twice").unwrap();
    let got = conn.read_until_goaway(LIMIT);
    let code = got.goaway_code();
    assert!(
        code == Some(PROTOCOL_ERROR) || code == Some(STREAM_CLOSED),
        "{}",
        got.summary()
    );
    let after = conn.read_until_closed(LIMIT);
    assert!(after.closed, "{}", after.summary());
    assert_eq!(up.requests(), 1);
    assert_unharmed(&gw, rss);
});

both_drivers!(headers_on_stream_zero_is_a_connection_error, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut conn = H2Raw::connect(gw.addr());
    conn.get(0, "/zero").unwrap();
    let got = conn.read_until_goaway(LIMIT);
    assert_goaway(&mut conn, got, PROTOCOL_ERROR);
    assert_eq!(up.requests(), 0);
    assert_unharmed(&gw, rss);
});

// RFC 9113 §8.3.1: :method, :scheme and :path exactly once each, pseudo-header fields
// only those defined, and all before the regular fields.
both_drivers!(malformed_pseudo_headers_are_refused, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let mut no_path = vec![0x82, 0x86];
    hpack::literal_name(&mut no_path, 1, b"h2.test");
    assert_malformed(&gw, &up, &no_path, "missing :path", Refusal::Stream);

    let mut unknown = hpack::get("/unknown");
    hpack::literal(&mut unknown, b":foo", b"bar");
    assert_malformed(
        &gw,
        &up,
        &unknown,
        "unknown pseudo-header",
        Refusal::Connection,
    );

    let mut late = vec![0x82, 0x86];
    hpack::literal_name(&mut late, 1, b"h2.test");
    hpack::literal(&mut late, b"x-regular", b"1");
    late.push(0x84);
    assert_malformed(
        &gw,
        &up,
        &late,
        "pseudo-header after a regular field",
        Refusal::Stream,
    );

    let mut twice = hpack::get("/twice");
    twice.push(0x83);
    assert_malformed(&gw, &up, &twice, "duplicate :method", Refusal::Stream);
    assert_unharmed(&gw, rss);
});

// RFC 9113 §8.2.2: connection-specific fields make a request malformed.
both_drivers!(connection_specific_fields_are_stream_errors, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    for (name, value) in [
        ("connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
    ] {
        let block = hpack::get_with("/conn", &[(name, value)]);
        assert_malformed(&gw, &up, &block, name, Refusal::Stream);
    }
    assert_unharmed(&gw, rss);
});

// RFC 9113 §8.2.2: `te` may only be "trailers".
both_drivers!(te_other_than_trailers_is_a_stream_error, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let block = hpack::get_with("/te", &[("te", "gzip")]);
    assert_malformed(&gw, &up, &block, "te: gzip", Refusal::Stream);

    let mut conn = H2Raw::connect(gw.addr());
    conn.headers(
        1,
        &hpack::get_with("/te-trailers", &[("te", "trailers")]),
        true,
    )
    .unwrap();
    let got = conn.read_stream(1, LIMIT);
    assert_eq!(got.status(1), Some(200), "{}", got.summary());
    assert_eq!(up.received().last().unwrap().target, "/te-trailers");
    assert_unharmed(&gw, rss);
});

/// Sends a POST with `content-length: 10` and `body` (END_STREAM), asserts RFC 9113 §8.1.1
/// (a stream error PROTOCOL_ERROR), and that the upstream never got a complete request
/// from it.
fn assert_length_mismatch(gw: &Gateway, up: &Upstream, body: &[u8]) {
    let before = up.requests();
    let mut conn = H2Raw::connect(gw.addr());
    let block = hpack::post("/length", &[("content-length", "10")]);
    conn.headers(1, &block, false).unwrap();
    conn.data(1, body, true).unwrap();
    let got = conn.read_stream(1, LIMIT);
    assert_eq!(
        got.resets(1),
        [PROTOCOL_ERROR],
        "{} body bytes: {}",
        body.len(),
        got.summary()
    );
    assert_eq!(got.status(1), None, "{}", got.summary());
    conn.get(3, "/good").unwrap();
    let good = conn.read_stream(3, LIMIT);
    assert_eq!(good.status(3), Some(200), "{}", good.summary());
    let received = up.received();
    assert_eq!(received.len(), before + 1, "{received:?}");
    assert_eq!(received[before].target, "/good");
}

both_drivers!(
    content_length_disagreeing_with_data_is_a_stream_error,
    |driver| {
        let up = upstream();
        let (gw, rss) = gateway(driver, &up);
        assert_length_mismatch(&gw, &up, b"abc");
        assert_length_mismatch(&gw, &up, &[b'x'; 20]);
        assert!(up.received().iter().all(|r| r.target != "/length"));
        assert_unharmed(&gw, rss);
    }
);

// RFC 9113 §8.2.1: field values must not contain CR, LF or NUL, field names must be
// lowercase; either makes the request malformed. The h2 crate rejects all three in its
// HPACK decoder, so each ends the connection (GOAWAY PROTOCOL_ERROR, see [`Refusal`]).
both_drivers!(invalid_field_names_and_values_are_refused, |driver| {
    let up = upstream();
    let (gw, rss) = gateway(driver, &up);
    let crlf = hpack::get_with("/crlf", &[("x-injected", "a\r\nx-evil: 1")]);
    assert_malformed(&gw, &up, &crlf, "CRLF in a value", Refusal::Connection);
    let nul = hpack::get_with("/nul", &[("x-nul", "a\0b")]);
    assert_malformed(&gw, &up, &nul, "NUL in a value", Refusal::Connection);
    let upper = hpack::get_with("/upper", &[("X-Upper", "1")]);
    assert_malformed(&gw, &up, &upper, "uppercase name", Refusal::Connection);
    assert!(up.received().iter().all(|r| r.header("x-evil").is_none()));
    assert_unharmed(&gw, rss);
});
