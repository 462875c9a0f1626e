use super::*;
use ringway_config::{DirectResponse, HeaderMatch, RouteAction};

fn route(name: &str) -> Route {
    Route {
        name: name.into(),
        listeners: vec![],
        host: None,
        path: PathMatch::Any,
        methods: vec![],
        headers: vec![],
        action: RouteAction::Respond(DirectResponse {
            status: 200,
            headers: vec![],
            body: name.into(),
        }),
        timeout: None,
        retry: None,
        rate_limit: None,
        max_in_flight: None,
        websocket: false,
        websocket_idle_timeout: std::time::Duration::from_secs(300),
        auth: None,
        acl: None,
    }
}

fn with_host(mut r: Route, host: &str) -> Route {
    r.host = Some(match host.strip_prefix('*') {
        Some(suffix) => HostMatch::Wildcard(suffix.into()),
        None => HostMatch::Exact(host.into()),
    });
    r
}

fn prefix(mut r: Route, p: &str) -> Route {
    r.path = PathMatch::Prefix(p.into());
    r
}

fn exact(mut r: Route, p: &str) -> Route {
    r.path = PathMatch::Exact(p.into());
    r
}

fn regex(mut r: Route, p: &str) -> Route {
    r.path = PathMatch::Regex(regex::Regex::new(&format!("^(?:{p})$")).unwrap());
    r
}

struct Req<'a> {
    host: Option<&'a str>,
    path: &'a str,
    method: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    listener: usize,
}

fn req<'a>(host: Option<&'a str>, path: &'a str) -> Req<'a> {
    Req {
        host,
        path,
        method: "GET",
        headers: vec![],
        listener: 0,
    }
}

fn find<'r>(router: &'r Router, r: &Req<'_>) -> Option<&'r str> {
    let headers = |f: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
        r.headers.iter().any(|(n, v)| f(n.as_bytes(), v.as_bytes()))
    };
    let view = RequestView {
        listener: r.listener,
        host: r.host.map(str::as_bytes),
        path: r.path.as_bytes(),
        method: r.method.as_bytes(),
        headers: &headers,
    };
    router.find(&view).map(|id| router.route(id).name.as_str())
}

fn router(routes: Vec<Route>) -> Router {
    Router::new(&routes, &["a".to_string(), "b".to_string()])
}

#[test]
fn exact_host_beats_wildcard_beats_none() {
    let r = router(vec![
        prefix(route("none"), "/"),
        prefix(with_host(route("wild"), "*.example.com"), "/"),
        prefix(with_host(route("exact"), "api.example.com"), "/"),
    ]);
    assert_eq!(find(&r, &req(Some("api.example.com"), "/x")), Some("exact"));
    assert_eq!(
        find(&r, &req(Some("API.Example.com:8080"), "/x")),
        Some("exact")
    );
    assert_eq!(find(&r, &req(Some("www.example.com"), "/x")), Some("wild"));
    assert_eq!(find(&r, &req(Some("a.b.example.com"), "/x")), Some("wild"));
    assert_eq!(find(&r, &req(Some("example.com"), "/x")), Some("none"));
    assert_eq!(find(&r, &req(None, "/x")), Some("none"));
}

#[test]
fn longer_wildcard_suffix_wins() {
    let r = router(vec![
        with_host(route("short"), "*.example.com"),
        with_host(route("long"), "*.eu.example.com"),
    ]);
    assert_eq!(find(&r, &req(Some("x.eu.example.com"), "/")), Some("long"));
    assert_eq!(find(&r, &req(Some("x.us.example.com"), "/")), Some("short"));
}

#[test]
fn host_tier_falls_through_when_no_path_matches() {
    let r = router(vec![
        prefix(with_host(route("api-users"), "api.example.com"), "/users"),
        prefix(route("catch-all"), "/"),
    ]);
    assert_eq!(
        find(&r, &req(Some("api.example.com"), "/users/1")),
        Some("api-users")
    );
    assert_eq!(
        find(&r, &req(Some("api.example.com"), "/other")),
        Some("catch-all")
    );
}

#[test]
fn exact_beats_longest_prefix_beats_regex_beats_any() {
    let r = router(vec![
        route("any"),
        regex(route("regex"), "/users/[0-9]+"),
        prefix(route("short"), "/users"),
        prefix(route("long"), "/users/admin"),
        exact(route("exact"), "/users/42"),
    ]);
    assert_eq!(find(&r, &req(None, "/users/42")), Some("exact"));
    assert_eq!(find(&r, &req(None, "/users/admin/x")), Some("long"));
    assert_eq!(find(&r, &req(None, "/users/7")), Some("short"));
    assert_eq!(find(&r, &req(None, "/other")), Some("any"));
    let r = router(vec![route("any"), regex(route("regex"), "/u/[0-9]+")]);
    assert_eq!(find(&r, &req(None, "/u/7")), Some("regex"));
    assert_eq!(
        find(&r, &req(None, "/u/7/x")),
        Some("any"),
        "regex is anchored"
    );
}

#[test]
fn more_conditions_beat_fewer_then_file_order() {
    let mut methods = prefix(route("get-only"), "/a");
    methods.methods = vec!["GET".into()];
    let mut both = prefix(route("get-and-header"), "/a");
    both.methods = vec!["GET".into()];
    both.headers = vec![HeaderMatch {
        name: "x-env".into(),
        value: Some("canary".into()),
    }];
    let r = router(vec![
        prefix(route("first"), "/a"),
        prefix(route("second"), "/a"),
        methods,
        both,
    ]);
    let mut canary = req(None, "/a");
    canary.headers = vec![("X-Env", "canary")];
    assert_eq!(find(&r, &canary), Some("get-and-header"));
    assert_eq!(find(&r, &req(None, "/a")), Some("get-only"));
    let mut post = req(None, "/a");
    post.method = "POST";
    assert_eq!(
        find(&r, &post),
        Some("first"),
        "file order breaks the last tie"
    );
}

#[test]
fn header_presence_and_value() {
    let mut present = prefix(route("present"), "/");
    present.headers = vec![HeaderMatch {
        name: "x-debug".into(),
        value: None,
    }];
    let r = router(vec![present, prefix(route("other"), "/")]);
    let mut with = req(None, "/");
    with.headers = vec![("x-debug", "")];
    assert_eq!(find(&r, &with), Some("present"));
    assert_eq!(find(&r, &req(None, "/")), Some("other"));
}

#[test]
fn listeners_restrict_routes() {
    let mut only_b = prefix(route("only-b"), "/");
    only_b.listeners = vec!["b".into()];
    let r = router(vec![only_b]);
    assert_eq!(find(&r, &req(None, "/")), None);
    let mut on_b = req(None, "/");
    on_b.listener = 1;
    assert_eq!(find(&r, &on_b), Some("only-b"));
}

#[test]
fn listeners_past_the_64th_restrict_routes_too() {
    let names: Vec<String> = (0..70).map(|i| format!("l{i}")).collect();
    let mut far = route("far");
    far.listeners = vec!["l65".into()];
    let r = Router::new(&[far, route("any")], &names);
    for (listener, want) in [(65, "far"), (64, "any"), (66, "any"), (0, "any")] {
        let mut q = req(None, "/");
        q.listener = listener;
        assert_eq!(find(&r, &q), Some(want), "listener {listener}");
    }
}

#[test]
fn no_match_is_none() {
    let r = router(vec![exact(route("x"), "/x")]);
    assert_eq!(find(&r, &req(None, "/y")), None);
}

#[test]
fn many_routes_pick_the_longest_prefix_and_exact_first() {
    let mut routes = Vec::new();
    for i in 0..2000 {
        routes.push(prefix(route(&format!("p{i}")), &format!("/svc{i}")));
        routes.push(exact(route(&format!("e{i}")), &format!("/svc{i}/health")));
    }
    routes.push(prefix(route("deep"), "/svc7/api/v2"));
    let r = router(routes);
    assert_eq!(find(&r, &req(None, "/svc7/health")), Some("e7"));
    assert_eq!(find(&r, &req(None, "/svc7/api/v2/users")), Some("deep"));
    assert_eq!(find(&r, &req(None, "/svc7/api/v1")), Some("p7"));
    // "/svc1999" is a longer prefix than "/svc1" and "/svc19": the longest wins.
    assert_eq!(find(&r, &req(None, "/svc1999/x")), Some("p1999"));
    assert_eq!(find(&r, &req(None, "/other")), None);
}

/// The reference: every route in full precedence order (host tier, then path), first match.
fn naive(routes: &[Route], r: &Req<'_>) -> Option<String> {
    let host = r.host.map(|h| h.to_ascii_lowercase());
    let tier = |route: &Route| -> Option<(u8, std::cmp::Reverse<usize>)> {
        match (&route.host, &host) {
            (None, _) => Some((2, std::cmp::Reverse(0))),
            (Some(HostMatch::Exact(h)), Some(req)) if h == req => Some((0, std::cmp::Reverse(0))),
            (Some(HostMatch::Wildcard(s)), Some(req))
                if req.len() > s.len() && req.ends_with(s.as_str()) =>
            {
                Some((1, std::cmp::Reverse(s.len())))
            }
            _ => None,
        }
    };
    let mut order: Vec<usize> = (0..routes.len())
        .filter(|&i| tier(&routes[i]).is_some())
        .collect();
    order.sort_by_key(|&i| (tier(&routes[i]).unwrap(), precedence_key(&routes[i], i)));
    let any = |n: &str, v: Option<&str>| {
        r.headers
            .iter()
            .any(|(hn, hv)| hn.eq_ignore_ascii_case(n) && v.is_none_or(|v| v == *hv))
    };
    order
        .into_iter()
        .find(|&i| {
            let route = &routes[i];
            let path_ok = match &route.path {
                PathMatch::Any => true,
                PathMatch::Exact(p) => r.path == p,
                PathMatch::Prefix(p) => r.path.starts_with(p.as_str()),
                PathMatch::Regex(re) => re.is_match(r.path),
            };
            path_ok
                && (route.methods.is_empty() || route.methods.iter().any(|m| m == r.method))
                && route
                    .headers
                    .iter()
                    .all(|h| any(&h.name, h.value.as_deref()))
        })
        .map(|i| routes[i].name.clone())
}

#[test]
fn indexed_router_agrees_with_the_naive_order() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let hosts = [
        None,
        Some("a.example.com"),
        Some("*.example.com"),
        Some("*.b.example.com"),
    ];
    let paths = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/x"];
    let req_hosts = [
        None,
        Some("a.example.com"),
        Some("x.b.example.com"),
        Some("c.example.com"),
        Some("other"),
    ];
    let req_paths = ["/", "/a", "/a/b", "/a/b/c", "/a/bc", "/ab", "/x/y", "/z"];
    for _round in 0..200 {
        let mut routes = Vec::new();
        for i in 0..next(12) + 1 {
            let mut r = route(&format!("r{i}"));
            if let Some(h) = hosts[next(hosts.len())] {
                r = with_host(r, h);
            }
            let p = paths[next(paths.len())];
            r = match next(4) {
                0 => exact(r, p),
                1 => prefix(r, p),
                2 => regex(r, &format!("{p}.*")),
                _ => r,
            };
            if next(3) == 0 {
                r.methods = vec!["GET".into()];
            }
            if next(4) == 0 {
                r.headers = vec![HeaderMatch {
                    name: "x-v".into(),
                    value: Some("1".into()),
                }];
            }
            routes.push(r);
        }
        let table = router(routes.clone());
        for _ in 0..20 {
            let mut q = req(
                req_hosts[next(req_hosts.len())],
                req_paths[next(req_paths.len())],
            );
            q.method = if next(2) == 0 { "GET" } else { "POST" };
            if next(2) == 0 {
                q.headers = vec![("X-V", "1")];
            }
            assert_eq!(
                find(&table, &q).map(str::to_string),
                naive(&routes, &q),
                "routes {:?}",
                routes
                    .iter()
                    .map(|r| (&r.name, &r.host, &r.path))
                    .collect::<Vec<_>>()
            );
        }
    }
}
