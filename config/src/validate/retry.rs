//! A proxy route's `timeout` and `retry` policy.

use std::time::Duration;

use super::Ctx;
use crate::model::{Retry, RetryOn};
use crate::raw::{At, RawRetry, RawRoute, Typed};

const ON: [&str; 3] = ["connect_failure", "reset", "timeout"];

/// `timeout` and `retry` of the route at `prefix`: both only on a route with an `upstream`.
/// `None` when something is wrong (recorded).
#[allow(clippy::type_complexity)]
pub(super) fn timeout_and_retry(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    r: &RawRoute,
) -> Option<(Option<Duration>, Option<Retry>)> {
    let proxied = r.upstream.is_some() || (r.respond.is_none() && r.redirect.is_none());
    let key = format!("{prefix}.timeout");
    let timeout = match ctx.optional(r.timeout.as_ref(), &key) {
        None => None,
        Some(Some(raw)) if !proxied => {
            ctx.error(raw, key, "applies only to a route with an upstream");
            None
        }
        Some(_) => optional_duration(ctx, r.timeout.as_ref(), key),
    };
    let retry = match &r.retry {
        None => Some(None),
        Some(raw) if !proxied => {
            let key = format!("{prefix}.retry");
            ctx.error_near(raw.span(), key, "applies only to a route with an upstream");
            None
        }
        Some(raw) => retry(ctx, prefix, raw).map(Some),
    };
    Some((timeout?, retry?))
}

/// A duration key without default: `Some(None)` when absent.
fn optional_duration(
    ctx: &mut Ctx<'_>,
    raw: Option<&Typed<String>>,
    key: String,
) -> Option<Option<Duration>> {
    match raw {
        None => Some(None),
        Some(_) => ctx.duration(raw, key, Duration::ZERO).map(Some),
    }
}

fn retry(ctx: &mut Ctx<'_>, prefix: &str, raw: &At<RawRetry>) -> Option<Retry> {
    let table_key = format!("{prefix}.retry");
    let key = |field: &str| format!("{table_key}.{field}");
    let raw = raw.get_ref();
    let retries = ctx.int(raw.retries.as_ref(), key("retries"), 1, (1, 10));
    let on = match &raw.on {
        None => Some(RetryOn {
            connect_failure: true,
            reset: true,
            timeout: true,
        }),
        Some(list) => ctx.list(list, &key("on")).and_then(|items| {
            let mut on = RetryOn {
                connect_failure: false,
                reset: false,
                timeout: false,
            };
            let mut valid = true;
            for (i, item) in items.iter().enumerate() {
                let key = format!("{}[{i}]", key("on"));
                let Some(item) = ctx.typed(item, &key) else {
                    valid = false;
                    continue;
                };
                match item.get_ref().as_str() {
                    "connect_failure" => on.connect_failure = true,
                    "reset" => on.reset = true,
                    "timeout" => on.timeout = true,
                    other => {
                        let message = format!(
                            "unknown retry condition \"{other}\"; expected one of {}",
                            ON.join(", ")
                        );
                        ctx.error(item, key, message);
                        valid = false;
                    }
                }
            }
            valid.then_some(on)
        }),
    };
    let statuses = match &raw.statuses {
        None => Some(Vec::new()),
        Some(list) => ctx.list(list, &key("statuses")).and_then(|items| {
            let mut statuses = Vec::new();
            let mut valid = true;
            for (i, item) in items.iter().enumerate() {
                let key = format!("{}[{i}]", key("statuses"));
                let Some(item) = ctx.typed(item, &key) else {
                    valid = false;
                    continue;
                };
                match u16::try_from(*item.get_ref()) {
                    Ok(code) if (500..=599).contains(&code) || code == 429 || code == 408 => {
                        if !statuses.contains(&code) {
                            statuses.push(code);
                        }
                    }
                    _ => {
                        let message =
                            format!("must be a 5xx status, 408 or 429, got {}", item.get_ref());
                        ctx.error(item, key, message);
                        valid = false;
                    }
                }
            }
            valid.then_some(statuses)
        }),
    };
    let non_idempotent = ctx
        .optional(raw.non_idempotent.as_ref(), &key("non_idempotent"))
        .map(|v| v.is_some_and(|v| *v.get_ref()));
    let per_try_timeout =
        optional_duration(ctx, raw.per_try_timeout.as_ref(), key("per_try_timeout"));
    let backoff = ctx.duration(
        raw.backoff.as_ref(),
        key("backoff"),
        Duration::from_millis(25),
    );
    let max_buffered_body = ctx.size(
        raw.max_buffered_body.as_ref(),
        key("max_buffered_body"),
        64 << 10,
        0,
    );
    let max_buffered_body = max_buffered_body.and_then(|n| {
        if n > 16 << 20 {
            let spanned =
                ctx.optional(raw.max_buffered_body.as_ref(), &key("max_buffered_body"))??;
            let message = format!("must be at most 16 MiB, got {n} bytes");
            return ctx.fail(spanned, key("max_buffered_body"), message);
        }
        Some(n)
    });
    let budget_percent = ctx.int(
        raw.budget_percent.as_ref(),
        key("budget_percent"),
        20,
        (0, 100),
    );
    let min_retries = ctx.int(
        raw.min_retries.as_ref(),
        key("min_retries"),
        3,
        (0, 1_000_000),
    );
    Some(Retry {
        retries: retries? as u32,
        on: on?,
        statuses: statuses?,
        non_idempotent: non_idempotent?,
        per_try_timeout: per_try_timeout?,
        backoff: backoff?,
        max_buffered_body: max_buffered_body?,
        budget_percent: budget_percent? as u32,
        min_retries: min_retries? as u32,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::model::{Retry, RetryOn};
    use crate::validate::route::tests::with_route;
    use crate::validate::test_util::{errors, parse_ok};

    fn retry_of(body: &str) -> (Option<Duration>, Option<Retry>) {
        let r = parse_ok(&with_route(body)).routes.remove(0);
        (r.timeout, r.retry)
    }

    #[test]
    fn defaults() {
        assert_eq!(retry_of("upstream = \"users\"\n"), (None, None));
        let (timeout, retry) = retry_of("upstream = \"users\"\ntimeout = \"3s\"\nretry = {}\n");
        assert_eq!(timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            retry.unwrap(),
            Retry {
                retries: 1,
                on: RetryOn {
                    connect_failure: true,
                    reset: true,
                    timeout: true
                },
                statuses: vec![],
                non_idempotent: false,
                per_try_timeout: None,
                backoff: Duration::from_millis(25),
                max_buffered_body: 64 << 10,
                budget_percent: 20,
                min_retries: 3,
            }
        );
    }

    #[test]
    fn values() {
        let (_, retry) = retry_of(
            "upstream = \"users\"\nretry = { retries = 3, on = [\"reset\"], statuses = [503, 502, 503], non_idempotent = true, per_try_timeout = \"250ms\", backoff = \"1ms\", max_buffered_body = \"1MiB\", budget_percent = 50, min_retries = 0 }\n",
        );
        let retry = retry.unwrap();
        assert_eq!(retry.retries, 3);
        assert_eq!(
            retry.on,
            RetryOn {
                connect_failure: false,
                reset: true,
                timeout: false
            }
        );
        assert_eq!(retry.statuses, [503, 502]);
        assert!(retry.non_idempotent);
        assert_eq!(retry.per_try_timeout, Some(Duration::from_millis(250)));
        assert_eq!(retry.backoff, Duration::from_millis(1));
        assert_eq!(retry.max_buffered_body, 1 << 20);
        assert_eq!((retry.budget_percent, retry.min_retries), (50, 0));
    }

    #[test]
    fn bad_values_are_all_reported() {
        let src = with_route(
            "upstream = \"users\"\ntimeout = \"0s\"\nretry = { retries = 0, on = [\"reset\", \"5xx\"], statuses = [404], per_try_timeout = \"0s\", budget_percent = 101 }\n",
        );
        let errs = errors(&src);
        assert_eq!(errs.len(), 6, "{errs:#?}");
        for expected in [
            "routes[0].timeout: must be greater than zero",
            "routes[0].retry.retries: must be between 1 and 10, got 0",
            "routes[0].retry.on[1]: unknown retry condition \"5xx\"",
            "routes[0].retry.statuses[0]: must be a 5xx status, 408 or 429, got 404",
            "routes[0].retry.per_try_timeout: must be greater than zero",
            "routes[0].retry.budget_percent: must be between 0 and 100, got 101",
        ] {
            assert!(
                errs.iter().any(|e| e.contains(expected)),
                "{expected} not in {errs:#?}"
            );
        }
    }

    #[test]
    fn only_on_proxy_routes() {
        let src =
            with_route("respond = { status = 200 }\ntimeout = \"1s\"\nretry = { retries = 2 }\n");
        let errs = errors(&src);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(errs[0].contains("routes[0].timeout: applies only to a route with an upstream"));
        assert!(errs[1].contains("routes[0].retry: applies only to a route with an upstream"));
    }
}
