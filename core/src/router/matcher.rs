//! Matching one route's conditions against a request, without allocating.

use ringway_config::{PathMatch, Route};

/// Calls the predicate on each (name, value) header pair; true as soon as one satisfies it.
pub type AnyHeader<'a> = &'a dyn Fn(&mut dyn FnMut(&[u8], &[u8]) -> bool) -> bool;

/// What the router looks at in a request.
pub struct RequestView<'a> {
    pub listener: usize,
    /// Authority as sent (may carry a port, any case).
    pub host: Option<&'a [u8]>,
    /// Path without the query.
    pub path: &'a [u8],
    pub method: &'a [u8],
    pub headers: AnyHeader<'a>,
}

/// Lower-cases `host` without its port into `out`. None when it does not fit or is not ASCII.
pub fn normalise_host<'o>(host: Option<&[u8]>, out: &'o mut [u8; 255]) -> Option<&'o str> {
    let host = host?;
    let without_port = if host.first() == Some(&b'[') {
        // IPv6 literal: keep through the closing bracket.
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let without_dot = without_port.strip_suffix(b".").unwrap_or(without_port);
    if without_dot.len() > out.len() || !without_dot.is_ascii() {
        return None;
    }
    let out = &mut out[..without_dot.len()];
    for (o, b) in out.iter_mut().zip(without_dot) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

pub fn matches(route: &Route, req: &RequestView<'_>) -> bool {
    let path_ok = match &route.path {
        PathMatch::Any => true,
        PathMatch::Exact(p) => req.path == p.as_bytes(),
        PathMatch::Prefix(p) => req.path.starts_with(p.as_bytes()),
        PathMatch::Regex(re) => match std::str::from_utf8(req.path) {
            Ok(path) => re.is_match(path),
            Err(_) => false,
        },
    };
    if !path_ok {
        return false;
    }
    if !route.methods.is_empty() && !route.methods.iter().any(|m| m.as_bytes() == req.method) {
        return false;
    }
    route.headers.iter().all(|want| {
        (req.headers)(&mut |name, value| {
            name.eq_ignore_ascii_case(want.name.as_bytes())
                && want.value.as_ref().is_none_or(|v| v.as_bytes() == value)
        })
    })
}
