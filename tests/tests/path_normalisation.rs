//! Paths are normalised before routing (docs/config.md, "Path normalisation"): no spelling of
//! a path reaches a route its plain spelling would not, encoded slashes and NULs are refused
//! (or kept encoded where the listener says so), and the upstream receives the normal form
//! with the query as sent. Over HTTP/1.1 and HTTP/2, on both drivers.

use std::time::Duration;

use ringway_tests::{
    both_drivers, get, h2client, upstream_toml, Client, Gateway, Received, Reply, Upstream,
};

/// `/private` answers itself; everything else goes to `up`, which echoes the target.
fn config(up: &Upstream, listener_extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n{listener_extra}\n\n{}\
         [[routes]]\nname = \"private\"\npath_prefix = \"/private\"\n\
         respond = {{ status = 200, body = \"private\" }}\n\n\
         [[routes]]\nname = \"rest\"\nupstream = \"backend\"\n",
        upstream_toml("backend", &[(up.addr(), 1)], "")
    )
}

fn echo() -> Upstream {
    Upstream::start(|req: &Received| Reply::ok(&format!("up {}", req.target)))
}

fn status_and_body(gw: &Gateway, path: &str) -> (u16, String) {
    let resp = Client::connect(gw.addr()).request(&get("n.test", path));
    (resp.status, resp.text())
}

both_drivers!(no_spelling_of_a_path_walks_around_its_route, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &config(&up, ""));
    for path in [
        "/private",
        "/%70rivate",
        "//private",
        "/public/../private",
        "/public/%2e%2e/private",
        "/./private/",
        "/x/%2E%2e/%2e/private?q=1",
    ] {
        assert_eq!(
            status_and_body(&gw, path),
            (200, "private".to_string()),
            "{path}"
        );
    }
    for path in [
        "/private%2Fx",
        "/a%2fprivate",
        "/a%5C..",
        "/a%00b",
        "/bad%zz",
    ] {
        assert_eq!(status_and_body(&gw, path).0, 400, "{path}");
    }
    assert_eq!(
        up.requests(),
        0,
        "nothing refused or private reached the upstream"
    );

    // The upstream gets the normal form, the query as sent.
    for (sent, received) in [
        ("/a/./b/../c//d?x=/../%2F&y", "/a/c/d?x=/../%2F&y"),
        ("/%7euser/%c3%a9t%C3%A9", "/~user/%C3%A9t%C3%A9"),
        ("/a/b/..", "/a/"),
        ("/..", "/"),
    ] {
        assert_eq!(
            status_and_body(&gw, sent),
            (200, format!("up {received}")),
            "{sent}"
        );
    }
});

both_drivers!(kept_encoded_slashes_stay_encoded, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &config(&up, "encoded_slashes = \"keep\""));
    assert_eq!(
        status_and_body(&gw, "/files/a%2fb/./c"),
        (200, "up /files/a%2Fb/c".to_string())
    );
    // Kept as part of a segment, never a separator: not the private route.
    assert_eq!(
        status_and_body(&gw, "/x%2F..%2Fprivate"),
        (200, "up /x%2F..%2Fprivate".to_string())
    );
    assert_eq!(status_and_body(&gw, "/a%00").0, 400);
});

both_drivers!(h2_paths_are_normalised_the_same_way, |driver| {
    let up = echo();
    let gw = Gateway::start(driver, &config(&up, ""));
    let answers = h2client::block_on(Duration::from_secs(20), async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let mut out = Vec::new();
        for path in ["/public/%2e%2e/private", "/a//b/./c?q=%2e", "/a%2Fb"] {
            let (resp, _) = h2
                .send
                .send_request(h2client::request("GET", path), true)
                .expect("a stream");
            let resp = resp.await.expect("an answer");
            let status = resp.status().as_u16();
            let (body, _) = h2client::read_body(resp.into_body()).await.expect("a body");
            out.push((status, String::from_utf8(body).unwrap()));
        }
        out
    });
    assert_eq!(answers[0], (200, "private".to_string()));
    assert_eq!(answers[1], (200, "up /a/b/c?q=%2e".to_string()));
    assert_eq!(answers[2].0, 400);
});
