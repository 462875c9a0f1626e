//! The target of a load: an `http://` or `https://` URL turned into an address and the
//! request bytes sent on every request; and the command-line value parsers the subcommands
//! share.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `https://`: TLS over the connection.
    pub tls: bool,
    /// The URL's host, without brackets or port (the TLS server name by default).
    pub host: String,
    /// The whole request, head and body, written as is for every request.
    pub request: Vec<u8>,
}

impl Target {
    /// `url` is `http[s]://HOST[:PORT][/PATH[?QUERY]]`; with `body` > 0 the request is a
    /// POST with that many bytes, else a GET.
    pub fn parse(url: &str, body: usize) -> Result<Target> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            let rest = url
                .strip_prefix("http://")
                .with_context(|| format!("{url}: only http:// and https:// URLs are supported"))?;
            (false, rest)
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            bail!("{url}: expected http://HOST[:PORT]/PATH");
        }
        let bare_host = authority.ends_with(']') || !authority.contains(':');
        let with_port = if bare_host {
            format!("{authority}:{}", if tls { 443 } else { 80 })
        } else {
            authority.to_string()
        };
        let host = match with_port.rsplit_once(':') {
            Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
            None => &with_port,
        }
        .to_string();
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{url}: {authority} has no address"))?;
        Ok(Target {
            addr,
            tls,
            host,
            request: request(authority, path, body),
        })
    }
}

impl Target {
    /// Adds `Name: value` header lines to every request (credentials for an authenticated
    /// route, say).
    pub fn add_headers(&mut self, headers: &[String]) -> Result<()> {
        let end = self
            .request
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .context("request without a head")?
            + 2;
        let mut lines = Vec::new();
        for h in headers {
            if !h.contains(':') || h.contains(['\r', '\n']) {
                bail!("--header {h:?}: expected \"Name: value\"");
            }
            lines.extend_from_slice(h.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        self.request.splice(end..end, lines);
        Ok(())
    }
}

fn request(host: &str, path: &str, body: usize) -> Vec<u8> {
    let mut r = if body > 0 {
        format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/octet-stream\r\ncontent-length: {body}\r\n\r\n"
        )
    } else {
        format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n")
    }
    .into_bytes();
    r.extend(std::iter::repeat_n(b'x', body));
    r
}

/// `"10s"`, `"500ms"`, `"2m"`, `"1.5s"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => return Err(format!("{text:?}: a unit is needed (ms, s, m)")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: not a number"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?}: out of range"))
}

/// CPU numbers to pin threads to, in order (one value on the command line, not a list of
/// values, hence the wrapper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cores(pub Vec<usize>);

/// `"0"`, `"0,2"`, `"0-3"`, `"0-1,4"`.
pub fn parse_cores(text: &str) -> Result<Cores, String> {
    let mut cores = Vec::new();
    for part in text.split(',') {
        let bad = || format!("{text:?}: expected core numbers like 0,2 or 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                cores.extend(a..=b);
            }
            None => cores.push(part.trim().parse().map_err(|_| bad())?),
        }
    }
    Ok(Cores(cores))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_an_address_and_a_request() {
        let t = Target::parse("http://127.0.0.1:8080/a/b?c=1", 0).expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8080".parse().expect("literal"));
        assert_eq!(
            t.request,
            b"GET /a/b?c=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n\r\n".to_vec()
        );
        let mut t = Target::parse("http://127.0.0.1:8080/a/b?c=1", 0).expect("valid");
        t.add_headers(&["x-api-key: k".into(), "x-b: 2".into()])
            .unwrap();
        assert_eq!(
            t.request,
            b"GET /a/b?c=1 HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nx-api-key: k\r\nx-b: 2\r\n\r\n"
                .to_vec()
        );
        assert!(t.add_headers(&["no-colon".into()]).is_err());
        let t = Target::parse("http://127.0.0.1", 3).expect("valid");
        assert_eq!(t.addr.port(), 80);
        assert!(t
            .request
            .starts_with(b"POST / HTTP/1.1\r\nhost: 127.0.0.1\r\n"));
        assert!(t.request.ends_with(b"content-length: 3\r\n\r\nxxx"));
        let t = Target::parse("http://[::1]:9/", 0).expect("valid");
        assert_eq!(t.addr, "[::1]:9".parse().expect("literal"));
        assert!(!t.tls);
        assert_eq!(t.host, "::1");
        let t = Target::parse("https://localhost/", 0).expect("valid");
        assert!(t.tls);
        assert_eq!((t.host.as_str(), t.addr.port()), ("localhost", 443));
        let t = Target::parse("https://127.0.0.1:8443/", 0).expect("valid");
        assert_eq!((t.host.as_str(), t.addr.port()), ("127.0.0.1", 8443));
        assert!(Target::parse("ftp://127.0.0.1/", 0).is_err());
        assert!(Target::parse("http:///x", 0).is_err());
    }

    #[test]
    fn durations_and_cores() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("10h").is_err());
        assert_eq!(parse_cores("1"), Ok(Cores(vec![1])));
        assert_eq!(parse_cores("0-2,5"), Ok(Cores(vec![0, 1, 2, 5])));
        assert!(parse_cores("2-1").is_err());
        assert!(parse_cores("a").is_err());
    }
}
