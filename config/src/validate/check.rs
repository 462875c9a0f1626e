//! Checks shared by every table: names, addresses, numbers, durations, sizes, tokens and
//! host names. Each reports into the `Ctx` and returns `None` when the value is invalid.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Ctx;
use crate::model::{HostMatch, Resolver};
use crate::raw::{At, RawSize, Typed};
use crate::resolve::choose;
use crate::units::{parse_duration, parse_size};

impl Ctx<'_> {
    /// A listener, upstream or route name: non-empty, letters, digits, `_`, `.` and `-`, not
    /// starting with `_` (reserved for names Ringway makes up, like the `_unrouted` route of
    /// the metrics).
    pub(super) fn name(&mut self, raw: &Spanned<String>, key: String) -> Option<String> {
        let name = raw.get_ref();
        if name.starts_with('_') {
            let message = format!("invalid name \"{name}\": names starting with '_' are reserved");
            return self.fail(raw, key, message);
        }
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            let message = format!(
                "invalid name \"{name}\": use letters, digits, '_', '.' and '-' (at least one)"
            );
            return self.fail(raw, key, message);
        }
        Some(name.clone())
    }

    /// The `name` of every table of the array `table` (a `kind` in messages): each required,
    /// and unique; `None` where missing, not a string or taken already (reported).
    pub(super) fn table_names<'r, T>(
        &mut self,
        tables: &'r [At<T>],
        table: &str,
        kind: &str,
        name: impl Fn(&'r T) -> Option<&'r Typed<String>>,
    ) -> Vec<Option<&'r Spanned<String>>> {
        let names: Vec<Option<&Spanned<String>>> = (tables.iter().enumerate())
            .map(|(i, t)| {
                let prefix = format!("{table}[{i}]");
                self.required(name(t.get_ref()), (t, &prefix), "name")
            })
            .collect();
        let present = names
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((i, (*n)?)));
        self.unique_names(kind, table, present);
        names
    }

    /// Reports every name that an earlier entry of the same table already took; `names`
    /// are the entries' indices and the names that are strings.
    pub(super) fn unique_names<'r>(
        &mut self,
        kind: &str,
        table: &str,
        names: impl Iterator<Item = (usize, &'r Spanned<String>)>,
    ) {
        let mut first_lines: HashMap<&str, usize> = HashMap::new();
        for (i, name) in names {
            let line = self.line_of(name.span().start);
            match first_lines.get(name.get_ref().as_str()) {
                Some(first) => {
                    let message = format!(
                        "duplicate {kind} name \"{}\" (first defined on line {first})",
                        name.get_ref()
                    );
                    self.error(name, format!("{table}[{i}].name"), message);
                }
                None => {
                    first_lines.insert(name.get_ref(), line);
                }
            }
        }
    }

    /// `ip:port`, or `host:port` resolved now (the first IPv4 address, else the first).
    pub(super) fn address(&mut self, raw: &Spanned<String>, key: String) -> Option<SocketAddr> {
        match resolve(raw.get_ref()) {
            Ok(addr) => Some(addr),
            Err(message) => self.fail(raw, key, message),
        }
    }

    /// An endpoint's `ip:port`, or `host:port` looked up now with `[resolver]`; an address
    /// the running config uses for the host is kept while the host still has it. Names are
    /// not looked up while `[resolver]` is invalid (`None`, the error is reported there).
    pub(super) fn endpoint_address(
        &mut self,
        raw: &Spanned<String>,
        key: String,
    ) -> Option<SocketAddr> {
        let (host, port) = match host_port(raw.get_ref()) {
            Ok(Ok(addr)) => return Some(addr),
            Ok(Err(named)) => named,
            Err(message) => return self.fail(raw, key, message),
        };
        let resolver = self.resolver.as_ref()?;
        let lower = host.to_ascii_lowercase();
        // Once per name and load: 10,000 upstreams may share a name.
        let found = match self.looked_up.get(&lower) {
            Some(found) => found.clone(),
            None => {
                let found = crate::resolve::lookup(host, resolver);
                self.looked_up.insert(lower.clone(), found.clone());
                found
            }
        };
        let keep = self
            .running_addresses
            .get(lower.as_str())
            .map_or(&[][..], Vec::as_slice);
        match address_of(host, port, found, keep) {
            Ok(addr) => Some(addr),
            Err(message) => self.fail(raw, key, message),
        }
    }

    /// A file path: any non-empty string.
    pub(super) fn path(&mut self, raw: &Spanned<String>, key: String) -> Option<PathBuf> {
        if raw.get_ref().is_empty() {
            return self.fail(raw, key, "must not be empty");
        }
        Some(PathBuf::from(raw.get_ref()))
    }

    /// A file the config names, read at load: a non-empty path, resolved from the config
    /// file's folder when relative.
    pub(super) fn file(&mut self, raw: &Spanned<String>, key: String) -> Option<PathBuf> {
        let path = self.path(raw, key)?;
        Some(self.base.join(path))
    }

    /// An integer in `min..=max`, or `default` when absent.
    pub(super) fn int(
        &mut self,
        raw: Option<&Typed<i64>>,
        key: String,
        default: i64,
        (min, max): (i64, i64),
    ) -> Option<i64> {
        let Some(raw) = self.optional(raw, &key)? else {
            return Some(default);
        };
        let n = *raw.get_ref();
        if n < min || n > max {
            let message = if max == i64::MAX {
                format!("must be at least {min}, got {n}")
            } else {
                format!("must be between {min} and {max}, got {n}")
            };
            return self.fail(raw, key, message);
        }
        Some(n)
    }

    /// A duration string such as `"5s"`, or `default` when absent.
    pub(super) fn duration(
        &mut self,
        raw: Option<&Typed<String>>,
        key: String,
        default: Duration,
    ) -> Option<Duration> {
        let Some(raw) = self.optional(raw, &key)? else {
            return Some(default);
        };
        match parse_duration(raw.get_ref()) {
            Ok(duration) => Some(duration),
            Err(message) => self.fail(raw, key, message),
        }
    }

    /// A size of at least `min` bytes, or `default` when absent.
    pub(super) fn size(
        &mut self,
        raw: Option<&Typed<RawSize>>,
        key: String,
        default: u64,
        min: u64,
    ) -> Option<u64> {
        let Some(raw) = self.optional(raw, &key)? else {
            return Some(default);
        };
        match parse_size(&raw.get_ref().0) {
            Ok(n) if n < min => {
                self.fail(raw, key, format!("must be at least {min} bytes, got {n}"))
            }
            Ok(n) => Some(n),
            Err(message) => self.fail(raw, key, message),
        }
    }

    /// A header or method token (RFC 9110 `tchar`s).
    pub(super) fn token(
        &mut self,
        raw: &Spanned<String>,
        key: String,
        what: &str,
    ) -> Option<String> {
        if is_token(raw.get_ref()) {
            return Some(raw.get_ref().clone());
        }
        let message = format!(
            "\"{}\" is not a valid {what} (an HTTP token)",
            raw.get_ref()
        );
        self.fail(raw, key, message)
    }

    /// Text that ends up in a header or status line: no CR, LF or NUL.
    pub(super) fn header_safe(&mut self, raw: &Spanned<String>, key: String) -> Option<String> {
        if raw.get_ref().contains(['\r', '\n', '\0']) {
            return self.fail(raw, key, "must not contain CR, LF or NUL characters");
        }
        Some(raw.get_ref().clone())
    }
}

/// RFC 9110 token: one or more of ALPHA, DIGIT and ``!#$%&'*+-.^_`|~``.
pub(super) fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// `ip:port`, or `host:port` looked up now with the system's resolver.
fn resolve(text: &str) -> Result<SocketAddr, String> {
    match host_port(text)? {
        Ok(addr) => Ok(addr),
        Err((host, port)) => {
            let found = crate::resolve::lookup(host, &Resolver::default());
            address_of(host, port, found, &[])
        }
    }
}

/// `ip:port` as written (`Ok`), or the host and port of `host:port` (`Err`).
fn host_port(text: &str) -> Result<Result<SocketAddr, (&str, u16)>, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Ok(addr));
    }
    let expected = || format!("\"{text}\" is not an address; expected ip:port or host:port");
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port = port.parse::<u16>().map_err(|_| expected())?;
    if host.is_empty() || host.contains(':') {
        return Err(expected());
    }
    Ok(Err((host, port)))
}

/// `host:port` with one of the addresses `host` was found to have (preferring those in
/// `keep`), or why there is none.
fn address_of(
    host: &str,
    port: u16,
    found: Result<Vec<IpAddr>, String>,
    keep: &[IpAddr],
) -> Result<SocketAddr, String> {
    let found = found.map_err(|e| format!("cannot resolve host \"{host}\": {e}"))?;
    let ip =
        choose(&found, keep).ok_or_else(|| format!("host \"{host}\" resolves to no address"))?;
    Ok(SocketAddr::new(ip, port))
}

/// A route host: a host name, or `*.` followed by one; lower-cased, without port.
pub(super) fn host_match(text: &str) -> Result<HostMatch, String> {
    if text.contains(':') {
        return Err(format!(
            "\"{text}\" is not a host name; give the host without a port (the port is ignored when matching)"
        ));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(suffix) = lower.strip_prefix("*.") {
        host_name(suffix).map_err(|why| format!("invalid wildcard host \"{text}\": {why}"))?;
        return Ok(HostMatch::Wildcard(format!(".{suffix}")));
    }
    if lower.contains('*') {
        return Err(format!(
            "invalid host \"{text}\": '*' is allowed only as the whole first label, as in \"*.example.com\""
        ));
    }
    host_name(&lower).map_err(|why| format!("invalid host \"{text}\": {why}"))?;
    Ok(HostMatch::Exact(lower))
}

/// Checks a lower-case DNS host name (RFC 1123 labels).
pub(super) fn host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > 253 {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > 63 {
            return Err("a label is longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("labels may hold only letters, digits and '-'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        assert!(is_token("GET"));
        assert!(is_token("x-env"));
        assert!(is_token("M-SEARCH"));
        assert!(!is_token(""));
        assert!(!is_token("x env"));
        assert!(!is_token("x:env"));
        assert!(!is_token("é"));
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host_match("API.Example.com"),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            host_match("*.Example.com"),
            Ok(HostMatch::Wildcard(".example.com".into()))
        );
        assert_eq!(
            host_match("127.0.0.1"),
            Ok(HostMatch::Exact("127.0.0.1".into()))
        );
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a-.com",
            "a_b.com",
            "ex ample.com",
            "bücher.de",
            "a.com.",
        ] {
            assert!(host_match(bad).is_err(), "{bad}");
        }
        assert!(host_match(&"a".repeat(64)).unwrap_err().contains("63"));
    }

    #[test]
    fn wildcard_only_as_whole_first_label() {
        for bad in ["*", "*.", "*example.com", "a.*.com", "*.*.com", "api.*"] {
            assert!(host_match(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_with_port_is_rejected() {
        assert!(host_match("api.example.com:8080")
            .unwrap_err()
            .contains("without a port"));
    }

    #[test]
    fn addresses() {
        assert_eq!(resolve("127.0.0.1:80"), Ok("127.0.0.1:80".parse().unwrap()));
        assert_eq!(resolve("[::1]:80"), Ok("[::1]:80".parse().unwrap()));
        assert_eq!(
            resolve("localhost:9000"),
            Ok("127.0.0.1:9000".parse().unwrap())
        );
        for bad in [
            "127.0.0.1",
            "127.0.0.1:",
            ":80",
            "127.0.0.1:99999",
            "::1:80",
            "host",
        ] {
            assert!(
                resolve(bad)
                    .unwrap_err()
                    .contains("expected ip:port or host:port"),
                "{bad}"
            );
        }
    }

    #[test]
    fn unresolvable_host_is_an_error() {
        let err = resolve("no-such-host.invalid:80").unwrap_err();
        assert!(
            err.starts_with("cannot resolve host \"no-such-host.invalid\""),
            "{err}"
        );
    }
}
