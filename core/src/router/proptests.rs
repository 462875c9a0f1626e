//! The compiled router against [`reference`](super::reference), the documented rules as a
//! linear scan, over generated route tables and requests. Hosts, paths, methods and headers
//! come from small alphabets so that routes overlap and every precedence rule decides some
//! cases.

use proptest::prelude::*;
use ringway_config::{HeaderMatch, HostMatch, PathMatch, Route};

use super::{reference, RequestView, Router};

/// Listener names `l0` to `l69`: past the 64th, a route's listeners are not in its bitmask.
const LISTENERS: usize = 70;

/// The listeners routes name and requests come in on: some of the first 64, some past them.
const SOME_LISTENERS: [usize; 6] = [0, 1, 2, 64, 65, 69];

fn listener_name(index: usize) -> String {
    format!("l{index}")
}

fn path_text() -> impl Strategy<Value = String> {
    "/[ab/]{0,4}"
}

fn path_match() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        Just(PathMatch::Any),
        path_text().prop_map(PathMatch::Exact),
        path_text().prop_map(PathMatch::Prefix),
        prop::sample::select(vec!["/a.*", "/[ab]+", "/b?/?a*", ".*", "/a/b", "/(a|b)/.*"])
            .prop_map(
                // As the config compiles `path_regex`: anchored at both ends.
                |re| PathMatch::Regex(regex::Regex::new(&format!("^(?:{re})$")).unwrap())
            ),
    ]
}

fn host_match() -> impl Strategy<Value = Option<HostMatch>> {
    prop_oneof![
        Just(None),
        prop::sample::select(vec!["a.test", "b.a.test", "x.y"])
            .prop_map(|h| Some(HostMatch::Exact(h.into()))),
        prop::sample::select(vec![".a.test", ".test", ".b.a.test"])
            .prop_map(|s| Some(HostMatch::Wildcard(s.into()))),
    ]
}

fn header_match() -> impl Strategy<Value = HeaderMatch> {
    prop::sample::select(vec![("x-a", None), ("x-a", Some("1")), ("x-b", Some("2"))]).prop_map(
        |(name, value)| HeaderMatch {
            name: name.into(),
            value: value.map(Into::into),
        },
    )
}

fn route() -> impl Strategy<Value = Route> {
    (
        prop::sample::subsequence(SOME_LISTENERS.to_vec(), 0..=2),
        host_match(),
        path_match(),
        prop::sample::subsequence(vec!["GET", "POST"], 0..=2),
        prop::collection::vec(header_match(), 0..=2),
    )
        .prop_map(|(listeners, host, path, methods, headers)| Route {
            listeners: listeners.into_iter().map(listener_name).collect(),
            host,
            path,
            methods: methods.into_iter().map(Into::into).collect(),
            headers,
            ..base_route()
        })
}

/// A route with no condition, as the config loader makes it: what the router ignores
/// (action, limits, ...) comes from there.
fn base_route() -> Route {
    const SRC: &str = "[[listeners]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n\n\
                       [[routes]]\nname = \"r\"\nrespond = { status = 200 }\n";
    static BASE: std::sync::OnceLock<Route> = std::sync::OnceLock::new();
    BASE.get_or_init(|| {
        let config = ringway_config::parse(SRC, "base.toml").expect("a valid config");
        config.routes[0].clone()
    })
    .clone()
}

fn routes() -> impl Strategy<Value = Vec<Route>> {
    prop::collection::vec(route(), 0..16).prop_map(|mut routes| {
        for (i, r) in routes.iter_mut().enumerate() {
            r.name = format!("r{i}");
        }
        routes
    })
}

#[derive(Debug, Clone)]
struct Request {
    listener: usize,
    host: Option<Vec<u8>>,
    path: Vec<u8>,
    method: &'static str,
    headers: Vec<(&'static str, &'static str)>,
}

fn request() -> impl Strategy<Value = Request> {
    let host = prop_oneof![
        Just(None),
        prop::sample::select(vec![
            "a.test",
            "A.TEST",
            "a.test:8080",
            "b.a.test.",
            "x.b.a.test",
            "X.B.A.Test:1",
            "test",
            ".test",
            "x.y",
            "[::1]:80",
            "b.a.test:",
        ])
        .prop_map(|h| Some(h.as_bytes().to_vec())),
        "[a-zA-Z.:\\[\\]]{0,12}".prop_map(|h| Some(h.into_bytes())),
    ];
    let path = prop_oneof![
        4 => path_text().prop_map(String::into_bytes),
        1 => prop::collection::vec(prop_oneof![Just(b'/'), Just(b'a'), Just(0xff)], 0..6),
    ];
    (
        prop::sample::select(SOME_LISTENERS.to_vec()),
        host,
        path,
        prop::sample::select(vec!["GET", "POST", "get", "PUT"]),
        prop::sample::subsequence(
            vec![("X-A", "1"), ("x-a", "2"), ("x-b", "2"), ("X-B", "3")],
            0..=3,
        ),
    )
        .prop_map(|(listener, host, path, method, headers)| Request {
            listener,
            host,
            path,
            method,
            headers,
        })
}

fn describe(routes: &[Route]) -> Vec<String> {
    routes
        .iter()
        .map(|r| {
            format!(
                "{}: listeners {:?} host {:?} path {:?} methods {:?} headers {:?}",
                r.name, r.listeners, r.host, r.path, r.methods, r.headers
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_router_picks_what_the_documented_rules_pick(
        routes in routes(),
        requests in prop::collection::vec(request(), 1..24),
    ) {
        let names: Vec<String> = (0..LISTENERS).map(listener_name).collect();
        let router = Router::new(&routes, &names);
        for r in &requests {
            let headers = |f: &mut dyn FnMut(&[u8], &[u8]) -> bool| {
                r.headers.iter().any(|(n, v)| f(n.as_bytes(), v.as_bytes()))
            };
            let view = RequestView {
                listener: r.listener,
                host: r.host.as_deref(),
                path: &r.path,
                method: r.method.as_bytes(),
                headers: &headers,
            };
            let got = router.find(&view);
            let want = reference::find(&routes, &names, &view);
            prop_assert_eq!(got, want, "request {:?}\nroutes {:#?}", r, describe(&routes));
        }
    }
}
