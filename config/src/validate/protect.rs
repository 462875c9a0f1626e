//! What protects an upstream: `circuit_breaker`, `health_check` and `outlier_detection`. Each
//! is off unless its table is written; a written table takes the defaults for the keys it
//! leaves out.

use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::model::{CircuitBreaker, HealthCheck, HealthCheckKind, OutlierDetection};
use crate::raw::{
    At, IntOrText, RawCircuitBreaker, RawHealthCheck, RawOutlierDetection, RawStatus, Typed,
};

/// Validation of one optional table: `Some(None)` when absent, `None` when invalid (recorded).
type Checked<T> = Option<Option<T>>;

/// The value of `raw` when it was written with the right type, for checks between keys.
fn written<T>(raw: &Option<Typed<T>>) -> Option<&Spanned<T>> {
    match raw {
        Some(Typed::Ok(value)) => Some(value),
        _ => None,
    }
}

/// A count in `range`, as `u32`.
fn count(
    ctx: &mut Ctx<'_>,
    raw: &Option<Typed<i64>>,
    key: String,
    default: u32,
    (min, max): (u32, u32),
) -> Option<u32> {
    let n = ctx.int(raw.as_ref(), key, default.into(), (min.into(), max.into()))?;
    u32::try_from(n).ok()
}

/// `upstreams[i].circuit_breaker`.
pub(super) fn circuit_breaker(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    table: Option<&At<RawCircuitBreaker>>,
) -> Checked<CircuitBreaker> {
    let Some(table) = table else {
        return Some(None);
    };
    let raw = table.get_ref();
    let prefix = format!("{prefix}.circuit_breaker");
    let key = |field: &str| format!("{prefix}.{field}");
    let consecutive_failures = count(
        ctx,
        &raw.consecutive_failures,
        key("consecutive_failures"),
        5,
        (0, 1_000_000),
    );
    let error_percent = match ctx.optional(raw.error_percent.as_ref(), &key("error_percent")) {
        None => None,
        Some(None) => Some(None),
        Some(Some(_)) => {
            count(ctx, &raw.error_percent, key("error_percent"), 0, (1, 100)).map(Some)
        }
    };
    let window = ctx.duration(raw.window.as_ref(), key("window"), Duration::from_secs(10));
    let min_requests = count(
        ctx,
        &raw.min_requests,
        key("min_requests"),
        20,
        (1, 1_000_000),
    );
    let open_for = ctx.duration(
        raw.open_for.as_ref(),
        key("open_for"),
        Duration::from_secs(5),
    );
    let max_open_for = match open_for {
        Some(open_for) => ctx.duration(raw.max_open_for.as_ref(), key("max_open_for"), open_for),
        None => None,
    };
    let half_open_probes = count(
        ctx,
        &raw.half_open_probes,
        key("half_open_probes"),
        1,
        (1, 1000),
    );
    if let (Some(open_for), Some(max), Some(at)) =
        (open_for, max_open_for, written(&raw.max_open_for))
    {
        if max < open_for {
            let message = format!(
                "must be at least open_for ({open_for:?}), got \"{}\"",
                at.get_ref()
            );
            ctx.error(at, key("max_open_for"), message);
            return None;
        }
    }
    if let (Some(0), Some(None)) = (consecutive_failures, error_percent) {
        let message =
            "the breaker can never open: set consecutive_failures above 0 or error_percent";
        ctx.error_near(table.span(), prefix.clone(), message);
        return None;
    }
    Some(Some(CircuitBreaker {
        consecutive_failures: consecutive_failures?,
        error_percent: error_percent?,
        window: window?,
        min_requests: min_requests?,
        open_for: open_for?,
        max_open_for: max_open_for?,
        half_open_probes: half_open_probes?,
    }))
}

/// `upstreams[i].health_check`.
pub(super) fn health_check(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    table: Option<&At<RawHealthCheck>>,
) -> Checked<HealthCheck> {
    let Some(table) = table else {
        return Some(None);
    };
    let raw = table.get_ref();
    let prefix = format!("{prefix}.health_check");
    let key = |field: &str| format!("{prefix}.{field}");
    let kind = health_check_kind(ctx, raw, &prefix);
    let path = match ctx.optional(raw.path.as_ref(), &key("path")) {
        None => None,
        Some(None) => Some("/".to_string()),
        Some(Some(at)) => {
            let path = at.get_ref();
            if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
                let message = format!(
                    "\"{path}\" is not a request path: it starts with '/' and has no spaces or control characters"
                );
                ctx.fail(at, key("path"), message)
            } else {
                Some(path.clone())
            }
        }
    };
    let host = match ctx.optional(raw.host.as_ref(), &key("host")) {
        None => None,
        Some(None) => Some(None),
        Some(Some(at)) => {
            let host = at.get_ref();
            if host.is_empty() || !host.bytes().all(|b| b.is_ascii_graphic()) {
                let message =
                    format!("\"{host}\" is not a host: non-empty, no spaces or control characters");
                ctx.fail(at, key("host"), message)
            } else {
                Some(Some(host.clone()))
            }
        }
    };
    let interval = ctx.duration(
        raw.interval.as_ref(),
        key("interval"),
        Duration::from_secs(5),
    );
    let timeout = ctx.duration(raw.timeout.as_ref(), key("timeout"), Duration::from_secs(1));
    let expected_statuses = match &raw.expected_statuses {
        None => Some(vec![(200, 299)]),
        Some(list) => match ctx.list(list, &key("expected_statuses")) {
            None => None,
            Some([]) => {
                let message = "must list at least one status";
                ctx.error_near(list.span(), key("expected_statuses"), message);
                None
            }
            Some(items) => {
                let mut ranges = Vec::with_capacity(items.len());
                let mut valid = true;
                for (i, item) in items.iter().enumerate() {
                    let key = format!("{prefix}.expected_statuses[{i}]");
                    match ctx.typed(item, &key).and_then(|at| status(ctx, at, key)) {
                        Some(range) => ranges.push(range),
                        None => valid = false,
                    }
                }
                valid.then_some(ranges)
            }
        },
    };
    let healthy_threshold = count(
        ctx,
        &raw.healthy_threshold,
        key("healthy_threshold"),
        2,
        (1, 1000),
    );
    let unhealthy_threshold = count(
        ctx,
        &raw.unhealthy_threshold,
        key("unhealthy_threshold"),
        3,
        (1, 1000),
    );
    if let (Some(interval), Some(timeout), Some(at)) = (interval, timeout, written(&raw.timeout)) {
        if timeout > interval {
            let message = format!(
                "must be at most interval ({interval:?}), got \"{}\"",
                at.get_ref()
            );
            ctx.error(at, key("timeout"), message);
            return None;
        }
    }
    Some(Some(HealthCheck {
        kind: kind?,
        path: path?,
        host: host?,
        interval: interval?,
        timeout: timeout?,
        expected_statuses: expected_statuses?,
        healthy_threshold: healthy_threshold?,
        unhealthy_threshold: unhealthy_threshold?,
    }))
}

/// `kind` and `service` of a health check; a gRPC check has no use for the HTTP check's
/// `path` and `expected_statuses`, so writing them is an error rather than ignored.
fn health_check_kind(
    ctx: &mut Ctx<'_>,
    raw: &RawHealthCheck,
    prefix: &str,
) -> Option<HealthCheckKind> {
    let key = |field: &str| format!("{prefix}.{field}");
    let grpc = match ctx.optional(raw.kind.as_ref(), &key("kind")) {
        None => return None,
        Some(None) => false,
        Some(Some(at)) => match at.get_ref().as_str() {
            "http" => false,
            "grpc" => true,
            other => {
                let message = format!("unknown kind \"{other}\"; expected \"http\" or \"grpc\"");
                return ctx.fail(at, key("kind"), message);
            }
        },
    };
    let service = ctx.optional(raw.service.as_ref(), &key("service"))?;
    if !grpc {
        if let Some(at) = service {
            let message = "only for kind = \"grpc\" (the gRPC service to ask about)";
            return ctx.fail(at, key("service"), message);
        }
        return Some(HealthCheckKind::Http);
    }
    if let Some(at) = written(&raw.path) {
        return ctx.fail(
            at,
            key("path"),
            "only for kind = \"http\": a gRPC check calls grpc.health.v1.Health/Check",
        );
    }
    if let Some(list) = &raw.expected_statuses {
        let message = "only for kind = \"http\": a gRPC check passes on SERVING";
        ctx.error_near(list.span(), key("expected_statuses"), message);
        return None;
    }
    let service = match service {
        None => String::new(),
        Some(at) => {
            let name = at.get_ref();
            if name.len() > 1024 || !name.bytes().all(|b| b.is_ascii_graphic()) {
                let message = format!("\"{name}\" is not a gRPC service name: at most 1024 printable characters, no spaces");
                return ctx.fail(at, key("service"), message);
            }
            name.clone()
        }
    };
    Some(HealthCheckKind::Grpc { service })
}

/// One `expected_statuses` entry: `200` or `"2xx"`, as an inclusive range.
fn status(ctx: &mut Ctx<'_>, at: &Spanned<RawStatus>, key: String) -> Option<(u16, u16)> {
    match &at.get_ref().0 {
        IntOrText::Int(n) => match u16::try_from(*n) {
            Ok(n) if (100..=599).contains(&n) => Some((n, n)),
            _ => ctx.fail(at, key, format!("must be between 100 and 599, got {n}")),
        },
        IntOrText::Text(text) => {
            let class = match text.as_bytes() {
                [d @ b'1'..=b'5', b'x' | b'X', b'x' | b'X'] => Some(u16::from(d - b'0') * 100),
                _ => None,
            };
            match class {
                Some(low) => Some((low, low + 99)),
                None => ctx.fail(
                    at,
                    key,
                    format!("\"{text}\" is not a status class; expected \"1xx\" to \"5xx\""),
                ),
            }
        }
    }
}

/// `upstreams[i].outlier_detection`.
pub(super) fn outlier_detection(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    table: Option<&At<RawOutlierDetection>>,
) -> Checked<OutlierDetection> {
    let Some(table) = table else {
        return Some(None);
    };
    let raw = table.get_ref();
    let prefix = format!("{prefix}.outlier_detection");
    let key = |field: &str| format!("{prefix}.{field}");
    let consecutive_5xx = count(
        ctx,
        &raw.consecutive_5xx,
        key("consecutive_5xx"),
        5,
        (0, 1_000_000),
    );
    let consecutive_gateway_failure = count(
        ctx,
        &raw.consecutive_gateway_failure,
        key("consecutive_gateway_failure"),
        0,
        (0, 1_000_000),
    );
    let base = ctx.duration(
        raw.base_ejection_time.as_ref(),
        key("base_ejection_time"),
        Duration::from_secs(30),
    );
    let max = ctx.duration(
        raw.max_ejection_time.as_ref(),
        key("max_ejection_time"),
        Duration::from_secs(300),
    );
    let max_ejection_percent = count(
        ctx,
        &raw.max_ejection_percent,
        key("max_ejection_percent"),
        10,
        (0, 100),
    );
    if let (Some(base), Some(max)) = (base, max) {
        if max < base {
            let message = format!("must be at least base_ejection_time ({base:?})");
            match written(&raw.max_ejection_time) {
                Some(at) => ctx.error(at, key("max_ejection_time"), message),
                None => ctx.error_near(table.span(), key("max_ejection_time"), message),
            }
            return None;
        }
    }
    if let (Some(0), Some(0)) = (consecutive_5xx, consecutive_gateway_failure) {
        let message = "no endpoint can ever be ejected: set consecutive_5xx or consecutive_gateway_failure above 0";
        ctx.error_near(table.span(), prefix.clone(), message);
        return None;
    }
    Some(Some(OutlierDetection {
        consecutive_5xx: consecutive_5xx?,
        consecutive_gateway_failure: consecutive_gateway_failure?,
        base_ejection_time: base?,
        max_ejection_time: max?,
        max_ejection_percent: max_ejection_percent?,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::{CircuitBreaker, HealthCheck, HealthCheckKind, OutlierDetection};
    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    /// An upstream `u` (lines 4 to 6) with `lines` from line 7.
    fn with(lines: &str) -> String {
        format!("{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\n{lines}\n")
    }

    #[test]
    fn all_off_unless_written() {
        let u = &parse_ok(&with("")).upstreams[0];
        assert_eq!(u.circuit_breaker, None);
        assert_eq!(u.health_check, None);
        assert_eq!(u.outlier_detection, None);
    }

    #[test]
    fn defaults_of_written_tables() {
        let src = with("circuit_breaker = {}\nhealth_check = {}\noutlier_detection = {}");
        let u = &parse_ok(&src).upstreams[0];
        assert_eq!(
            u.circuit_breaker,
            Some(CircuitBreaker {
                consecutive_failures: 5,
                error_percent: None,
                window: Duration::from_secs(10),
                min_requests: 20,
                open_for: Duration::from_secs(5),
                max_open_for: Duration::from_secs(5),
                half_open_probes: 1,
            })
        );
        assert_eq!(
            u.health_check,
            Some(HealthCheck {
                kind: HealthCheckKind::Http,
                path: "/".into(),
                host: None,
                interval: Duration::from_secs(5),
                timeout: Duration::from_secs(1),
                expected_statuses: vec![(200, 299)],
                healthy_threshold: 2,
                unhealthy_threshold: 3,
            })
        );
        assert_eq!(
            u.outlier_detection,
            Some(OutlierDetection {
                consecutive_5xx: 5,
                consecutive_gateway_failure: 0,
                base_ejection_time: Duration::from_secs(30),
                max_ejection_time: Duration::from_secs(300),
                max_ejection_percent: 10,
            })
        );
    }

    #[test]
    fn explicit_values() {
        let src = with(
            "[upstreams.circuit_breaker]\nconsecutive_failures = 0\nerror_percent = 50\n\
             window = \"30s\"\nmin_requests = 10\nopen_for = \"1s\"\nmax_open_for = \"1m\"\n\
             half_open_probes = 3\n\
             [upstreams.health_check]\npath = \"/healthz?full=1\"\nhost = \"svc.internal\"\n\
             interval = \"2s\"\ntimeout = \"2s\"\nexpected_statuses = [200, \"3xx\", 418]\n\
             healthy_threshold = 1\nunhealthy_threshold = 5\n\
             [upstreams.outlier_detection]\nconsecutive_5xx = 0\n\
             consecutive_gateway_failure = 3\nbase_ejection_time = \"10s\"\n\
             max_ejection_time = \"10s\"\nmax_ejection_percent = 100",
        );
        let u = &parse_ok(&src).upstreams[0];
        let b = u.circuit_breaker.as_ref().unwrap();
        assert_eq!((b.consecutive_failures, b.error_percent), (0, Some(50)));
        assert_eq!((b.window, b.min_requests), (Duration::from_secs(30), 10));
        assert_eq!(b.open_for, Duration::from_secs(1));
        assert_eq!(b.max_open_for, Duration::from_secs(60));
        assert_eq!(b.half_open_probes, 3);
        let h = u.health_check.as_ref().unwrap();
        assert_eq!(h.path, "/healthz?full=1");
        assert_eq!(h.host.as_deref(), Some("svc.internal"));
        assert_eq!(
            (h.interval, h.timeout),
            (Duration::from_secs(2), Duration::from_secs(2))
        );
        assert_eq!(h.expected_statuses, [(200, 200), (300, 399), (418, 418)]);
        assert!(h.expects(200) && h.expects(302) && h.expects(418));
        assert!(!h.expects(204) && !h.expects(500));
        assert_eq!((h.healthy_threshold, h.unhealthy_threshold), (1, 5));
        let o = u.outlier_detection.as_ref().unwrap();
        assert_eq!((o.consecutive_5xx, o.consecutive_gateway_failure), (0, 3));
        assert_eq!(o.base_ejection_time, Duration::from_secs(10));
        assert_eq!(o.max_ejection_time, Duration::from_secs(10));
        assert_eq!(o.max_ejection_percent, 100);
    }

    #[test]
    fn bad_breaker_values_are_all_reported() {
        let src = with(
            "circuit_breaker = { consecutive_failures = -1, error_percent = 0, window = \"10\", \
             min_requests = 0, open_for = \"0s\", half_open_probes = 0 }",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:7:44: upstreams[0].circuit_breaker.consecutive_failures: must be between 0 and 1000000, got -1",
                "t.toml:7:64: upstreams[0].circuit_breaker.error_percent: must be between 1 and 100, got 0",
                "t.toml:7:76: upstreams[0].circuit_breaker.window: \"10\" has no unit; write it with ms, s, m or h, such as \"10s\"",
                "t.toml:7:97: upstreams[0].circuit_breaker.min_requests: must be between 1 and 1000000, got 0",
                "t.toml:7:111: upstreams[0].circuit_breaker.open_for: must be greater than zero",
                "t.toml:7:136: upstreams[0].circuit_breaker.half_open_probes: must be between 1 and 1000, got 0",
            ]
        );
    }

    #[test]
    fn breaker_cross_checks() {
        assert_eq!(
            one_error(&with("circuit_breaker = { open_for = \"5s\", max_open_for = \"1s\" }")),
            "t.toml:7:53: upstreams[0].circuit_breaker.max_open_for: must be at least open_for (5s), got \"1s\""
        );
        assert_eq!(
            one_error(&with("[upstreams.circuit_breaker]\nconsecutive_failures = 0")),
            "t.toml:7:1: upstreams[0].circuit_breaker: the breaker can never open: set consecutive_failures above 0 or error_percent"
        );
        assert_eq!(
            one_error(&with("circuit_breaker = { error_percent = 0.5 }")),
            "t.toml:7:37: upstreams[0].circuit_breaker.error_percent: invalid type: floating point `0.5`, expected i64"
        );
        assert_eq!(
            one_error(&with("circuit_breaker = { consecutive = 3 }")),
            "t.toml:7:21: upstreams[0].circuit_breaker.consecutive: unknown field `consecutive`, expected one of `consecutive_failures`, `error_percent`, `window`, `min_requests`, `open_for`, `max_open_for`, `half_open_probes`"
        );
    }

    #[test]
    fn grpc_health_checks() {
        let u = &parse_ok(&with(
            "health_check = { kind = \"grpc\" }\nprotocol = \"h2\"",
        ))
        .upstreams[0];
        let h = u.health_check.as_ref().unwrap();
        assert_eq!(
            h.kind,
            HealthCheckKind::Grpc {
                service: String::new()
            }
        );
        let src = with(
            "health_check = { kind = \"grpc\", service = \"users.v1.Users\" }\nprotocol = \"h2\"",
        );
        let u = &parse_ok(&src).upstreams[0];
        assert_eq!(
            u.health_check.as_ref().unwrap().kind,
            HealthCheckKind::Grpc {
                service: "users.v1.Users".into()
            }
        );
        assert_eq!(
            errors(&with("health_check = { kind = \"tcp\" }")),
            ["t.toml:7:25: upstreams[0].health_check.kind: unknown kind \"tcp\"; expected \"http\" or \"grpc\""]
        );
        assert_eq!(
            errors(&with("health_check = { kind = \"grpc\", path = \"/h\" }\nprotocol = \"h2\"")),
            ["t.toml:7:40: upstreams[0].health_check.path: only for kind = \"http\": a gRPC check calls grpc.health.v1.Health/Check"]
        );
        assert_eq!(
            errors(&with("health_check = { service = \"x\" }")),
            ["t.toml:7:28: upstreams[0].health_check.service: only for kind = \"grpc\" (the gRPC service to ask about)"]
        );
        assert_eq!(
            errors(&with("health_check = { kind = \"grpc\" }")),
            ["t.toml:7:25: upstreams[0].health_check.kind: a gRPC health check needs protocol = \"h2\" on the upstream (gRPC runs over HTTP/2)"]
        );
    }

    #[test]
    fn bad_health_checks() {
        let src = with(
            "health_check = { path = \"healthz\", host = \"a b\", interval = \"1s\", timeout = \"2s\", \
             expected_statuses = [99, \"6xx\", true] }",
        );
        assert_eq!(
            errors(&src),
            [
                "t.toml:7:25: upstreams[0].health_check.path: \"healthz\" is not a request path: it starts with '/' and has no spaces or control characters",
                "t.toml:7:43: upstreams[0].health_check.host: \"a b\" is not a host: non-empty, no spaces or control characters",
                "t.toml:7:77: upstreams[0].health_check.timeout: must be at most interval (1s), got \"2s\"",
                "t.toml:7:104: upstreams[0].health_check.expected_statuses[0]: must be between 100 and 599, got 99",
                "t.toml:7:108: upstreams[0].health_check.expected_statuses[1]: \"6xx\" is not a status class; expected \"1xx\" to \"5xx\"",
                "t.toml:7:115: upstreams[0].health_check.expected_statuses[2]: invalid type: boolean `true`, expected a status such as 200 or a class such as \"2xx\"",
            ]
        );
        assert_eq!(
            one_error(&with("health_check = { expected_statuses = [] }")),
            "t.toml:7:38: upstreams[0].health_check.expected_statuses: must list at least one status"
        );
        assert_eq!(
            one_error(&with("health_check = { unhealthy_threshold = 0 }")),
            "t.toml:7:40: upstreams[0].health_check.unhealthy_threshold: must be between 1 and 1000, got 0"
        );
    }

    #[test]
    fn bad_outlier_detection() {
        assert_eq!(
            one_error(&with(
                "outlier_detection = { base_ejection_time = \"1m\", max_ejection_time = \"30s\" }"
            )),
            "t.toml:7:70: upstreams[0].outlier_detection.max_ejection_time: must be at least base_ejection_time (60s)"
        );
        assert_eq!(
            one_error(&with("outlier_detection = { base_ejection_time = \"10m\" }")),
            "t.toml:7:21: upstreams[0].outlier_detection.max_ejection_time: must be at least base_ejection_time (600s)"
        );
        assert_eq!(
            one_error(&with("outlier_detection = { consecutive_5xx = 0 }")),
            "t.toml:7:21: upstreams[0].outlier_detection: no endpoint can ever be ejected: set consecutive_5xx or consecutive_gateway_failure above 0"
        );
        assert_eq!(
            one_error(&with("outlier_detection = { max_ejection_percent = 101 }")),
            "t.toml:7:46: upstreams[0].outlier_detection.max_ejection_percent: must be between 0 and 100, got 101"
        );
        assert_eq!(
            one_error(&with("outlier_detection = 5")),
            "t.toml:7:21: upstreams[0].outlier_detection: invalid type: integer `5`, expected outlier detection such as { consecutive_5xx = 5, base_ejection_time = \"30s\" }"
        );
    }
}
