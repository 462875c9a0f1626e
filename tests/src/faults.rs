//! An upstream that fails on command: [`Faulty`] serves HTTP/1.1 like [`Upstream`] and
//! answers every request according to its current [`Fault`], which the test switches while
//! the gateway runs (to open a breaker, fail health checks, get an endpoint ejected, make a
//! try fail and its retry succeed, ...). `Fault::Refuse` closes the listening socket, so
//! connections are refused as by a stopped service; any other fault listens again on the
//! same port, so the gateway's config never changes.
//!
//! Refusing is `shutdown` on the listening socket, not only closing it: a process forked
//! meanwhile by a parallel test (before its exec) holds a copy of every descriptor, and a
//! merely closed listener would go on answering SYNs through that copy. While refusing, a
//! bound socket that does not listen keeps the port (`SO_REUSEPORT` lets it overlap the
//! listener), so no other test can take it; recovering makes that socket listen.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

use crate::{Received, Reply, Upstream};

/// What a [`Faulty`] upstream does with each request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// 200 with the upstream's body.
    Ok,
    /// This status with an empty body (e.g. 500, 503).
    Status(u16),
    /// Reset the connection (RST) without answering.
    Reset,
    /// Close the connection (FIN) without answering.
    Close,
    /// Answer 200 after this long.
    Delay(Duration),
    /// Stop listening: new connections are refused (open ones are shut down).
    Refuse,
}

struct State {
    fault: Fault,
    body: String,
    /// Requests received, by request target.
    counts: HashMap<String, usize>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A test upstream that fails on command; see the module doc. Counts survive a refuse and
/// recover. Dropping it stops it.
pub struct Faulty {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// `None` while refusing.
    server: Option<Upstream>,
    /// The listening socket the server accepts on (a second descriptor of it).
    listener: TcpListener,
    /// Bound, not listening: holds the port while refusing.
    placeholder: Option<Socket>,
}

/// A socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`), bound, not yet listening.
fn bound(addr: SocketAddr) -> Socket {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    socket.set_reuse_address(true).expect("SO_REUSEADDR");
    socket.set_reuse_port(true).expect("SO_REUSEPORT");
    socket
        .bind(&addr.into())
        .unwrap_or_else(|e| panic!("binding {addr}: {e}"));
    socket
}

fn listen(socket: Socket) -> TcpListener {
    socket.listen(128).expect("listen");
    socket.into()
}

impl Faulty {
    /// Listens on a fresh 127.0.0.1 port, answering `Fault::Ok` (200 with `body`).
    pub fn start(body: &str) -> Faulty {
        let state = Arc::new(Mutex::new(State {
            fault: Fault::Ok,
            body: body.to_string(),
            counts: HashMap::new(),
        }));
        let listener = listen(bound(([127, 0, 0, 1], 0).into()));
        let serving = listener.try_clone().expect("dup");
        let server = Upstream::start_with(serving, handler(state.clone())).expect("start");
        Faulty {
            addr: server.addr(),
            state,
            server: Some(server),
            listener,
            placeholder: None,
        }
    }

    /// The address it listens on (also while refusing: the port is kept for it).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From the next request (or connection) on, do `fault`.
    pub fn set(&mut self, fault: Fault) {
        lock(&self.state).fault = fault.clone();
        match (fault == Fault::Refuse, self.server.is_some()) {
            (true, true) => {
                self.placeholder = Some(bound(self.addr));
                let _ = SockRef::from(&self.listener).shutdown(Shutdown::Both);
                self.server = None;
            }
            (false, false) => {
                let socket = self.placeholder.take().expect("refusing holds the port");
                self.listener = listen(socket);
                let serving = self.listener.try_clone().expect("dup");
                let server = Upstream::start_with(serving, handler(self.state.clone()))
                    .unwrap_or_else(|e| panic!("listening again on {}: {e}", self.addr));
                self.server = Some(server);
            }
            _ => {}
        }
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        lock(&self.state).fault.clone()
    }

    /// Every request received so far.
    pub fn requests(&self) -> usize {
        lock(&self.state).counts.values().sum()
    }

    /// Requests received for exactly this target (e.g. a health check's path).
    pub fn requests_to(&self, target: &str) -> usize {
        lock(&self.state).counts.get(target).copied().unwrap_or(0)
    }

    /// Requests received for any target other than `target`: the traffic besides health
    /// checks to `target`.
    pub fn requests_except(&self, target: &str) -> usize {
        self.requests() - self.requests_to(target)
    }
}

fn handler(state: Arc<Mutex<State>>) -> impl Fn(&Received) -> Reply + Send + Sync + 'static {
    move |req: &Received| {
        let mut state = lock(&state);
        *state.counts.entry(req.target.clone()).or_default() += 1;
        match &state.fault {
            Fault::Ok => Reply::ok(&state.body),
            Fault::Status(code) => Reply::status(*code),
            Fault::Reset | Fault::Refuse => Reply::Reset,
            Fault::Close => Reply::Close,
            Fault::Delay(pause) => Reply::Delay(*pause, Box::new(Reply::ok(&state.body))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::TcpStream;

    use super::*;
    use crate::{get, Client};

    #[test]
    fn faults_switch_while_it_runs() {
        let mut up = Faulty::start("fine");
        let mut client = Client::connect(up.addr());
        assert_eq!(client.request(&get("h", "/a")).text(), "fine");
        up.set(Fault::Status(503));
        assert_eq!(client.request(&get("h", "/b")).status, 503);
        up.set(Fault::Refuse);
        let refused = TcpStream::connect(up.addr()).expect_err("refused");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);
        up.set(Fault::Ok);
        let mut client = Client::connect(up.addr());
        assert_eq!(client.request(&get("h", "/a")).status, 200);
        assert_eq!(up.requests(), 3);
        assert_eq!((up.requests_to("/a"), up.requests_except("/a")), (2, 1));
        assert_eq!(up.fault(), Fault::Ok);
    }
}
