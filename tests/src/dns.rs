//! A DNS server for tests of endpoint names: it answers A queries over UDP on a 127.0.0.1
//! port it picks, from a table the test changes while the gateway runs (`[resolver] servers`
//! points the gateway at it), and records when each name was asked.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};

/// How the server answers queries for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// This address (to A queries; an empty NOERROR to others).
    A(Ipv4Addr),
    /// SERVFAIL, as a resolver whose upstream servers are down answers.
    ServFail,
    /// No answer at all, as a dead server.
    Silent,
}

#[derive(Default)]
struct Shared {
    answers: Mutex<HashMap<String, Answer>>,
    /// When each name was asked (A queries).
    asked: Mutex<HashMap<String, Vec<Instant>>>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running test DNS server; names it has no answer for get NXDOMAIN.
pub struct DnsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    pub fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test DNS server");
        let addr = socket.local_addr().expect("local_addr");
        // The loop looks at the stop flag this often.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let shared = Arc::new(Shared::default());
        let serving = shared.clone();
        let thread = std::thread::spawn(move || serve(&socket, &serving));
        DnsServer {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// Its address, as `[resolver] servers` takes it.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answers queries for `name` (lower case, without the final dot) with `answer` from now on.
    pub fn set(&self, name: &str, answer: Answer) {
        lock(&self.shared.answers).insert(name.to_owned(), answer);
    }

    /// How many A queries for `name` arrived so far.
    pub fn queries(&self, name: &str) -> usize {
        lock(&self.shared.asked).get(name).map_or(0, Vec::len)
    }

    /// When each A query for `name` arrived.
    pub fn query_times(&self, name: &str) -> Vec<Instant> {
        lock(&self.shared.asked)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(socket: &UdpSocket, shared: &Shared) {
    let mut buf = [0u8; 1500];
    while !shared.stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let Ok(query) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let Some(question) = query.queries.first().cloned() else {
            continue;
        };
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let kind = question.query_type();
        if kind == RecordType::A {
            lock(&shared.asked)
                .entry(name.clone())
                .or_default()
                .push(Instant::now());
        }
        let mut reply = Message::new(query.metadata.id, MessageType::Response, OpCode::Query);
        reply.metadata.recursion_desired = query.metadata.recursion_desired;
        reply.metadata.recursion_available = true;
        reply.add_query(question.clone());
        match lock(&shared.answers).get(&name) {
            None => reply.metadata.response_code = ResponseCode::NXDomain,
            Some(Answer::Silent) => continue,
            Some(Answer::ServFail) => reply.metadata.response_code = ResponseCode::ServFail,
            Some(Answer::A(ip)) if kind == RecordType::A => {
                reply.add_answer(Record::from_rdata(
                    question.name().clone(),
                    1,
                    RData::A(A(*ip)),
                ));
            }
            Some(Answer::A(_)) => {}
        }
        if let Ok(bytes) = reply.to_vec() {
            let _ = socket.send_to(&bytes, from);
        }
    }
}
