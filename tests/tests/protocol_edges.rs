//! HTTP/1.1 protocol edges: later 1.x minor versions, other major versions, transfer codings
//! from the upstream, 204/304/HEAD responses, and HTTP/1.0 clients behind an HTTP/1.1 upstream
//! side.

use ringway_tests::{both_drivers, proxy_toml, Client, Gateway, Received, Reply, Upstream};
use std::time::Duration;

/// An upstream that answers with the version and target it was sent.
fn echo_version() -> Upstream {
    Upstream::start(|req: &Received| Reply::ok(&format!("{} {}", req.version, req.target)))
}

both_drivers!(later_minor_versions_are_served_as_1_1, |driver| {
    let up = echo_version();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    let mut c = Client::connect(gw.addr());
    for minor in [2, 5, 9] {
        let resp = c.request(&format!("GET /v{minor} HTTP/1.{minor}\r\nHost: h\r\n\r\n"));
        assert_eq!(resp.status, 200, "HTTP/1.{minor}: {:?}", resp.text());
        assert_eq!(resp.text(), format!("HTTP/1.1 /v{minor}"));
        // Served as 1.1: persistent by default, no keep-alive token needed.
        assert_eq!(resp.header("connection"), None);
    }
    // 1.1's rules hold: no Host is a 400.
    let mut c = Client::connect(gw.addr());
    let resp = c.request("GET / HTTP/1.2\r\n\r\n");
    assert_eq!(resp.status, 400);
    assert_eq!(up.requests(), 3);
});

both_drivers!(other_major_versions_are_505, |driver| {
    let up = echo_version();
    let gw = Gateway::start(driver, &proxy_toml(up.addr(), ""));
    for line in ["GET / HTTP/2.0", "GET / HTTP/3.0"] {
        let mut c = Client::connect(gw.addr());
        let resp = c.request(&format!("{line}\r\nHost: h\r\n\r\n"));
        assert_eq!(resp.status, 505, "{line}");
        assert_eq!(resp.text(), "505 HTTP Version Not Supported\n");
        assert_eq!(resp.header("connection"), Some("close"));
        assert!(
            c.is_closed(Duration::from_secs(5)),
            "{line}: connection kept"
        );
    }
    assert_eq!(up.connections(), 0);
});
