//! Who the client is: the connection's peer, or, when the peer is a trusted proxy, the
//! address it says it forwarded for (`X-Forwarded-For`, read from the right: the nearest
//! address that is not itself a trusted proxy).

use std::net::{IpAddr, SocketAddr};

use ringway_config::IpNet;

use crate::http::h1::{HeaderKind, HeaderRef};

/// The client address of a request from `peer`, and whether `peer` is trusted (its
/// forwarding headers are then extended rather than replaced).
pub fn client_address(
    trusted: &[IpNet],
    peer: IpAddr,
    src: &[u8],
    headers: &[HeaderRef],
) -> (IpAddr, bool) {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if trusted.is_empty() || !is_trusted(peer) {
        return (peer, false);
    }
    // Every X-Forwarded-For field, in order, is one list: walk it from the right.
    let mut client = peer;
    for h in headers
        .iter()
        .rev()
        .filter(|h| h.kind == HeaderKind::XForwardedFor)
    {
        for element in h.value.get(src).rsplit(|&b| b == b',') {
            let element = element.trim_ascii();
            if element.is_empty() {
                continue;
            }
            // What cannot be read as an address ends the walk at the last hop that could.
            let Some(ip) = parse_forwarded_ip(element) else {
                return (client, true);
            };
            client = ip;
            if !is_trusted(ip) {
                return (client, true);
            }
        }
    }
    (client, true)
}

/// An `X-Forwarded-For` element: an address, possibly with a port (`1.2.3.4:80`,
/// `[2001:db8::1]:80`).
fn parse_forwarded_ip(element: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(element).ok()?;
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::h1::{parse_request, RequestLimits};

    fn client(trusted: &[&str], peer: &str, xff: &[&str]) -> (String, bool) {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| IpNet::parse(t).unwrap()).collect();
        let mut req = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        for value in xff {
            req.push_str(&format!("X-Forwarded-For: {value}\r\n"));
        }
        req.push_str("\r\n");
        let mut headers = Vec::new();
        let limits = RequestLimits {
            max_request_line: 1024,
            max_head: 8192,
        };
        parse_request(req.as_bytes(), &limits, &mut headers)
            .unwrap()
            .unwrap();
        let (ip, trusted) =
            client_address(&trusted, peer.parse().unwrap(), req.as_bytes(), &headers);
        (ip.to_string(), trusted)
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        assert_eq!(
            client(&[], "203.0.113.9", &["1.1.1.1"]),
            ("203.0.113.9".into(), false)
        );
        assert_eq!(
            client(&["10.0.0.0/8"], "203.0.113.9", &["1.1.1.1"]),
            ("203.0.113.9".into(), false)
        );
    }

    #[test]
    fn trusted_peers_are_walked_through_from_the_right() {
        let lb = ["10.0.0.0/8"];
        assert_eq!(
            client(&lb, "10.0.0.5", &["198.51.100.7"]),
            ("198.51.100.7".into(), true)
        );
        // A client's forged entries sit left of what the trusted proxies added.
        assert_eq!(
            client(&lb, "10.0.0.5", &["6.6.6.6, 198.51.100.7, 10.1.1.1"]),
            ("198.51.100.7".into(), true)
        );
        // Several fields form one list.
        assert_eq!(
            client(&lb, "10.0.0.5", &["6.6.6.6", "198.51.100.7", "10.1.1.1"]),
            ("198.51.100.7".into(), true)
        );
        // Ports and brackets are allowed; IPv4-mapped addresses read as IPv4.
        assert_eq!(
            client(&lb, "10.0.0.5", &["198.51.100.7:4711"]),
            ("198.51.100.7".into(), true)
        );
        assert_eq!(
            client(&lb, "10.0.0.5", &["[2001:db8::1]:443"]),
            ("2001:db8::1".into(), true)
        );
        assert_eq!(
            client(&lb, "::ffff:10.0.0.5", &["::ffff:198.51.100.7"]),
            ("198.51.100.7".into(), true)
        );
        // No header, or nothing but trusted hops: the leftmost known hop.
        assert_eq!(client(&lb, "10.0.0.5", &[]), ("10.0.0.5".into(), true));
        assert_eq!(
            client(&lb, "10.0.0.5", &["10.9.9.9"]),
            ("10.9.9.9".into(), true)
        );
        // Garbage ends the walk at the last readable hop.
        assert_eq!(
            client(&lb, "10.0.0.5", &["198.51.100.7, unknown, 10.2.2.2"]),
            ("10.2.2.2".into(), true)
        );
    }
}
