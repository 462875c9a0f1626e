//! Path handling, from the request head to the route: a request head parsed as a listener
//! parses it, its path taken as the proxy takes it (without the query; empty means "/"), then
//! matched against a route table with every kind of condition. The compiled router must agree
//! with `router::reference`, the documented precedence rules as a plain scan.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringway_config::Config;
use ringway_core::http::h1::{parse_request, RequestLimits};
use ringway_core::router::{reference, RequestView, Router};

const ROUTES: &str = r#"
[[listeners]]
name = "public"
listen = "127.0.0.1:1"

[[listeners]]
name = "internal"
listen = "127.0.0.1:2"

[[routes]]
name = "exact-root"
path_exact = "/"
respond = { status = 200 }

[[routes]]
name = "api"
host = "api.example.com"
path_prefix = "/api"
respond = { status = 200 }

[[routes]]
name = "api-v1-get"
host = "api.example.com"
path_prefix = "/api/v1"
methods = ["GET", "HEAD"]
respond = { status = 200 }

[[routes]]
name = "wild"
host = "*.example.com"
path_prefix = "/api"
respond = { status = 200 }

[[routes]]
name = "wilder"
host = "*.b.example.com"
respond = { status = 200 }

[[routes]]
name = "orders"
path_regex = "/orders/[0-9]+"
respond = { status = 200 }

[[routes]]
name = "files"
path_regex = "/files/.+\\.txt"
respond = { status = 200 }

[[routes]]
name = "flagged"
path_prefix = "/a"
headers = [{ name = "x-flag" }, { name = "x-v", value = "1" }]
respond = { status = 200 }

[[routes]]
name = "a"
path_prefix = "/a"
respond = { status = 200 }

[[routes]]
name = "a-exact"
path_exact = "/a/b"
listeners = ["internal"]
respond = { status = 200 }

[[routes]]
name = "post-only"
methods = ["POST"]
respond = { status = 200 }

[[routes]]
name = "fallback"
listeners = ["public"]
respond = { status = 404 }
"#;

const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 8192,
    max_head: 16384,
};

fn table() -> &'static (Config, Vec<String>, Router) {
    static TABLE: OnceLock<(Config, Vec<String>, Router)> = OnceLock::new();
    TABLE.get_or_init(|| {
        let config = ringway_config::parse(ROUTES, "route_path.toml").expect("the table parses");
        let names: Vec<String> = config.listeners.iter().map(|l| l.name.clone()).collect();
        let router = Router::new(&config.routes, &names);
        (config, names, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let (config, names, router) = table();
    let mut headers = Vec::new();
    let Ok(Some(head)) = parse_request(data, &LIMITS, &mut headers) else {
        return;
    };
    let any_header = |f: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
        headers
            .iter()
            .any(|h| f(h.name.get(data), h.value.get(data)))
    };
    let path = head.path.get(data);
    let view = RequestView {
        // Which listener it came in on, from the input too.
        listener: data.len() % names.len(),
        host: head.host.map(|h| h.get(data)),
        path: if path.is_empty() {
            b"/"
        } else {
            &path[..head.path_len_without_query.min(path.len())]
        },
        method: head.method_span.get(data),
        headers: &any_header,
    };
    assert!(!view.path.contains(&b'?') && !view.path.contains(&b'#'));
    assert_eq!(
        router.find(&view),
        reference::find(&config.routes, names, &view)
    );
});
