//! Numbers and addresses written into heads without `core::fmt`.
//!
//! Every forwarded request carries the client's address (`x-forwarded-for`) and most carry a
//! `content-length`; through `write!` those two cost about 1,800 instructions a request
//! (callgrind), a tenth of the shard's work. These write the same text directly.

use std::net::{IpAddr, Ipv4Addr};

/// Appends `n` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `ip` as `Display` writes it: dotted quad, or the RFC 5952 form for IPv6 (through
/// `fmt`, which gets the zero-run compression right; IPv6 clients are the rarer case).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => push_ipv4(out, v4),
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

fn push_ipv4(out: &mut Vec<u8>, ip: Ipv4Addr) {
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    out.extend_from_slice(&text[..len]);
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"x".to_vec();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_match_display() {
        for n in [0, 1, 9, 10, 99, 100, 4096, 1 << 32, u64::MAX - 1, u64::MAX] {
            assert_eq!(text(|o| push_u64(o, n)), format!("x{n}"));
        }
    }

    #[test]
    fn every_ipv4_octet_matches_display() {
        for a in 0..=255u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(a, 255 - a, a / 3, 7));
            assert_eq!(text(|o| push_ip(o, ip)), format!("x{ip}"));
        }
        let ip = IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255));
        assert_eq!(text(|o| push_ip(o, ip)), "x255.255.255.255");
    }

    #[test]
    fn ipv6_matches_display() {
        for ip in [
            Ipv6Addr::LOCALHOST,
            Ipv6Addr::UNSPECIFIED,
            "2001:db8::1:0:0:1".parse().unwrap(),
            "::ffff:10.0.0.1".parse().unwrap(),
        ] {
            assert_eq!(text(|o| push_ip(o, IpAddr::V6(ip))), format!("x{ip}"));
        }
    }
}
