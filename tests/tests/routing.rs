//! Routing: every match key, direct responses, redirects, listener scoping and the precedence
//! rule of notes/contracts.md ("Route precedence"). Routes answer with a direct response whose
//! body is the route's name, so the body says which route won.

use ringway_tests::{both_drivers, get, Client, Driver, Gateway, Response, Upstream};

const LISTENER: &str = r#"
[[listeners]]
name = "main"
listen = "{listen}"
"#;

/// A route named `name` with the match keys in `keys` (TOML lines) that answers 200 `name`.
fn route(name: &str, keys: &str) -> String {
    format!(
        "\n[[routes]]\nname = \"{name}\"\n{keys}\nrespond = {{ status = 200, body = \"{name}\" }}\n"
    )
}

fn start(driver: Driver, routes: &[String]) -> Gateway {
    Gateway::start(driver, &format!("{LISTENER}{}", routes.concat()))
}

/// A request with extra header lines (each ending in CRLF).
fn req(method: &str, host: &str, path: &str, headers: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n")
}

fn send(gw: &Gateway, request: &str) -> Response {
    let mut c = Client::connect(gw.addr());
    c.request(request)
}

/// The request is answered by the route `name`.
#[track_caller]
fn wins(gw: &Gateway, request: &str, name: &str) {
    let resp = send(gw, request);
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, name),
        "request {request:?}"
    );
}

/// No route matches the request.
#[track_caller]
fn no_route(gw: &Gateway, request: &str) {
    let resp = send(gw, request);
    assert_eq!(
        resp.status,
        404,
        "request {request:?} got {:?}",
        resp.text()
    );
    assert_eq!(resp.text(), "404 Not Found\n");
}

// ---- match keys ----

both_drivers!(host_exact, |driver| {
    let gw = start(driver, &[route("a", "host = \"a.example.com\"")]);
    wins(&gw, &get("a.example.com", "/"), "a");
    no_route(&gw, &get("b.example.com", "/"));
    no_route(&gw, &get("example.com", "/"));
    no_route(&gw, &get("xa.example.com", "/"));
});

both_drivers!(host_wildcard, |driver| {
    let gw = start(driver, &[route("wild", "host = \"*.example.com\"")]);
    wins(&gw, &get("a.example.com", "/"), "wild");
    wins(&gw, &get("a.b.example.com", "/"), "wild");
    no_route(&gw, &get("example.com", "/"));
    no_route(&gw, &get("xexample.com", "/"));
    no_route(&gw, &get("a.example.org", "/"));
});

both_drivers!(host_is_case_insensitive_and_port_is_ignored, |driver| {
    let gw = start(
        driver,
        &[
            route("api", "host = \"api.example.com\""),
            route("wild", "host = \"*.wild.example.com\""),
        ],
    );
    wins(&gw, &get("API.Example.com:8080", "/"), "api");
    wins(&gw, &get("api.example.com:80", "/"), "api");
    wins(&gw, &get("Api.Example.Com", "/"), "api");
    wins(&gw, &get("X.WILD.example.COM:8443", "/"), "wild");
});

both_drivers!(path_exact, |driver| {
    let gw = start(driver, &[route("health", "path_exact = \"/health\"")]);
    wins(&gw, &get("example.com", "/health"), "health");
    wins(&gw, &get("example.com", "/health?full=1"), "health");
    no_route(&gw, &get("example.com", "/health/"));
    no_route(&gw, &get("example.com", "/healthz"));
    no_route(&gw, &get("example.com", "/"));
});

both_drivers!(path_prefix, |driver| {
    let gw = start(driver, &[route("api", "path_prefix = \"/api/\"")]);
    wins(&gw, &get("example.com", "/api/"), "api");
    wins(&gw, &get("example.com", "/api/users/7?x=1"), "api");
    no_route(&gw, &get("example.com", "/ap"));
    no_route(&gw, &get("example.com", "/other/api/"));
});

both_drivers!(path_regex_is_anchored, |driver| {
    let gw = start(driver, &[route("items", "path_regex = \"/items/[0-9]+\"")]);
    wins(&gw, &get("example.com", "/items/42"), "items");
    wins(&gw, &get("example.com", "/items/42?q=1"), "items");
    no_route(&gw, &get("example.com", "/items/42/x"));
    no_route(&gw, &get("example.com", "/x/items/42"));
    no_route(&gw, &get("example.com", "/items/abc"));
});

both_drivers!(methods, |driver| {
    let gw = start(driver, &[route("rw", "methods = [\"GET\", \"DELETE\"]")]);
    wins(&gw, &req("GET", "example.com", "/", ""), "rw");
    wins(&gw, &req("DELETE", "example.com", "/", ""), "rw");
    no_route(
        &gw,
        &req("POST", "example.com", "/", "content-length: 0\r\n"),
    );
    no_route(
        &gw,
        &req("PUT", "example.com", "/", "content-length: 0\r\n"),
    );
});

both_drivers!(header_presence, |driver| {
    let gw = start(
        driver,
        &[route("canary", "headers = [{ name = \"x-canary\" }]")],
    );
    wins(
        &gw,
        &req("GET", "example.com", "/", "X-Canary: yes\r\n"),
        "canary",
    );
    wins(
        &gw,
        &req("GET", "example.com", "/", "x-canary: \r\n"),
        "canary",
    );
    no_route(&gw, &req("GET", "example.com", "/", "x-other: yes\r\n"));
    no_route(&gw, &get("example.com", "/"));
});

both_drivers!(header_value, |driver| {
    let gw = start(
        driver,
        &[route(
            "canary",
            "headers = [{ name = \"x-env\", value = \"canary\" }]",
        )],
    );
    wins(
        &gw,
        &req("GET", "example.com", "/", "x-env: canary\r\n"),
        "canary",
    );
    wins(
        &gw,
        &req("GET", "example.com", "/", "X-Env: canary\r\n"),
        "canary",
    );
    no_route(&gw, &req("GET", "example.com", "/", "x-env: prod\r\n"));
    no_route(&gw, &get("example.com", "/"));
});

both_drivers!(nothing_matches_is_404, |driver| {
    let gw = start(
        driver,
        &[route("a", "host = \"a.example.com\"\npath_prefix = \"/a\"")],
    );
    no_route(&gw, &get("a.example.com", "/b"));
    no_route(&gw, &get("b.example.com", "/a"));
    // The 404 keeps the connection usable.
    let mut c = Client::connect(gw.addr());
    assert_eq!(c.request(&get("a.example.com", "/b")).status, 404);
    let resp = c.request(&get("a.example.com", "/a"));
    assert_eq!((resp.status, resp.text().as_str()), (200, "a"));
});

both_drivers!(routes_to_upstreams, |driver| {
    let users = Upstream::ok("users");
    let orders = Upstream::ok("orders");
    let toml = format!(
        r#"{LISTENER}
[[upstreams]]
name = "users"
endpoints = [{{ address = "{u}" }}]

[[upstreams]]
name = "orders"
endpoints = [{{ address = "{o}" }}]

[[routes]]
name = "users"
path_prefix = "/users"
upstream = "users"

[[routes]]
name = "orders"
path_prefix = "/orders"
upstream = "orders"
"#,
        u = users.addr(),
        o = orders.addr()
    );
    let gw = Gateway::start(driver, &toml);
    wins(&gw, &get("example.com", "/users/1"), "users");
    wins(&gw, &get("example.com", "/orders/2?x=y"), "orders");
    no_route(&gw, &get("example.com", "/other"));
    let u = users.received();
    let o = orders.received();
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].target, "/users/1");
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].target, "/orders/2?x=y");
});

// ---- direct responses and redirects ----

both_drivers!(direct_response, |driver| {
    let toml = format!(
        r#"{LISTENER}
[[routes]]
name = "made"
path_exact = "/made"
respond = {{ status = 201, headers = {{ "x-a" = "1", "x-made-by" = "ringway" }}, body = "hello there" }}

[[routes]]
name = "empty"
path_exact = "/empty"
respond = {{ status = 200 }}
"#
    );
    let gw = Gateway::start(driver, &toml);
    let mut c = Client::connect(gw.addr());
    for _ in 0..2 {
        let resp = c.request(&get("example.com", "/made"));
        assert_eq!(resp.status, 201);
        assert_eq!(resp.header("x-a"), Some("1"));
        assert_eq!(resp.header("x-made-by"), Some("ringway"));
        assert_eq!(resp.header("content-length"), Some("11"));
        assert_eq!(resp.text(), "hello there");
        assert!(!resp.chunked);
        assert!(
            !resp
                .header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close")),
            "keep-alive kept"
        );
    }
    // HEAD: the same head, no body; the next response on the connection proves no body bytes
    // were written.
    let resp = c.request(&req("HEAD", "example.com", "/made", ""));
    assert_eq!(resp.status, 201);
    assert_eq!(resp.header("content-length"), Some("11"));
    assert!(resp.body.is_empty());
    // Still the same connection: keep-alive was kept.
    let resp = c.request(&get("example.com", "/empty"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("0"));
    assert_eq!(resp.text(), "");
    assert!(!c.is_closed(std::time::Duration::from_millis(100)));
});

both_drivers!(redirect, |driver| {
    let toml = format!(
        r#"{LISTENER}
[[routes]]
name = "moved"
path_prefix = "/old"
redirect = {{ location = "https://new.example.com/landing", status = 301 }}

[[routes]]
name = "kept"
path_prefix = "/keep"
redirect = {{ location = "https://new.example.com", status = 308, keep_path = true }}

[[routes]]
name = "default"
path_prefix = "/default"
redirect = {{ location = "https://new.example.com/d" }}
"#
    );
    let gw = Gateway::start(driver, &toml);
    let mut c = Client::connect(gw.addr());
    let resp = c.request(&get("example.com", "/old/page?x=1"));
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("location"),
        Some("https://new.example.com/landing")
    );

    let resp = c.request(&get("example.com", "/keep/a/b?c=1&d=2"));
    assert_eq!(resp.status, 308);
    assert_eq!(
        resp.header("location"),
        Some("https://new.example.com/keep/a/b?c=1&d=2")
    );
    let len: usize = resp
        .header("content-length")
        .expect("content-length")
        .parse()
        .unwrap();
    assert_eq!(len, resp.body.len());

    let resp = c.request(&get("example.com", "/default"));
    assert_eq!(resp.status, 302, "default redirect status");
    assert_eq!(resp.header("location"), Some("https://new.example.com/d"));
});

// ---- precedence (notes/contracts.md, "Route precedence"), one test per step ----

both_drivers!(
    precedence_1_exact_host_then_longest_wildcard_then_no_host,
    |driver| {
        // Listed in the reverse of their precedence, so file order alone would pick wrongly.
        let gw = start(
            driver,
            &[
                route("none", "path_exact = \"/x\""),
                route("wild", "host = \"*.example.com\""),
                route("wild-longer", "host = \"*.b.example.com\""),
                route("exact", "host = \"a.b.example.com\"\npath_prefix = \"/\""),
            ],
        );
        wins(&gw, &get("a.b.example.com", "/x"), "exact");
        wins(&gw, &get("c.b.example.com", "/x"), "wild-longer");
        wins(&gw, &get("c.example.com", "/x"), "wild");
        wins(&gw, &get("other.org", "/x"), "none");
        no_route(&gw, &get("other.org", "/y"));
    }
);

both_drivers!(
    precedence_2_exact_path_then_longest_prefix_then_regex_then_none,
    |driver| {
        // Listed in the reverse of their precedence.
        let gw = start(
            driver,
            &[
                route("any", ""),
                route("regex-first", "path_regex = \"/a/.*\""),
                route("regex-second", "path_regex = \"/a/[a-z]+\""),
                route("regex-r", "path_regex = \"/r/[0-9]+\""),
                route("prefix-short", "path_prefix = \"/a/\""),
                route("prefix-long", "path_prefix = \"/a/b/\""),
                route("exact", "path_exact = \"/a/b/c\""),
                // More conditions do not lift a shorter prefix over a longer one.
                route(
                    "prefix-short-conditions",
                    "path_prefix = \"/a/b\"\nmethods = [\"GET\"]\nheaders = [{ name = \"x-a\" }]",
                ),
            ],
        );
        wins(&gw, &get("example.com", "/a/b/c"), "exact");
        wins(
            &gw,
            &req("GET", "example.com", "/a/b/c", "x-a: 1\r\n"),
            "exact",
        );
        wins(&gw, &get("example.com", "/a/b/d"), "prefix-long");
        wins(
            &gw,
            &req("GET", "example.com", "/a/b/d", "x-a: 1\r\n"),
            "prefix-long",
        );
        wins(&gw, &get("example.com", "/a/x"), "prefix-short");
        wins(&gw, &get("example.com", "/r/1"), "regex-r");
        wins(&gw, &get("example.com", "/zzz"), "any");
    }
);

both_drivers!(precedence_2_regexes_in_file_order, |driver| {
    let gw = start(
        driver,
        &[
            route("any", ""),
            route("regex-first", "path_regex = \"/a/.*\""),
            route("regex-second", "path_regex = \"/a/[a-z]+\""),
        ],
    );
    wins(&gw, &get("example.com", "/a/x"), "regex-first");
    wins(&gw, &get("example.com", "/b"), "any");
});

both_drivers!(precedence_3_more_conditions_first, |driver| {
    // Same host tier and the same prefix; listed with the fewest conditions first.
    let gw = start(
        driver,
        &[
            route("zero", "path_prefix = \"/c\""),
            route("one", "path_prefix = \"/c\"\nmethods = [\"GET\"]"),
            route(
                "two",
                "path_prefix = \"/c\"\nmethods = [\"GET\"]\nheaders = [{ name = \"x-a\" }]",
            ),
            route(
                "two-headers",
                "path_prefix = \"/c\"\nheaders = [{ name = \"x-b\" }, { name = \"x-c\", value = \"1\" }]",
            ),
        ],
    );
    wins(&gw, &req("GET", "example.com", "/c", "x-a: 1\r\n"), "two");
    wins(&gw, &get("example.com", "/c"), "one");
    wins(
        &gw,
        &req("DELETE", "example.com", "/c", "x-a: 1\r\n"),
        "zero",
    );
    wins(
        &gw,
        &req("DELETE", "example.com", "/c", "x-b: 1\r\nx-c: 1\r\n"),
        "two-headers",
    );
    wins(
        &gw,
        &req("DELETE", "example.com", "/c", "x-b: 1\r\nx-c: 2\r\n"),
        "zero",
    );
});

both_drivers!(precedence_4_file_order_last, |driver| {
    let gw = start(
        driver,
        &[
            route("first", "path_prefix = \"/f\"\nmethods = [\"GET\"]"),
            route("second", "path_prefix = \"/f\"\nmethods = [\"GET\"]"),
            route("wild-first", "host = \"*.example.com\""),
            route("wild-second", "host = \"*.example.com\""),
        ],
    );
    wins(&gw, &get("other.org", "/f"), "first");
    wins(&gw, &get("a.example.com", "/f"), "wild-first");
});

// ---- listener scoping ----

both_drivers!(route_listeners_scope, |driver| {
    let toml = r#"
[[listeners]]
name = "a"
listen = "{listen}"

[[listeners]]
name = "b"
listen = "{listen2}"

[[routes]]
name = "only-b"
listeners = ["b"]
path_prefix = "/"
respond = { status = 200, body = "only-b" }

[[routes]]
name = "everywhere"
path_exact = "/e"
respond = { status = 200, body = "everywhere" }
"#;
    let gw = Gateway::start(driver, toml);
    let on = |addr, path: &str| {
        let mut c = Client::connect(addr);
        let r = c.request(&get("example.com", path));
        (r.status, r.text())
    };
    assert_eq!(on(gw.addr2(), "/x"), (200, "only-b".to_string()));
    assert_eq!(on(gw.addr(), "/x"), (404, "404 Not Found\n".to_string()));
    assert_eq!(on(gw.addr(), "/e"), (200, "everywhere".to_string()));
    assert_eq!(on(gw.addr2(), "/e"), (200, "everywhere".to_string()));
});
