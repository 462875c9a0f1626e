//! WebSocket through the gateway: a real client and echo server (tungstenite) on either side,
//! plain and over TLS, with large messages, pings, close codes, a reload and a drain in the
//! middle, the idle timeout, and routes or upstreams that do not upgrade.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringway_tests::tls::tls_proxy_toml;
use ringway_tests::{
    both_drivers, listener_toml, poll_until, proxy_toml, route_toml, upstream_toml, Client,
    Gateway, Pki, Reply, TempPath, TlsClient, Upstream,
};
use tungstenite::handshake::server::{Request, Response};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

/// Large enough for the 16 MiB messages, frames included.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20))
}

/// Request heads as (name, value) pairs, one list per handshake.
type Heads = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A WebSocket echo server: every message comes back; a text message "close:CODE" makes the
/// server close with that code; "ping" makes it ping the client. Keeps the request heads it
/// accepted.
struct EchoServer {
    addr: SocketAddr,
    heads: Heads,
}

impl EchoServer {
    fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let seen = seen.clone();
                std::thread::spawn(move || serve_echo(stream, seen));
            }
        });
        EchoServer { addr, heads }
    }

    fn heads(&self) -> Vec<Vec<(String, String)>> {
        self.heads.lock().unwrap().clone()
    }
}

fn serve_echo(stream: TcpStream, seen: Heads) {
    #[allow(clippy::result_large_err)] // tungstenite's callback type
    let record = |req: &Request, resp: Response| {
        let head = req
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        seen.lock().unwrap().push(head);
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr_with_config(stream, record, Some(config())) else {
        return;
    };
    loop {
        let msg = match ws.read() {
            Ok(msg) => msg,
            Err(_) => return,
        };
        let sent = match msg {
            Message::Text(text) if text.starts_with("close:") => {
                let code: u16 = text["close:".len()..].parse().unwrap();
                ws.close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: "server bye".into(),
                }))
            }
            Message::Text(text) if text.as_str() == "ping" => {
                ws.send(Message::Ping(b"srv".to_vec().into()))
            }
            // Says bye and drops the connection, without a closing handshake.
            Message::Text(text) if text.as_str() == "bye" => {
                let _ = ws.send(Message::text("bye"));
                return;
            }
            // Sends until the connection breaks, reading nothing more.
            Message::Text(text) if text.as_str() == "flood" => loop {
                if let Err(e) = ws.send(Message::binary(vec![1u8; 256 << 10])) {
                    break Err(e);
                }
            },
            Message::Text(_) | Message::Binary(_) => ws.send(msg),
            // Pongs go out on their own; a close is answered by the library.
            _ => Ok(()),
        };
        if sent.is_err() {
            return;
        }
    }
}

/// A WebSocket client handshake over `stream` to `path`.
fn handshake<S: Read + Write>(stream: S, host: &str, path: &str) -> WebSocket<S> {
    let url = format!("ws://{host}{path}");
    let (ws, resp) = tungstenite::client::client_with_config(url.as_str(), stream, Some(config()))
        .unwrap_or_else(|e| panic!("handshake to {url}: {e}"));
    assert_eq!(resp.status(), 101);
    ws
}

fn connect(gw: &Gateway, path: &str) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(gw.addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    handshake(stream, &gw.addr().to_string(), path)
}

fn text(ws: &mut WebSocket<impl Read + Write>) -> String {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn echo_round(ws: &mut WebSocket<impl Read + Write>, what: &str) {
    ws.send(Message::text(what)).unwrap();
    assert_eq!(text(ws), what);
}

fn header<'a>(head: &'a [(String, String)], name: &str) -> Option<&'a str> {
    head.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

both_drivers!(messages_echo_through_the_gateway, |driver| {
    let up = EchoServer::start();
    let log = TempPath::new("log");
    let extra = format!("[access_log]\npath = \"{}\"\n", log.path().display());
    let gw = Gateway::start(driver, &(proxy_toml(up.addr, "") + &extra));
    let mut ws = connect(&gw, "/chat?room=1");
    echo_round(&mut ws, "hello");
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    let kilo = vec![7u8; 1000];
    ws.send(Message::binary(kilo.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(kilo));
    // The upstream saw the handshake and the gateway's forwarding headers.
    let head = &up.heads()[0];
    assert_eq!(header(head, "upgrade"), Some("websocket"));
    assert_eq!(header(head, "connection"), Some("upgrade"));
    assert!(header(head, "sec-websocket-key").is_some());
    assert_eq!(header(head, "x-forwarded-for"), Some("127.0.0.1"));
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    drop(ws);
    // One access-log line, for the 101, with the bytes of the whole connection (heads,
    // frames).
    let line: String = poll_until("access log line", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        text.lines()
            .next()
            .map(str::to_string)
            .ok_or_else(|| "no line yet".to_string())
    });
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["status"], 101);
    assert_eq!(entry["path"], "/chat?room=1");
    assert!(entry["bytes_in"].as_u64().unwrap() > 1100, "{line}");
    assert!(entry["bytes_out"].as_u64().unwrap() > 1100, "{line}");
    let stats = gw.ctl(&["stats"]).expect_ok("stats");
    assert_eq!(stats["listeners"]["main"]["upgraded"], 1, "{stats}");
    assert_eq!(stats["routes"]["all"]["status"]["1xx"], 1, "{stats}");
});

both_drivers!(sixteen_mib_messages_both_ways, |driver| {
    let up = EchoServer::start();
    let gw = Gateway::start(driver, &proxy_toml(up.addr, ""));
    let mut ws = connect(&gw, "/");
    let big: Vec<u8> = (0..16u32 << 20).map(|i| (i * 7 + i / 4099) as u8).collect();
    for _ in 0..2 {
        ws.send(Message::binary(big.clone())).unwrap();
        match ws.read().unwrap() {
            Message::Binary(got) => assert!(got[..] == big[..], "16 MiB echo differs"),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    echo_round(&mut ws, "after");
});

both_drivers!(pings_and_close_codes_pass, |driver| {
    let up = EchoServer::start();
    let gw = Gateway::start(driver, &proxy_toml(up.addr, ""));
    let mut ws = connect(&gw, "/");
    // Client ping, server pong.
    ws.send(Message::Ping(b"cli".to_vec().into())).unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"cli"),
        other => panic!("expected pong, got {other:?}"),
    }
    // Server ping: the client library answers it; the message after it still arrives.
    ws.send(Message::text("ping")).unwrap();
    match ws.read().unwrap() {
        Message::Ping(p) => assert_eq!(&p[..], b"srv"),
        other => panic!("expected ping, got {other:?}"),
    }
    echo_round(&mut ws, "still here");
    // A close from the server, with its code and reason.
    ws.send(Message::text("close:4001")).unwrap();
    let frame = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame: {e}"),
        }
    };
    let frame = frame.expect("a close code");
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason.as_str(), "server bye");
    // A close from the client: the server echoes its code.
    let mut ws = connect(&gw, "/");
    ws.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "client bye".into(),
    }))
    .unwrap();
    let echoed = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => panic!("closed without an echo"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(echoed.map(|f| f.code), Some(CloseCode::Away));
});

both_drivers!(a_reload_keeps_open_websockets, |driver| {
    let up = EchoServer::start();
    let toml = proxy_toml(up.addr, "");
    let gw = Gateway::start(driver, &toml);
    let mut ws = connect(&gw, "/");
    echo_round(&mut ws, "before");
    // A reload that changes the route table and the upstream.
    let other = EchoServer::start();
    let reloaded = format!(
        "{}{}{}{}",
        listener_toml(""),
        upstream_toml("other", &[(other.addr, 1)], ""),
        route_toml("r2", "other"),
        "",
    );
    gw.write_config(&reloaded);
    let reply = gw.ctl(&["reload"]);
    assert!(reply.is_ok(), "{reply:?}");
    echo_round(&mut ws, "after reload");
    // New connections follow the new config.
    let mut ws2 = connect(&gw, "/");
    echo_round(&mut ws2, "new");
    assert_eq!(other.heads().len(), 1);
    assert_eq!(up.heads().len(), 1);
});

both_drivers!(idle_websockets_close_after_their_timeout, |driver| {
    let up = EchoServer::start();
    let toml = route_with(up.addr, "websocket_idle_timeout = \"1s\"");
    let gw = Gateway::start(driver, &toml);
    let mut ws = connect(&gw, "/");
    // Traffic keeps it open past the timeout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(300));
        echo_round(&mut ws, "tick");
    }
    // Silence closes it.
    let quiet = Instant::now();
    let ended = ws.read();
    assert!(matches!(ended, Err(_) | Ok(Message::Close(_))), "{ended:?}");
    let waited = quiet.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "closed after {waited:?}"
    );
});

both_drivers!(
    a_drain_closes_websockets_after_the_drain_timeout,
    |driver| {
        let up = EchoServer::start();
        let toml = format!(
            "[control]\nsocket = \"{{control_socket}}\"\ndrain_timeout = \"1s\"\n{}",
            proxy_toml(up.addr, "")
        );
        let mut gw = Gateway::start(driver, &toml);
        let mut ws = connect(&gw, "/");
        echo_round(&mut ws, "before");
        let drained = Instant::now();
        gw.signal("TERM");
        // Still relayed while the drain lasts.
        echo_round(&mut ws, "during");
        let ended = ws.read();
        assert!(matches!(ended, Err(_) | Ok(Message::Close(_))), "{ended:?}");
        assert!(gw.wait_exit(Duration::from_secs(10)).is_some());
        assert!(drained.elapsed() >= Duration::from_millis(900));
    }
);

both_drivers!(websocket_over_tls, |driver| {
    let pki = Pki::new("ws");
    let cert = pki.issue_server(&["localhost"]);
    let up = EchoServer::start();
    let toml = tls_proxy_toml(&[&cert], "", up.addr, "");
    let gw = Gateway::start(driver, &toml);
    let client = TlsClient::new(&pki, "localhost");
    let stream = client.connect(gw.addr()).unwrap().into_stream();
    let mut ws = handshake(stream, "localhost", "/secure");
    echo_round(&mut ws, "over tls");
    let big = vec![42u8; 4 << 20];
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    assert_eq!(header(&up.heads()[0], "x-forwarded-proto"), Some("https"));
});

/// The raw response head (status and lower-case head) to a handshake sent by hand.
fn raw_handshake(addr: SocketAddr) -> (u16, String) {
    let mut c = Client::connect(addr);
    let resp = c.request(
        "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    (resp.status, resp.text())
}

both_drivers!(routes_with_websocket_off_do_not_upgrade, |driver| {
    let up = Upstream::ok("plain");
    let toml = route_with(up.addr(), "websocket = false");
    let gw = Gateway::start(driver, &toml);
    let (status, body) = raw_handshake(gw.addr());
    assert_eq!((status, body.as_str()), (200, "plain"));
    let got = &up.received()[0];
    assert_eq!(got.header("upgrade"), None);
    assert_eq!(got.header("connection"), None);
});

both_drivers!(
    an_upstream_refusing_the_upgrade_answers_normally,
    |driver| {
        // An HTTP server that is not a WebSocket server answers the handshake as a request.
        let up = Upstream::start(|req| {
            assert_eq!(req.header("upgrade"), Some("websocket"));
            Reply::with_headers(403, &[], "no sockets here")
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let mut c = Client::connect(gw.addr());
        for _ in 0..2 {
            let resp = c.request(
                "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            );
            assert_eq!(resp.status, 403);
            assert_eq!(resp.text(), "no sockets here");
        }
    }
);

both_drivers!(a_101_nobody_asked_for_is_a_502, |driver| {
    let up = Upstream::start(|_| {
        Reply::Raw(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n".to_vec())
    });
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut c = Client::connect(gw.addr());
    let resp = c.request("GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(resp.status, 502);
    // Other upgrades are not offered upstream; h2c is ignored and served as HTTP/1.1.
    let up2 = Upstream::ok("fine");
    let gw2 = Gateway::start(driver, &proxy_toml(up2.addr(), ""));
    let mut c = Client::connect(gw2.addr());
    let resp = c.request(
        "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    );
    assert_eq!((resp.status, resp.text().as_str()), (200, "fine"));
    let got = &up2.received()[0];
    assert_eq!(got.header("upgrade"), None);
    assert_eq!(got.header("http2-settings"), None);
});

both_drivers!(
    a_client_that_stops_reading_is_closed_though_it_still_sends,
    |driver| {
        let up = EchoServer::start();
        let toml = route_with(up.addr, "websocket_idle_timeout = \"1s\"");
        let gw = Gateway::start(driver, &toml);
        let mut ws = connect(&gw, "/");
        ws.send(Message::text("flood")).unwrap();
        // Traffic the other way keeps the connection busy, but the gateway's writes to this
        // client wait: after the idle timeout it closes the connection.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if ws.send(Message::Ping(b"k".to_vec().into())).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // What the kernel buffered comes out, then the end; a connection still open would go on
        // flooding until this test's own timeout.
        let reading = Instant::now();
        while ws.read().is_ok() {
            assert!(
                reading.elapsed() < Duration::from_secs(10),
                "still relaying to a client that stopped reading"
            );
        }
    }
);

both_drivers!(
    only_websocket_is_offered_and_only_websocket_relayed,
    |driver| {
        // An upstream that switches to whatever else the client listed.
        let up = Upstream::start(|_| {
            Reply::Raw(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                    .to_vec(),
            )
        });
        let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
        let mut c = Client::connect(gw.addr());
        let resp = c.request(
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n",
        );
        assert_eq!(resp.status, 502);
        assert_eq!(up.received()[0].header("upgrade"), Some("websocket"));
    }
);

both_drivers!(
    a_tls_client_writing_after_the_upstream_left_does_no_harm,
    |driver| {
        let pki = Pki::new("ws-bye");
        let cert = pki.issue_server(&["localhost"]);
        let up = EchoServer::start();
        let gw = Gateway::start(driver, &tls_proxy_toml(&[&cert], "", up.addr, ""));
        let client = TlsClient::new(&pki, "localhost");
        let stream = client.connect(gw.addr()).unwrap().into_stream();
        let mut ws = handshake(stream, "localhost", "/");
        ws.send(Message::text("bye")).unwrap();
        assert_eq!(text(&mut ws), "bye");
        // The upstream is gone; the client goes on writing, with a record that is not TLS.
        let tcp = ringway_tests::Transport::tcp(ws.get_ref());
        let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x20];
        garbage.extend_from_slice(&[0xaa; 32]);
        let _ = (&*tcp).write_all(&garbage);
        // The shard still serves.
        let mut ws = handshake(
            client.connect(gw.addr()).unwrap().into_stream(),
            "localhost",
            "/",
        );
        echo_round(&mut ws, "still serving");
    }
);

/// One listener, upstream `u` at `addr`, and route `r` to it with `route_line` added.
fn route_with(addr: SocketAddr, route_line: &str) -> String {
    format!(
        "{}{}[[routes]]\nname = \"r\"\nupstream = \"u\"\n{route_line}\n",
        listener_toml(""),
        upstream_toml("u", &[(addr, 1)], ""),
    )
}
