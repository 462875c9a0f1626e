//! `ringway ctl config`: the running config, with secrets redacted, twice: the file's TOML
//! as it was read ([`redacted_toml`]), and the validated [`Config`] as JSON ([`render`]),
//! key by key with the file's key names, defaults filled in and host names resolved.
//!
//! Any value whose key names a secret is replaced by `"<redacted>"` (see [`is_secret`]), and
//! so is the `value` beside a `name` that names a secret (header conditions such as
//! `{ name = "x-api-key", value = "..." }`).

use ringway_config::{
    Config, HealthCheckKind, HostMatch, PathMatch, RateLimitKey, RouteAction, Shards,
    UpstreamProtocol,
};
use serde_json::{json, Map, Value};

pub const REDACTED: &str = "<redacted>";

pub fn render(config: &Config) -> Value {
    let runtime = &config.runtime;
    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .map(|l| {
            json!({
                "name": l.name,
                "listen": l.listen.to_string(),
                "max_connections": l.max_connections.get(),
                "header_timeout": duration(l.header_timeout),
                "idle_timeout": duration(l.idle_timeout),
                "body_timeout": duration(l.body_timeout),
                "send_timeout": duration(l.send_timeout),
                "max_request_line": l.max_request_line,
                "max_header_bytes": l.max_header_bytes,
                "max_request_body": l.max_request_body,
                "tls": l.tls.as_ref().map(listener_tls),
                "trusted_proxies": l.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "proxy_protocol": l.proxy_protocol,
            })
        })
        .collect();
    let upstreams: Vec<Value> = config
        .upstreams
        .iter()
        .map(|u| {
            json!({
                "name": u.name,
                "endpoints": u.endpoints.iter().map(|e| json!({
                    "address": e.address.to_string(),
                    "host": e.host,
                    "weight": e.weight.get(),
                })).collect::<Vec<_>>(),
                "tls": u.tls.as_ref().map(|t| json!({
                    "ca": t.ca.as_ref().map(|ca| ca.file.display().to_string()),
                    "sni": t.sni,
                    "cert": t.client_cert.as_ref().map(|c| c.cert_file.display().to_string()),
                    "key": t.client_cert.as_ref().map(|c| c.key_file.display().to_string()),
                })),
                "protocol": match u.protocol { UpstreamProtocol::H1 => "h1", UpstreamProtocol::H2 => "h2" },
                "connect_timeout": duration(u.connect_timeout),
                "request_timeout": duration(u.request_timeout),
                "idle_timeout": duration(u.idle_timeout),
                "pool_idle_timeout": duration(u.pool_idle_timeout),
                "max_idle_per_endpoint": u.max_idle_per_endpoint,
                "resolve_interval": u.resolve_interval.map_or_else(|| "off".to_string(), duration),
                "circuit_breaker": u.circuit_breaker.as_ref().map(|b| json!({
                    "consecutive_failures": b.consecutive_failures,
                    "error_percent": b.error_percent,
                    "window": duration(b.window),
                    "min_requests": b.min_requests,
                    "open_for": duration(b.open_for),
                    "max_open_for": duration(b.max_open_for),
                    "half_open_probes": b.half_open_probes,
                })),
                "health_check": u.health_check.as_ref().map(|h| json!({
                    "kind": match h.kind { HealthCheckKind::Http => "http", HealthCheckKind::Grpc { .. } => "grpc" },
                    "service": match &h.kind { HealthCheckKind::Grpc { service } => Some(service), HealthCheckKind::Http => None },
                    "path": h.path,
                    "host": h.host,
                    "interval": duration(h.interval),
                    "timeout": duration(h.timeout),
                    "expected_statuses": h.expected_statuses.iter()
                        .map(|&(low, high)| if low == high { json!(low) } else { json!(format!("{}xx", low / 100)) })
                        .collect::<Vec<_>>(),
                    "healthy_threshold": h.healthy_threshold,
                    "unhealthy_threshold": h.unhealthy_threshold,
                })),
                "outlier_detection": u.outlier_detection.as_ref().map(|o| json!({
                    "consecutive_5xx": o.consecutive_5xx,
                    "consecutive_gateway_failure": o.consecutive_gateway_failure,
                    "base_ejection_time": duration(o.base_ejection_time),
                    "max_ejection_time": duration(o.max_ejection_time),
                    "max_ejection_percent": o.max_ejection_percent,
                })),
            })
        })
        .collect();
    let routes: Vec<Value> = config.routes.iter().map(|r| route(config, r)).collect();
    let jwt_providers: Vec<Value> = (config.jwt_providers.iter())
        .map(|p| {
            json!({
                "name": p.name,
                "issuer": p.issuer,
                "audiences": p.audiences,
                "jwks_file": p.jwks_file.as_ref().map(|f| f.display().to_string()),
                "secret_file": p.secret_file.as_ref().map(|f| f.display().to_string()),
                "leeway": duration(p.leeway),
                "keys": p.keys.len(),
            })
        })
        .collect();
    // Keys are never shown, not even their digests (`api_keys` is redacted by its name).
    let consumers: Vec<Value> = (config.consumers.iter())
        .map(|c| {
            json!({
                "name": c.name,
                "jwt_subject": c.jwt_subject,
                "groups": c.groups,
                "api_keys": c.api_keys.len(),
                "basic": c.basic.as_ref().map(|b| json!({ "user": b.user, "password_hash": "<redacted>" })),
            })
        })
        .collect();
    let mut out = json!({
        "source": config.source,
        "runtime": {
            "shards": match runtime.shards {
                Shards::Auto => json!("auto"),
                Shards::Count(n) => json!(n.get()),
            },
            "driver": format!("{:?}", runtime.driver).to_ascii_lowercase().replace("iouring", "io_uring"),
            "pin": runtime.pin,
            "uring_entries": runtime.uring_entries,
        },
        "control": {
            "socket": config.control.socket.display().to_string(),
            "drain_timeout": duration(config.control.drain_timeout),
            "reload_timeout": duration(config.control.reload_timeout),
        },
        "metrics": {
            "interval": duration(config.metrics.interval),
            "interval_log": config.metrics.interval_log.as_ref().map(|p| p.display().to_string()),
        },
        "resolver": {
            "servers": config.resolver.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "timeout": duration(config.resolver.timeout),
        },
        "listeners": listeners,
        "upstreams": upstreams,
        "routes": routes,
        "consumers": consumers,
        "jwt_providers": jwt_providers,
    });
    if let Some(log) = &config.access_log {
        out["access_log"] = json!({ "path": log.path.display().to_string() });
    }
    if let Some(admin) = &config.admin {
        out["admin"] = json!({ "listen": admin.listen.to_string() });
    }
    redact(&mut out);
    out
}

/// Files by their resolved paths; the keys' bytes are never shown.
fn listener_tls(t: &ringway_config::ListenerTls) -> Value {
    json!({
        "certificates": t.certificates.iter().map(|c| json!({
            "cert": c.cert_file.display().to_string(),
            "key": c.key_file.display().to_string(),
            "names": c.names,
            "not_after_unix_s": c.not_after,
        })).collect::<Vec<_>>(),
        "client_ca": t.client_ca.as_ref().map(|ca| ca.file.display().to_string()),
        "client_auth": match t.client_auth {
            ringway_config::ClientAuth::Required => "required",
            ringway_config::ClientAuth::Optional => "optional",
        },
        "client_cert_header": t.client_cert_header,
        "min_version": match t.min_version {
            ringway_config::TlsVersion::V1_2 => "1.2",
            ringway_config::TlsVersion::V1_3 => "1.3",
        },
        "handshake_timeout": duration(t.handshake_timeout),
        "session_tickets": t.session_tickets,
        "session_cache": t.session_cache,
    })
}

fn route(config: &Config, r: &ringway_config::Route) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(r.name));
    if !r.listeners.is_empty() {
        m.insert("listeners".into(), json!(r.listeners));
    }
    match &r.host {
        Some(HostMatch::Exact(h)) => {
            m.insert("host".into(), json!(h));
        }
        Some(HostMatch::Wildcard(suffix)) => {
            m.insert("host".into(), json!(format!("*{suffix}")));
        }
        None => {}
    }
    match &r.path {
        PathMatch::Any => {}
        PathMatch::Exact(p) => {
            m.insert("path_exact".into(), json!(p));
        }
        PathMatch::Prefix(p) => {
            m.insert("path_prefix".into(), json!(p));
        }
        PathMatch::Regex(re) => {
            // Stored anchored: show what the file said.
            let shown = re.as_str();
            let shown = shown
                .strip_prefix("^(?:")
                .and_then(|s| s.strip_suffix(")$"))
                .unwrap_or(shown);
            m.insert("path_regex".into(), json!(shown));
        }
    }
    if !r.methods.is_empty() {
        m.insert("methods".into(), json!(r.methods));
    }
    if !r.headers.is_empty() {
        let headers: Vec<Value> = r
            .headers
            .iter()
            .map(|h| {
                let value = h.value.as_ref().map_or(Value::Null, |v| json!(v));
                json!({ "name": h.name, "value": value })
            })
            .collect();
        m.insert("headers".into(), json!(headers));
    }
    match &r.action {
        RouteAction::Proxy { upstream } => {
            m.insert("upstream".into(), json!(upstream));
        }
        RouteAction::Respond(d) => {
            let headers: Map<String, Value> = d
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert(
                "respond".into(),
                json!({ "status": d.status, "headers": headers, "body": d.body }),
            );
        }
        RouteAction::Redirect(d) => {
            m.insert(
                "redirect".into(),
                json!({ "location": d.location, "status": d.status, "keep_path": d.keep_path }),
            );
        }
    }
    if let Some(limit) = &r.rate_limit {
        let key = match &limit.key {
            RateLimitKey::Header(name) => format!("header:{name}"),
            other => other.kind().to_string(),
        };
        let value = json!({
            "rate": limit.rate.get(),
            "per": duration(limit.per),
            "burst": limit.burst.get(),
            "key": key,
            "max_keys": limit.max_keys.get(),
        });
        m.insert("rate_limit".into(), value);
    }
    if let Some(max) = r.max_in_flight {
        m.insert("max_in_flight".into(), json!(max.get()));
    }
    if let Some(auth) = &r.auth {
        let methods: Vec<String> = (auth.methods.iter())
            .map(|m| match m {
                ringway_config::AuthMethod::ApiKey => "api_key".to_string(),
                ringway_config::AuthMethod::Basic => "basic".to_string(),
                ringway_config::AuthMethod::Jwt(i) => {
                    format!("jwt:{}", config.jwt_providers[*i].name)
                }
            })
            .collect();
        m.insert("auth".into(), json!(methods));
        // Where keys are read, not keys: named so that redaction leaves them shown.
        if auth.methods.contains(&ringway_config::AuthMethod::ApiKey) {
            m.insert("api_key_header".into(), json!(auth.api_key.header));
            m.insert("api_key_query_name".into(), json!(auth.api_key.query));
        }
    }
    if let Some(acl) = &r.acl {
        let names = |list: &[ringway_config::Principal]| -> Vec<String> {
            (list.iter())
                .map(|p| match p {
                    ringway_config::Principal::Consumer(n) => format!("consumer:{n}"),
                    ringway_config::Principal::Group(n) => format!("group:{n}"),
                })
                .collect()
        };
        m.insert(
            "acl".into(),
            json!({ "allow": names(&acl.allow), "deny": names(&acl.deny) }),
        );
    }
    Value::Object(m)
}

fn duration(d: std::time::Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Whether a key's value is a secret: its name (any case, `-` or `_`) contains secret,
/// password, passwd, token, key, credential, authorization or cookie. Not a secret although
/// the name says "key": `key` itself (a rate limit's key selector such as `"client_ip"`) and
/// `max_keys` (a rate limit's bound on keys held),
/// names of files and paths (`key_file`, `key_path`: where a secret is, not the secret), and
/// names of headers (`token_header`).
pub fn is_secret(name: &str) -> bool {
    let name = name.to_ascii_lowercase().replace('-', "_");
    const WORDS: [&str; 8] = [
        "secret",
        "password",
        "passwd",
        "token",
        "key",
        "credential",
        "authorization",
        "cookie",
    ];
    const NOT_SECRET_SUFFIXES: [&str; 4] = ["_file", "_path", "_header", "_name"];
    if name == "key" || name == "max_keys" || NOT_SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
    {
        return false;
    }
    WORDS.iter().any(|w| name.contains(w))
}

/// Replaces, at any depth, the value of every object key [`is_secret`] names, and the
/// `value` of an object whose `name` is such a key.
pub fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let named_secret = map
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(is_secret);
            for (key, v) in map.iter_mut() {
                if (is_secret(key) || (named_secret && key == "value")) && !v.is_null() {
                    *v = json!(REDACTED);
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The config file's text with every secret value redacted (comments and layout are not
/// kept: the text is parsed and written again). Text that does not parse (it did when it was
/// loaded) gives a comment saying so, never the raw text.
pub fn redacted_toml(text: &str) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return "# the config text could not be parsed again\n".to_string();
    };
    redact_table(&mut table);
    toml::to_string(&table).unwrap_or_else(|_| "# the config could not be written\n".into())
}

fn redact_table(table: &mut toml::Table) {
    let named_secret = table
        .get("name")
        .and_then(toml::Value::as_str)
        .is_some_and(is_secret);
    for (key, v) in table.iter_mut() {
        if is_secret(key) || (named_secret && key == "value") {
            *v = toml::Value::String(REDACTED.into());
        } else {
            redact_toml(v);
        }
    }
}

fn redact_toml(value: &mut toml::Value) {
    match value {
        toml::Value::Table(t) => redact_table(t),
        toml::Value::Array(items) => items.iter_mut().for_each(redact_toml),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names() {
        for name in [
            "api_key",
            "password",
            "client-secret",
            "token",
            "X-Api-Key",
            "Authorization",
            "jwt_secret_key",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "key",
            "max_keys",
            "key_file",
            "cert_path",
            "token_header",
            "name",
            "keep_path",
            "listen",
            "keepalive",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn redacts_at_any_depth() {
        let mut v = json!({ "a": { "password": "hunter2", "list": [{ "token": "t" }] }, "key": "client_ip" });
        redact(&mut v);
        assert_eq!(v["a"]["password"], REDACTED);
        assert_eq!(v["a"]["list"][0]["token"], REDACTED);
        assert_eq!(v["key"], "client_ip");
    }

    #[test]
    fn toml_text_is_redacted() {
        let text = "# secret comment\n[auth]\napi_key = \"abc\"\nkey = \"client_ip\"\nheaders = [{ name = \"x-api-key\", value = \"s3\" }]\n";
        let out = redacted_toml(text);
        assert!(
            !out.contains("abc") && !out.contains("s3") && !out.contains("comment"),
            "{out}"
        );
        assert!(out.contains("client_ip"), "{out}");
    }

    #[test]
    fn renders_a_config_with_secret_headers_redacted() {
        let toml = r#"
            [[listeners]]
            name = "l"
            listen = "127.0.0.1:1"
            [[routes]]
            name = "r"
            path_prefix = "/p"
            headers = [{ name = "x-api-key", value = "s3cret" }, { name = "x-env", value = "canary" }]
            respond = { status = 200, headers = { authorization = "Bearer abc", content-type = "text/plain" }, body = "hi" }
        "#;
        let config = ringway_config::parse(toml, "t.toml").unwrap();
        let v = render(&config);
        let text = v.to_string();
        assert!(
            !text.contains("s3cret") && !text.contains("Bearer abc"),
            "{text}"
        );
        assert_eq!(v["routes"][0]["headers"][1]["value"], "canary");
        assert_eq!(
            v["routes"][0]["respond"]["headers"]["content-type"],
            "text/plain"
        );
        assert_eq!(v["routes"][0]["path_prefix"], "/p");
        assert_eq!(v["listeners"][0]["listen"], "127.0.0.1:1");
        assert_eq!(v["listeners"][0]["idle_timeout"], "60s");
    }

    #[test]
    fn consumers_keys_are_never_shown() {
        let toml = r#"
            [[listeners]]
            name = "l"
            listen = "127.0.0.1:1"
            [[consumers]]
            name = "acme"
            groups = ["partners"]
            api_keys = ["acme-key-0001", "sha256:d54508c124109e1bbf7d7dffd3aa872b9364dc9f0232ca9b32d74a42b570cd7d"]
            [[routes]]
            name = "r"
            respond = { status = 200 }
            auth = ["api_key"]
            acl = { allow = ["group:partners"] }
        "#;
        let config = ringway_config::parse(toml, "t.toml").unwrap();
        let v = render(&config);
        let text = v.to_string() + &redacted_toml(toml);
        assert!(
            !text.contains("acme-key-0001") && !text.contains("d54508c1"),
            "{text}"
        );
        assert_eq!(v["consumers"][0]["name"], "acme");
        assert_eq!(v["consumers"][0]["groups"][0], "partners");
        assert_eq!(v["routes"][0]["auth"][0], "api_key");
        assert_eq!(v["routes"][0]["api_key_header"], "x-api-key");
        assert_eq!(v["routes"][0]["acl"]["allow"][0], "group:partners");
    }
}
