use super::*;

/// Runs httparse over `fields` (field lines, each ending in CRLF) and collects them.
fn collect_fields(fields: &[u8]) -> (Vec<u8>, Vec<HeaderRef>, Result<Fields, &'static str>) {
    let buf = [fields, b"\r\n"].concat();
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (_, parsed) = match httparse::parse_headers(&buf, &mut raw) {
        Ok(httparse::Status::Complete(done)) => done,
        other => panic!("{other:?}"),
    };
    let mut out = Vec::new();
    let result = collect(&buf, parsed, &mut out);
    (buf, out, result)
}

#[test]
fn classify_is_case_insensitive() {
    assert_eq!(HeaderKind::classify(b"Host"), HeaderKind::Host);
    assert_eq!(
        HeaderKind::classify(b"CONTENT-LENGTH"),
        HeaderKind::ContentLength
    );
    assert_eq!(
        HeaderKind::classify(b"transfer-Encoding"),
        HeaderKind::TransferEncoding
    );
    assert_eq!(HeaderKind::classify(b"TE"), HeaderKind::Te);
    assert_eq!(
        HeaderKind::classify(b"X-Request-Id"),
        HeaderKind::XRequestId
    );
    assert_eq!(
        HeaderKind::classify(b"Proxy-Authorization"),
        HeaderKind::ProxyAuthorization
    );
    assert_eq!(HeaderKind::classify(b"Forwarded"), HeaderKind::Forwarded);
    assert_eq!(HeaderKind::classify(b"Hosts"), HeaderKind::Other);
    assert_eq!(HeaderKind::classify(b""), HeaderKind::Other);
}

#[test]
fn hop_by_hop_and_framing_fields_are_stripped() {
    let header = |kind, named_in_connection| HeaderRef {
        name: Span { start: 0, end: 0 },
        value: Span { start: 0, end: 0 },
        kind,
        named_in_connection,
    };
    for kind in [
        HeaderKind::Connection,
        HeaderKind::KeepAlive,
        HeaderKind::ProxyConnection,
        HeaderKind::Te,
        HeaderKind::Trailer,
        HeaderKind::Upgrade,
        HeaderKind::TransferEncoding,
        HeaderKind::ProxyAuthorization,
        HeaderKind::ContentLength,
    ] {
        assert!(header(kind, false).strip_when_forwarding(), "{kind:?}");
    }
    for kind in [
        HeaderKind::Other,
        HeaderKind::Host,
        HeaderKind::Via,
        HeaderKind::XForwardedFor,
        HeaderKind::Expect,
    ] {
        assert!(!header(kind, false).strip_when_forwarding(), "{kind:?}");
    }
    assert!(header(HeaderKind::Other, true).strip_when_forwarding());
}

#[test]
fn spans_point_into_the_buffer() {
    let (buf, out, fields) = collect_fields(b"Host:  example.com \r\nX-A:\r\n");
    let fields = fields.unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].name.get(&buf), b"Host");
    assert_eq!(out[0].value.get(&buf), b"example.com");
    assert_eq!(out[0].kind, HeaderKind::Host);
    assert_eq!(out[1].value.get(&buf), b"");
    assert_eq!(fields.host_count, 1);
    assert_eq!(fields.host.unwrap().get(&buf), b"example.com");
}

#[test]
fn content_length_values() {
    let cl = |v: &[u8]| {
        collect_fields(&[b"Content-Length: ", v, b"\r\n"].concat())
            .2
            .map(|f| f.content_length)
    };
    assert_eq!(cl(b"0"), Ok(Some(0)));
    assert_eq!(cl(b"0042"), Ok(Some(42)));
    assert_eq!(cl(b"5, 5"), Ok(Some(5)));
    assert_eq!(
        cl(b"9999999999999999999"),
        Ok(Some(9_999_999_999_999_999_999))
    );
    for bad in [
        &b"+5"[..],
        b"-5",
        b"5 5",
        b"0x5",
        b"5,",
        b"5,,5",
        b"",
        b"10000000000000000000",
        b"5.0",
    ] {
        assert!(cl(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(cl(b"5, 6"), Err("differing Content-Length values"));
    let (_, _, two) = collect_fields(b"Content-Length: 7\r\nContent-Length: 7\r\n");
    assert_eq!(two.unwrap().content_length, Some(7));
    let (_, _, differ) = collect_fields(b"Content-Length: 7\r\nContent-Length: 8\r\n");
    assert_eq!(differ, Err("differing Content-Length values"));
}

#[test]
fn transfer_codings_span_every_field() {
    let te = |fields: &[u8]| collect_fields(fields).2.map(|f| f.transfer_encoding);
    let codings = |chunked, last_is_chunked, other| {
        Ok(Some(Codings {
            chunked,
            last_is_chunked,
            other,
        }))
    };
    assert_eq!(
        te(b"Transfer-Encoding: chunked\r\n"),
        codings(1, true, false)
    );
    assert_eq!(
        te(b"Transfer-Encoding: CHUNKED\r\n"),
        codings(1, true, false)
    );
    assert_eq!(
        te(b"Transfer-Encoding: gzip, chunked\r\n"),
        codings(1, true, true)
    );
    assert_eq!(
        te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"),
        codings(1, false, true)
    );
    assert_eq!(
        te(b"Transfer-Encoding: chunked, chunked\r\n"),
        codings(2, true, false)
    );
    assert_eq!(
        te(b"Transfer-Encoding: gzip;level=1\r\n"),
        codings(0, false, true)
    );
    assert_eq!(te(b"X: y\r\n"), Ok(None));
    for bad in [
        &b"chunked;x=1"[..],
        b"chunked,",
        b",chunked",
        b"\"chunked\"",
        b"chunked x",
        b"",
    ] {
        let field = [b"Transfer-Encoding: ", bad, b"\r\n"].concat();
        assert!(te(&field).is_err(), "{}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn connection_options() {
    let (buf, out, fields) =
        collect_fields(b"Connection: close, X-Secret\r\nx-secret: 1\r\nX-Other: 2\r\nHost: a\r\nConnection: host\r\n");
    let fields = fields.unwrap();
    assert!(fields.close);
    assert!(!fields.keep_alive);
    let marked: Vec<&[u8]> = out
        .iter()
        .filter(|h| h.named_in_connection)
        .map(|h| h.name.get(&buf))
        .collect();
    assert_eq!(marked, [&b"x-secret"[..]], "Host is never marked");

    let (_, _, fields) = collect_fields(b"Connection: Keep-Alive\r\n");
    assert!(fields.unwrap().keep_alive);
    let (_, _, fields) = collect_fields(b"Connection: ,close,\r\n");
    assert!(fields.unwrap().close);
    let (_, _, bad) = collect_fields(b"Connection: a b\r\n");
    assert_eq!(bad, Err("invalid Connection option"));
}

#[test]
fn expect_continue_is_case_insensitive() {
    let (_, _, fields) = collect_fields(b"Expect: 100-Continue\r\n");
    assert!(fields.unwrap().expect_continue);
    let (_, _, fields) = collect_fields(b"Expect: something-else\r\n");
    assert!(!fields.unwrap().expect_continue);
}

#[test]
fn framing_lookalikes_are_flagged() {
    for name in [
        "Content_Length",
        "transfer_encoding",
        "Transfer_Encoding",
        "content_length",
    ] {
        let (_, _, fields) = collect_fields(format!("{name}: 5\r\n").as_bytes());
        assert!(fields.unwrap().framing_lookalike, "{name}");
    }
    for name in ["X_Content_Length", "Content-Length", "content_type", "X_Y"] {
        let (_, _, fields) = collect_fields(format!("{name}: 5\r\n").as_bytes());
        assert!(!fields.unwrap().framing_lookalike, "{name}");
    }
}
