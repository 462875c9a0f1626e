//! The PROXY protocol header parsers (v1 lines, v2 binary headers) and the X-Forwarded-For walk
//! that picks a client address behind trusted proxies, on arbitrary bytes: they never panic,
//! a v1 line is accepted only whole (with its CRLF), a v2 header only with the block length it
//! announces, and the walk answers the peer or an address written in the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_config::IpNet;
use ringway_core::http::h1::{parse_request, RequestLimits};
use ringway_core::proxy::client::client_address;
use ringway_core::proxy_protocol::{parse_v1, parse_v2, v2_block_len, Header};

fuzz_target!(|data: &[u8]| {
    if parse_v1(data).is_ok() {
        assert!(data.ends_with(b"\r\n") && data.starts_with(b"PROXY "));
    }
    if let Some((fixed, block)) = data.split_first_chunk::<16>() {
        let parsed = parse_v2(fixed, block);
        if let Ok(Header::Proxied(_) | Header::Local) = parsed {
            assert_eq!(v2_block_len(fixed), Ok(block.len()));
        }
    }
    // The bytes as the X-Forwarded-For value of a request from a trusted peer.
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    if value.contains(['\r', '\n']) {
        return;
    }
    let req = format!("GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {value}\r\n\r\n");
    let mut headers = Vec::new();
    let limits = RequestLimits {
        max_request_line: 64,
        max_head: 1 << 16,
    };
    let Ok(Some(_)) = parse_request(req.as_bytes(), &limits, &mut headers) else {
        return;
    };
    let trusted = [
        IpNet::parse("10.0.0.0/8").unwrap(),
        IpNet::parse("2001:db8::/32").unwrap(),
    ];
    let peer = "10.1.2.3".parse().unwrap();
    let (client, is_trusted) = client_address(&trusted, peer, req.as_bytes(), &headers);
    assert!(is_trusted);
    if client != peer {
        let written = value.split(',').filter_map(|e| {
            let e = e.trim_matches([' ', '\t']);
            e.parse::<std::net::IpAddr>()
                .or_else(|_| e.parse::<std::net::SocketAddr>().map(|s| s.ip()))
                .ok()
                .map(|ip| ip.to_canonical())
        });
        assert!(written.into_iter().any(|ip| ip == client), "{client} not in {value:?}");
    }
});
