//! The PROXY protocol (HAProxy's, v1 text and v2 binary): a load balancer in front of the
//! gateway starts each connection with a header naming the client it accepted. The header is
//! read before anything else (before TLS), exactly to its end, so that the bytes after it
//! stay in the socket for the HTTP or TLS layer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRentExt;
use monoio::net::TcpStream;

/// The v2 signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Longest v1 line, CRLF included (the specification's limit).
const V1_MAX: usize = 107;
/// Largest v2 address block (addresses and TLVs) accepted. Balancers send a few hundred
/// bytes at most.
const V2_MAX_BLOCK: usize = 2048;

/// What a header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// The client's address.
    Proxied(SocketAddr),
    /// No client address (v1 `UNKNOWN`, v2 `LOCAL` such as a balancer's own health check, or
    /// an address family other than TCP over IPv4/IPv6): the connection's peer stands.
    Local,
}

/// A v1 line, from `PROXY ` to its CRLF.
pub fn parse_v1(line: &[u8]) -> Result<Header, &'static str> {
    let line = line.strip_suffix(b"\r\n").ok_or("v1 header without CRLF")?;
    let line = std::str::from_utf8(line).map_err(|_| "v1 header is not ASCII")?;
    let mut words = line.split(' ');
    if words.next() != Some("PROXY") {
        return Err("not a PROXY header");
    }
    let family = words.next().ok_or("v1 header without a protocol")?;
    if family == "UNKNOWN" {
        return Ok(Header::Local);
    }
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return Err("v1 header needs 4 fields after the protocol");
    };
    let parse_ip = |text: &str| -> Result<IpAddr, &'static str> {
        match family {
            "TCP4" => text
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| "bad TCP4 address"),
            "TCP6" => text
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| "bad TCP6 address"),
            _ => Err("v1 protocol is not TCP4, TCP6 or UNKNOWN"),
        }
    };
    let parse_port = |text: &str| -> Result<u16, &'static str> {
        if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err("bad v1 port");
        }
        text.parse().map_err(|_| "bad v1 port")
    };
    let src = parse_ip(src)?;
    parse_ip(dst)?;
    let sport = parse_port(sport)?;
    parse_port(dport)?;
    Ok(Header::Proxied(SocketAddr::new(src, sport)))
}

/// The length of the address block a v2 header's 16 fixed bytes announce.
pub fn v2_block_len(fixed: &[u8; 16]) -> Result<usize, &'static str> {
    if fixed[..12] != V2_SIGNATURE {
        return Err("bad v2 signature");
    }
    if fixed[12] >> 4 != 2 {
        return Err("v2 header of another version");
    }
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if len > V2_MAX_BLOCK {
        return Err("v2 address block too large");
    }
    Ok(len)
}

/// A v2 header: its 16 fixed bytes and the address block after them.
pub fn parse_v2(fixed: &[u8; 16], block: &[u8]) -> Result<Header, &'static str> {
    let len = v2_block_len(fixed)?;
    if block.len() != len {
        return Err("v2 address block of the wrong length");
    }
    match fixed[12] & 0x0f {
        0 => return Ok(Header::Local),
        1 => {}
        _ => return Err("v2 command is neither LOCAL nor PROXY"),
    }
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    match fixed[13] {
        // TCP over IPv4: source, destination, source port, destination port.
        0x11 if len >= 12 => {
            let ip = Ipv4Addr::new(block[0], block[1], block[2], block[3]);
            Ok(Header::Proxied(SocketAddr::new(IpAddr::V4(ip), port(8))))
        }
        0x21 if len >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[..16]);
            let ip = Ipv6Addr::from(octets);
            Ok(Header::Proxied(SocketAddr::new(IpAddr::V6(ip), port(32))))
        }
        0x11 | 0x21 => Err("v2 address block too short for its family"),
        // UDP, Unix sockets, unspecified: nothing the gateway can use as a client address.
        _ => Ok(Header::Local),
    }
}

/// Reads one header from the start of `stream`, exactly to its end.
pub async fn read_header(stream: &mut TcpStream) -> Result<Header, &'static str> {
    let start = read_exactly(stream, Vec::with_capacity(16), 8).await?;
    if start.starts_with(b"PROXY ") {
        let line = read_v1_line(stream, start).await?;
        return parse_v1(&line);
    }
    if start[..] != V2_SIGNATURE[..8] {
        return Err("connection does not start with a PROXY header");
    }
    let fixed = read_exactly(stream, start, 8).await?;
    let fixed: [u8; 16] = fixed[..].try_into().map_err(|_| "short v2 header")?;
    let len = v2_block_len(&fixed)?;
    let block = read_exactly(stream, Vec::with_capacity(len), len).await?;
    parse_v2(&fixed, &block)
}

/// Appends exactly `n` bytes from `stream` to `buf`.
async fn read_exactly(
    stream: &mut TcpStream,
    mut buf: Vec<u8>,
    n: usize,
) -> Result<Vec<u8>, &'static str> {
    if n == 0 {
        return Ok(buf);
    }
    let at = buf.len();
    buf.reserve(n);
    let (res, slice) = stream.read_exact(buf.slice_mut(at..at + n)).await;
    let buf = slice.into_inner();
    match res {
        Ok(_) => Ok(buf),
        Err(_) => Err("connection ended inside the PROXY header"),
    }
}

/// The rest of a v1 line after its first bytes (`start`). The balancer writes the header in
/// one go, so it is normally all in the socket: a peek finds its end and one read takes it;
/// a line that arrives in pieces is read a byte at a time.
async fn read_v1_line(stream: &mut TcpStream, mut line: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    let mut peeked = [0u8; V1_MAX];
    let want = V1_MAX - line.len();
    // SAFETY: recv(2) writes at most `want` bytes into `peeked`, which has room for them;
    // MSG_PEEK leaves them in the socket and MSG_DONTWAIT keeps it from blocking.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            peeked.as_mut_ptr().cast(),
            want,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n > 0 {
        let peeked = &peeked[..n as usize];
        if let Some(end) = peeked.windows(2).position(|w| w == b"\r\n") {
            return read_exactly(stream, line, end + 2).await;
        }
    }
    while !line.ends_with(b"\r\n") {
        if line.len() >= V1_MAX {
            return Err("v1 header longer than 107 bytes");
        }
        line = read_exactly(stream, line, 1).await?;
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, block: &[u8]) -> ([u8; 16], Vec<u8>) {
        let mut fixed = [0u8; 16];
        fixed[..12].copy_from_slice(&V2_SIGNATURE);
        fixed[12] = 0x20 | command;
        fixed[13] = family;
        fixed[14..16].copy_from_slice(&(block.len() as u16).to_be_bytes());
        (fixed, block.to_vec())
    }

    #[test]
    fn v1_lines() {
        let ok = |line: &str| parse_v1(line.as_bytes());
        assert_eq!(
            ok("PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\r\n"),
            Ok(Header::Proxied("198.51.100.7:4711".parse().unwrap()))
        );
        assert_eq!(
            ok("PROXY TCP6 2001:db8::1 2001:db8::2 4711 443\r\n"),
            Ok(Header::Proxied("[2001:db8::1]:4711".parse().unwrap()))
        );
        assert_eq!(ok("PROXY UNKNOWN\r\n"), Ok(Header::Local));
        assert_eq!(
            ok("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"),
            Ok(Header::Local)
        );
        for bad in [
            "PROXY TCP4 198.51.100.7 10.0.0.1 4711 443\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 4711\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 4711 443 9\r\n",
            "PROXY TCP4 2001:db8::1 10.0.0.1 4711 443\r\n",
            "PROXY TCP6 198.51.100.7 ::1 4711 443\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 65536 443\r\n",
            "PROXY TCP4 198.51.100.7 10.0.0.1 +1 443\r\n",
            "PROXY UDP4 198.51.100.7 10.0.0.1 1 2\r\n",
            "PROXY  TCP4 198.51.100.7 10.0.0.1 1 2\r\n",
        ] {
            assert!(ok(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn v2_headers() {
        let mut block = vec![198, 51, 100, 7, 10, 0, 0, 1];
        block.extend_from_slice(&4711u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        let (fixed, b) = v2(1, 0x11, &block);
        assert_eq!(
            parse_v2(&fixed, &b),
            Ok(Header::Proxied("198.51.100.7:4711".parse().unwrap()))
        );
        // TLVs after the addresses are skipped.
        let mut with_tlv = block.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']);
        let (fixed, b) = v2(1, 0x11, &with_tlv);
        assert!(matches!(parse_v2(&fixed, &b), Ok(Header::Proxied(_))));
        let mut v6 = Vec::new();
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0u8; 16]);
        v6.extend_from_slice(&4711u16.to_be_bytes());
        v6.extend_from_slice(&443u16.to_be_bytes());
        let (fixed, b) = v2(1, 0x21, &v6);
        assert_eq!(
            parse_v2(&fixed, &b),
            Ok(Header::Proxied("[2001:db8::1]:4711".parse().unwrap()))
        );
        let (fixed, b) = v2(0, 0x11, &block);
        assert_eq!(parse_v2(&fixed, &b), Ok(Header::Local));
        let (fixed, b) = v2(1, 0x31, &[0u8; 216]);
        assert_eq!(parse_v2(&fixed, &b), Ok(Header::Local));
        // Faults.
        let (fixed, b) = v2(1, 0x11, &block[..8]);
        assert!(parse_v2(&fixed, &b).is_err());
        let (fixed, b) = v2(2, 0x11, &block);
        assert!(parse_v2(&fixed, &b).is_err());
        let (mut fixed, b) = v2(1, 0x11, &block);
        fixed[12] = 0x11;
        assert!(parse_v2(&fixed, &b).is_err());
        let (mut fixed, _) = v2(1, 0x11, &block);
        fixed[0] = b'X';
        assert!(v2_block_len(&fixed).is_err());
        let (mut fixed, _) = v2(1, 0x11, &block);
        fixed[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert!(v2_block_len(&fixed).is_err());
    }
}
