//! Tests of the public entry points and of the bundled files.

use std::time::Duration;

use crate::validate::test_util::{errors, one_error, BASE};
use crate::*;

#[test]
fn default_config_parses() {
    let config = default_config();
    assert_eq!(config.source, "<default>");
    assert_eq!(config.runtime.shards, Shards::Auto);
    assert_eq!(config.runtime.driver, DriverChoice::Auto);
    assert_eq!(
        config.control.socket.to_str(),
        Some("/tmp/ringway-control.sock")
    );
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].name, "default");
    assert_eq!(
        config.listeners[0].listen,
        "127.0.0.1:8080".parse().unwrap()
    );
    assert_eq!(config.routes.len(), 1);
    let route = &config.routes[0];
    assert_eq!(route.name, "welcome");
    assert!(matches!(route.path, PathMatch::Any));
    let RouteAction::Respond(response) = &route.action else {
        panic!("{:?}", route.action)
    };
    assert_eq!(response.status, 200);
    assert_eq!(
        response.headers,
        [(
            "content-type".to_owned(),
            "text/plain; charset=utf-8".to_owned()
        )]
    );
    assert!(response.body.contains("ringway run -c"));
    assert_eq!(config.source_text, DEFAULT_TOML);
    assert_eq!(config.control.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.control.reload_timeout, Duration::from_secs(5));
    assert_eq!(config.metrics.interval, Duration::from_secs(1));
    assert_eq!(config.metrics.interval_log, None);
    assert!(config.access_log.is_none());
}

#[test]
fn example_config_parses() {
    let src = include_str!("../examples/gateway.toml");
    let config = match parse(src, "examples/gateway.toml") {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };
    let users = config.upstream("users").expect("users upstream");
    assert_eq!(users.endpoints.len(), 2);
    let actions = config.routes.iter().map(|r| &r.action);
    assert!(actions
        .clone()
        .any(|a| matches!(a, RouteAction::Redirect(_))));
    assert!(actions
        .clone()
        .any(|a| matches!(a, RouteAction::Respond(_))));
    assert!(actions
        .clone()
        .any(|a| matches!(a, RouteAction::Proxy { .. })));
    let paths = config.routes.iter().map(|r| &r.path);
    assert!(paths.clone().any(|p| matches!(p, PathMatch::Regex(_))));
    assert!(paths.clone().any(|p| matches!(p, PathMatch::Exact(_))));
    assert!(paths.clone().any(|p| matches!(p, PathMatch::Prefix(_))));
    assert!(config
        .routes
        .iter()
        .any(|r| matches!(r.host, Some(HostMatch::Wildcard(_)))));
    assert!(config.routes.iter().any(|r| !r.headers.is_empty()));
    assert!(config.routes.iter().any(|r| !r.methods.is_empty()));
}

#[test]
fn load_reads_a_file() {
    let path =
        std::env::temp_dir().join(format!("ringway-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, format!("{BASE}idle_timeout = \"5m\"\n")).unwrap();
    let loaded = load(&path);
    std::fs::remove_file(&path).unwrap();
    let config = loaded.unwrap();
    assert_eq!(config.source, path.display().to_string());
    assert_eq!(config.source_text, format!("{BASE}idle_timeout = \"5m\"\n"));
    assert_eq!(config.listeners[0].idle_timeout, Duration::from_secs(300));
}

#[test]
fn unreadable_file_is_one_error_naming_it() {
    let errors = load(Path::new("/nonexistent/ringway.toml")).unwrap_err();
    assert_eq!(errors.0.len(), 1);
    let line = errors.to_string();
    assert!(
        line.starts_with("/nonexistent/ringway.toml:1:1: (file): cannot read the file: "),
        "{line}"
    );
}

#[test]
fn syntax_error_has_position() {
    assert_eq!(
        one_error("[[listeners]]\nname = \"l\"\nlisten = = 1\n"),
        "t.toml:3:10: (syntax): invalid string; expected `\"`, `'`"
    );
}

#[test]
fn unknown_keys_are_rejected_with_their_path() {
    assert_eq!(
        one_error(&format!("{BASE}max_conections = 5\n")),
        "t.toml:4:1: listeners[0].max_conections: unknown field `max_conections`, expected one of \
         `name`, `listen`, `max_connections`, `header_timeout`, `idle_timeout`, `body_timeout`, \
         `send_timeout`, `max_request_line`, `max_header_bytes`, `max_request_body`, `tls`, `trusted_proxies`, `proxy_protocol`, `encoded_slashes`"
    );
    assert_eq!(
        one_error(&format!("[server]\nport = 1\n{BASE}")),
        "t.toml:1:2: server: unknown field `server`, expected one of `runtime`, `control`, \
         `admin`, `metrics`, `access_log`, `resolver`, `listeners`, `upstreams`, `routes`, `consumers`, `jwt_providers`"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}[[routes]]\nname = \"r\"\n[routes.respond]\nstatus = 200\nbdy = \"x\"\n"
        )),
        "t.toml:8:1: routes[0].respond.bdy: unknown field `bdy`, expected one of `status`, \
         `headers`, `body`"
    );
}

#[test]
fn wrong_types_are_rejected_with_their_path() {
    assert_eq!(
        one_error("[[listeners]]\nname = \"l\"\nlisten = 8080\n"),
        "t.toml:3:10: listeners[0].listen: invalid type: integer `8080`, expected a string"
    );
    assert_eq!(
        one_error(&format!("{BASE}[runtime]\npin = \"yes\"\n")),
        "t.toml:5:7: runtime.pin: invalid type: string \"yes\", expected a boolean"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}[[routes]]\nname = \"r\"\nmethods = \"GET\"\nrespond = {{ status = 200 }}\n"
        )),
        "t.toml:6:11: routes[0].methods: invalid type: string \"GET\", expected a sequence"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}[[routes]]\nname = \"r\"\nrespond = \"hello\"\n"
        )),
        "t.toml:6:11: routes[0].respond: invalid type: string \"hello\", expected a direct \
         response such as { status = 200, body = \"hello\" }"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}[[routes]]\nname = \"r\"\nrespond = {{ status = 200, headers = {{ x-a = 1 }} }}\n"
        )),
        "t.toml:6:45: routes[0].respond.headers.x-a: invalid type: integer `1`, expected a string"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}header_timeout = 10
"
        )),
        "t.toml:4:18: listeners[0].header_timeout: invalid type: integer `10`, expected a string"
    );
    assert_eq!(
        one_error(&format!(
            "{BASE}[[routes]]
name = \"r\"
upstream = {{ name = \"u\" }}
"
        )),
        "t.toml:6:12: routes[0].upstream: invalid type: map, expected a string"
    );
}

#[test]
fn missing_keys_are_reported() {
    assert_eq!(
        one_error("[[listeners]]\nname = \"l\"\n"),
        "t.toml:1:1: listeners[0]: missing field `listen`"
    );
    assert_eq!(
        errors("[[listeners]]\n[[upstreams]]\n[[routes]]\nrespond = {}\n"),
        [
            "t.toml:1:1: listeners[0]: missing field `name`",
            "t.toml:1:1: listeners[0]: missing field `listen`",
            "t.toml:2:1: upstreams[0]: missing field `name`",
            "t.toml:2:1: upstreams[0]: missing field `endpoints`",
            "t.toml:3:1: routes[0]: missing field `name`",
            "t.toml:4:11: routes[0].respond: missing field `status`",
        ]
    );
}

/// The acceptance case of `ringway check`: an unknown key, a bad duration and a reference
/// to a missing upstream, all reported in one run.
#[test]
fn unknown_keys_are_reported_with_every_other_error() {
    let src = "\
[runtime]
shards = 1

[[listeners]]
bogus_key = 1
header_timeout = \"ten seconds\"
name = \"main\"
listen = \"127.0.0.1:1\"

[[upstreams]]
name = \"backend\"
endpoints = [{ address = \"127.0.0.1:9\" }]

[[routes]]
name = \"all\"
upstream = \"missing\"
";
    assert_eq!(
        errors(src),
        [
            "t.toml:5:1: listeners[0].bogus_key: unknown field `bogus_key`, expected one of `name`, \
             `listen`, `max_connections`, `header_timeout`, `idle_timeout`, `body_timeout`, \
             `send_timeout`, `max_request_line`, `max_header_bytes`, `max_request_body`, `tls`, `trusted_proxies`, `proxy_protocol`, `encoded_slashes`",
            "t.toml:6:18: listeners[0].header_timeout: \"ten seconds\" is not a duration; write a \
             number with a unit (ms, s, m, h), such as \"5s\"",
            "t.toml:16:12: routes[0].upstream: no upstream named \"missing\"",
        ]
    );
}

#[test]
fn errors_of_every_kind_are_reported_together_in_file_order() {
    let src = "\
[runtime]
pin = \"yes\"
shard = 2

[[listeners]]
name = \"web\"
listen = 8080
idle_timeout = \"5\"
max_request_body = \"1 TB\"

[[listeners]]
name = \"api\"

[[upstreams]]
name = \"users\"
endpoints = [{ adress = \"127.0.0.1:9000\" }, { address = \"127.0.0.1:9001\", weight = \"2\" }]

[[routes]]
name = \"users\"
listeners = [\"web\", \"admin\"]
methods = \"GET\"
upstream = \"user\"

[[routes]]
listeners = [\"api\", 2]
respond.status = 200
respond.bdy = \"x\"
respond.headers = { x-a = 1 }

[server]
port = 1
";
    assert_eq!(
        errors(src),
        [
            "t.toml:2:7: runtime.pin: invalid type: string \"yes\", expected a boolean",
            "t.toml:3:1: runtime.shard: unknown field `shard`, expected one of `shards`, `driver`, \
             `pin`, `uring_entries`",
            "t.toml:7:10: listeners[0].listen: invalid type: integer `8080`, expected a string",
            "t.toml:8:16: listeners[0].idle_timeout: \"5\" has no unit; write it with ms, s, m or h, \
             such as \"5s\"",
            "t.toml:9:20: listeners[0].max_request_body: unknown size unit \"TB\"; use B, KB, MB, \
             GB, KiB, MiB or GiB",
            "t.toml:11:1: listeners[1]: missing field `listen`",
            "t.toml:16:14: upstreams[0].endpoints[0]: missing field `address`",
            "t.toml:16:16: upstreams[0].endpoints[0].adress: unknown field `adress`, expected \
             `address` or `weight`",
            "t.toml:16:84: upstreams[0].endpoints[1].weight: invalid type: string \"2\", expected i64",
            "t.toml:20:21: routes[0].listeners[1]: no listener named \"admin\"",
            "t.toml:21:11: routes[0].methods: invalid type: string \"GET\", expected a sequence",
            "t.toml:22:12: routes[0].upstream: no upstream named \"user\"",
            "t.toml:24:1: routes[1]: missing field `name`",
            "t.toml:25:21: routes[1].listeners[1]: invalid type: integer `2`, expected a string",
            "t.toml:27:9: routes[1].respond.bdy: unknown field `bdy`, expected one of `status`, \
             `headers`, `body`",
            "t.toml:28:27: routes[1].respond.headers.x-a: invalid type: integer `1`, expected a \
             string",
            "t.toml:30:2: server: unknown field `server`, expected one of `runtime`, `control`, \
             `admin`, `metrics`, `access_log`, `resolver`, `listeners`, `upstreams`, `routes`, `consumers`, `jwt_providers`",
        ]
    );
}

#[test]
fn an_array_written_as_a_table_is_one_error_without_knock_on_errors() {
    let src = "\
[listeners]
name = \"web\"
listen = \"127.0.0.1:80\"

[[routes]]
name = \"r\"
listeners = [\"web\"]
upstream = \"nowhere\"
";
    assert_eq!(
        errors(src),
        [
            "t.toml:1:1: listeners: invalid type: map, expected a sequence",
            "t.toml:8:12: routes[0].upstream: no upstream named \"nowhere\"",
        ]
    );
}

#[test]
fn a_route_reference_to_an_unnamed_entry_is_not_reported() {
    // The listener's name is wrong, so whether "web" exists is unknown: one error, not two.
    let src = "[[listeners]]\nname = 7\nlisten = \"127.0.0.1:80\"\n\
               [[routes]]\nname = \"r\"\nlisteners = [\"web\"]\nrespond = { status = 200 }\n";
    assert_eq!(
        one_error(src),
        "t.toml:2:8: listeners[0].name: invalid type: integer `7`, expected a string"
    );
}

#[test]
fn a_table_of_the_wrong_type_stops_reading_with_the_unknown_keys_before_it() {
    let src = format!(
        "[runtime]\npins = true\n{BASE}header_timeout = \"x\"\n\
         [[routes]]\nname = \"r\"\nrespond = \"hello\"\n[[routes]]\nname = \"s\"\nbogus = 1\n"
    );
    assert_eq!(
        errors(&src),
        [
            "t.toml:2:1: runtime.pins: unknown field `pins`, expected one of `shards`, `driver`, \
             `pin`, `uring_entries`",
            "t.toml:9:11: routes[0].respond: invalid type: string \"hello\", expected a direct \
             response such as { status = 200, body = \"hello\" }",
        ]
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let src = "\
[runtime]
shards = 0

[[listeners]]
name = \"web\"
listen = \"127.0.0.1:80\"
header_timeout = \"10\"

[[upstreams]]
name = \"users\"
endpoints = [{ address = \"127.0.0.1:9000\", weight = 0 }]

[[routes]]
name = \"users\"
host = \"*.example.com:80\"
path_prefix = \"users\"
upstream = \"user\"
";
    assert_eq!(
        errors(src),
        [
            "t.toml:2:10: runtime.shards: must be at least 1, got 0",
            "t.toml:7:18: listeners[0].header_timeout: \"10\" has no unit; write it with ms, s, m or h, such as \"10s\"",
            "t.toml:11:53: upstreams[0].endpoints[0].weight: must be between 1 and 1000, got 0",
            "t.toml:15:8: routes[0].host: \"*.example.com:80\" is not a host name; give the host without a port (the port is ignored when matching)",
            "t.toml:16:15: routes[0].path_prefix: \"users\" must start with '/'",
            "t.toml:17:12: routes[0].upstream: no upstream named \"user\"",
        ]
    );
    let shown = parse(src, "t.toml").unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 6);
}

#[test]
fn tables_made_by_dotted_keys_are_read() {
    let src = format!(
        "admin.listen = \"127.0.0.1:9901\"\n{BASE}[[routes]]\nname = \"a\"\npath_exact = \"/a\"\n\
         respond.status = 204\nrespond.headers.x-a = \"1\"\n\
         [[routes]]\nname = \"b\"\nredirect.location = \"/new\"\n"
    );
    let config = crate::validate::test_util::parse_ok(&src);
    assert_eq!(
        config.admin.map(|a| a.listen),
        Some("127.0.0.1:9901".parse().unwrap())
    );
    let RouteAction::Respond(respond) = &config.routes[0].action else {
        panic!("{:?}", config.routes[0].action)
    };
    assert_eq!(respond.status, 204);
    assert_eq!(respond.headers, [("x-a".to_owned(), "1".to_owned())]);
    assert!(matches!(
        &config.routes[1].action,
        RouteAction::Redirect(r) if r.location == "/new"
    ));
}

#[test]
fn errors_in_tables_made_by_dotted_keys_point_at_the_key() {
    let src = format!(
        "{BASE}[[routes]]\nname = \"r\"\nmethods.get = true\nupstream.name = \"u\"\n\
         respond.body = \"x\"\n"
    );
    assert_eq!(
        errors(&src),
        [
            "t.toml:6:1: routes[0].methods: invalid type: map, expected a sequence",
            "t.toml:7:1: routes[0].upstream: invalid type: map, expected a string",
            "t.toml:8:1: routes[0].respond: set only one of upstream, respond and redirect; \
             upstream is set too",
            "t.toml:8:1: routes[0].respond: missing field `status`",
        ]
    );
}

#[test]
fn truncated_files_never_panic() {
    let src = include_str!("../examples/gateway.toml");
    for end in (0..src.len()).filter(|&i| src.is_char_boundary(i)) {
        if let Err(errors) = parse(&src[..end], "t.toml") {
            assert!(!errors.0.is_empty());
            for error in &errors.0 {
                assert!(error.line >= 1 && error.column >= 1, "{error}");
                assert!(!error.to_string().contains('\n'), "{error}");
            }
        }
    }
}

#[test]
fn a_reload_reuses_only_what_it_asks_for_again() {
    let route = |name: &str, regex: &str| {
        format!("[[routes]]\nname = \"{name}\"\npath_regex = \"{regex}\"\nrespond = {{ status = 200 }}\n")
    };
    let running = parse(
        &format!("{BASE}{}{}", route("a", "/a[0-9]+"), route("b", "/b[0-9]+")),
        "t.toml",
    )
    .unwrap();
    let file = std::env::temp_dir().join(format!("ringway-reuse-{}.toml", std::process::id()));
    // Route a keeps its pattern, b takes another one, c is new with b's old pattern.
    let next = format!(
        "{BASE}{}{}{}",
        route("a", "/a[0-9]+"),
        route("b", "/x[0-9]+"),
        route("c", "/b[0-9]+")
    );
    std::fs::write(&file, next).unwrap();
    let reloaded = crate::load_replacing(&file, Some(&running));
    let _ = std::fs::remove_file(&file);
    let reloaded = reloaded.unwrap();
    let matches = |i: usize, path: &str| match &reloaded.routes[i].path {
        crate::PathMatch::Regex(regex) => regex.is_match(path),
        _ => panic!("not a regex route"),
    };
    assert!(matches(0, "/a1") && !matches(0, "/b1"));
    assert!(matches(1, "/x1") && !matches(1, "/b1"));
    assert!(matches(2, "/b1") && !matches(2, "/b1/x"));
    // A bad pattern is still an error, whatever the running config has.
    assert!(parse(&format!("{BASE}{}", route("a", "/a(")), "t.toml").is_err());
}
