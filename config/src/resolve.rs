//! Looking up an endpoint's host name: at load (validation), and again every
//! `resolve_interval` while a config runs (the control side's resolver thread).
//!
//! With `[resolver] servers`, each server is asked in turn over UDP (an A query, then AAAA
//! when the name has no IPv4 address) until one answers; the name is asked as written, as an
//! absolute name (no search domains). Without, the system's resolver (`getaddrinfo`) answers.
//! Both block: never call these on a shard.
//!
//! Which address an endpoint uses when a name has several is [`choose`]'s rule: the one it
//! already uses while the name still has it (so that a DNS server that rotates its answers
//! does not move traffic at every lookup), else the first IPv4 address, else the first.

use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use crate::model::Resolver;

/// Largest DNS answer read (what the query offers through EDNS).
const MAX_ANSWER: u16 = 1232;

/// Every address `host` has now, in the order the resolver gave them, without duplicates;
/// an error saying why there are none.
pub fn lookup(host: &str, resolver: &Resolver) -> Result<Vec<IpAddr>, String> {
    let mut found = if resolver.servers.is_empty() {
        system(host)?
    } else {
        servers(host, &resolver.servers, resolver.timeout)?
    };
    let mut seen = Vec::with_capacity(found.len());
    found.retain(|ip| {
        let new = !seen.contains(ip);
        seen.push(*ip);
        new
    });
    if found.is_empty() {
        return Err("no address".into());
    }
    Ok(found)
}

/// The address to use out of `found`: the first of `found` that is in `keep` (the addresses
/// in use now), else the first IPv4 address ("localhost" often lists ::1 first while local
/// services listen on 127.0.0.1), else the first.
pub fn choose(found: &[IpAddr], keep: &[IpAddr]) -> Option<IpAddr> {
    found
        .iter()
        .find(|ip| keep.contains(ip))
        .or_else(|| found.iter().find(|ip| ip.is_ipv4()))
        .or(found.first())
        .copied()
}

fn system(host: &str) -> Result<Vec<IpAddr>, String> {
    let found = (host, 0)
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .map(|a| a.ip())
        .collect();
    Ok(found)
}

/// What one server said about one record type.
enum Answer {
    /// The addresses of the type asked (maybe none: the name exists without them).
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN: the name does not exist.
    NoSuchName,
}

fn servers(host: &str, servers: &[SocketAddr], timeout: Duration) -> Result<Vec<IpAddr>, String> {
    let mut name = Name::from_ascii(host).map_err(|e| format!("not a DNS name: {e}"))?;
    name.set_fqdn(true);
    let mut failures = Vec::new();
    for &server in servers {
        let answer = ask(server, &name, RecordType::A, timeout).and_then(|a| match a {
            Answer::Addresses(found) if found.is_empty() => {
                ask(server, &name, RecordType::AAAA, timeout)
            }
            other => Ok(other),
        });
        match answer {
            Ok(Answer::Addresses(found)) if !found.is_empty() => return Ok(found),
            Ok(Answer::Addresses(_)) => {
                return Err(format!("{server} has no A or AAAA record of it"))
            }
            // A definite answer: another server would say the same.
            Ok(Answer::NoSuchName) => return Err(format!("{server}: no such name (NXDOMAIN)")),
            Err(why) => failures.push(format!("{server}: {why}")),
        }
    }
    Err(failures.join("; "))
}

/// One query of `kind` for `name` to `server`, over UDP from a fresh port, answered within
/// `timeout`.
fn ask(
    server: SocketAddr,
    name: &Name,
    kind: RecordType,
    timeout: Duration,
) -> Result<Answer, String> {
    let any: IpAddr = match server {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((any, 0)).map_err(|e| e.to_string())?;
    // Connected: datagrams from anyone but the server are not received.
    socket.connect(server).map_err(|e| e.to_string())?;
    let id = random_id();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.metadata.recursion_desired = true;
    query.add_query(Query::query(name.clone(), kind));
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_ANSWER);
    query.edns = Some(edns);
    let bytes = query.to_vec().map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    socket.send(&bytes).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(MAX_ANSWER)];
    let no_answer = || format!("no answer within {timeout:?}");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(no_answer());
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(no_answer())
            }
            Err(e) => return Err(e.to_string()),
        };
        // Anything but the answer to this query (a late answer to an earlier one, garbage)
        // is skipped: the answer may still come.
        let Ok(reply) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
            continue;
        }
        match reply.metadata.response_code {
            ResponseCode::NoError => {}
            ResponseCode::NXDomain => return Ok(Answer::NoSuchName),
            code => return Err(format!("answered {code}")),
        }
        let found: Vec<IpAddr> = reply
            .answers
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) if kind == RecordType::A => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) if kind == RecordType::AAAA => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect();
        if found.is_empty() && reply.metadata.truncation {
            return Err("the answer was truncated".into());
        }
        return Ok(Answer::Addresses(found));
    }
}

/// A query id nobody can guess from the previous one (with the fresh source port, what
/// stands between a spoofed answer and the endpoint list).
fn random_id() -> u16 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish() as u16
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hickory_proto::rr::rdata::{A, AAAA};
    use hickory_proto::rr::Record;

    use super::*;

    /// How the test server answers.
    #[derive(Clone)]
    pub(crate) enum Says {
        Ipv4(Vec<Ipv4Addr>),
        Ipv6Only(Ipv6Addr),
        Code(ResponseCode),
        Nothing,
    }

    /// A DNS server on 127.0.0.1 answering every query as `says`; counts queries.
    pub(crate) fn server(says: Says) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let counted = queries.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                counted.fetch_add(1, Ordering::SeqCst);
                let query = Message::from_vec(&buf[..n]).unwrap();
                let q = query.queries[0].clone();
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                reply.add_query(q.clone());
                match &says {
                    Says::Ipv4(ips) if q.query_type() == RecordType::A => {
                        for ip in ips {
                            reply.add_answer(Record::from_rdata(
                                q.name().clone(),
                                5,
                                RData::A(A(*ip)),
                            ));
                        }
                    }
                    Says::Ipv6Only(ip) if q.query_type() == RecordType::AAAA => {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            5,
                            RData::AAAA(AAAA(*ip)),
                        ));
                    }
                    Says::Code(code) => reply.metadata.response_code = *code,
                    Says::Nothing => continue,
                    _ => {}
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), from);
            }
        });
        (addr, queries)
    }

    fn resolver(servers: &[SocketAddr]) -> Resolver {
        Resolver {
            servers: servers.to_vec(),
            timeout: Duration::from_millis(300),
        }
    }

    #[test]
    fn a_records_in_order_without_duplicates() {
        let ips = [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 2]].map(Ipv4Addr::from);
        let (dns, _) = server(Says::Ipv4(ips.to_vec()));
        let found = lookup("backend.test", &resolver(&[dns])).unwrap();
        assert_eq!(found, [IpAddr::from([127, 0, 0, 2]), [127, 0, 0, 3].into()]);
    }

    #[test]
    fn aaaa_when_there_is_no_a() {
        let (dns, queries) = server(Says::Ipv6Only(Ipv6Addr::LOCALHOST));
        let found = lookup("v6.test", &resolver(&[dns])).unwrap();
        assert_eq!(found, [IpAddr::from(Ipv6Addr::LOCALHOST)]);
        assert_eq!(queries.load(Ordering::SeqCst), 2, "A, then AAAA");
    }

    #[test]
    fn failures_say_why_and_the_next_server_is_asked() {
        let (failing, _) = server(Says::Code(ResponseCode::ServFail));
        let (silent, _) = server(Says::Nothing);
        let err = lookup("x.test", &resolver(&[failing, silent])).unwrap_err();
        assert_eq!(
            err,
            format!("{failing}: answered Server Failure; {silent}: no answer within 300ms")
        );
        let (good, _) = server(Says::Ipv4(vec![Ipv4Addr::LOCALHOST]));
        let found = lookup("x.test", &resolver(&[failing, good])).unwrap();
        assert_eq!(found, [IpAddr::from(Ipv4Addr::LOCALHOST)]);
    }

    #[test]
    fn nxdomain_is_final() {
        let (missing, _) = server(Says::Code(ResponseCode::NXDomain));
        let (good, queries) = server(Says::Ipv4(vec![Ipv4Addr::LOCALHOST]));
        let err = lookup("gone.test", &resolver(&[missing, good])).unwrap_err();
        assert_eq!(err, format!("{missing}: no such name (NXDOMAIN)"));
        assert_eq!(queries.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_system_resolver_knows_localhost() {
        let found = lookup("localhost", &Resolver::default()).unwrap();
        assert!(
            found.contains(&IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{found:?}"
        );
    }

    #[test]
    fn choice_keeps_the_address_in_use_else_prefers_ipv4() {
        let v4: IpAddr = [10, 0, 0, 1].into();
        let v4b: IpAddr = [10, 0, 0, 2].into();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert_eq!(choose(&[v6, v4, v4b], &[]), Some(v4));
        assert_eq!(choose(&[v6, v4, v4b], &[v4b]), Some(v4b));
        assert_eq!(choose(&[v6, v4], &[v4b]), Some(v4));
        assert_eq!(choose(&[v6], &[v4]), Some(v6));
        assert_eq!(choose(&[], &[v4]), None);
    }
}
