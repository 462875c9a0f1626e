//! A shard's event loop: its listeners, its inbox from the control thread, and the periodic
//! chores (pool sweep, access-log flush).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::AsyncReadRent;
use monoio::net::{ListenerOpts, TcpListener, TcpStream};
use ringway_config::Listener;

use crate::link::{FromShard, ShardInbox, ToShard};

/// Largest connection task accepted (debug builds): an idle connection's memory is mostly
/// this task, and a future that grows by accident (a large local left in scope across an
/// await) multiplies it by the number of idle connections.
const IDLE_TASK_MAX: usize = 1024;
use super::{Ready, ShardInfo, StartError};
use crate::io::Stream;
use crate::proxy::buffers::DownstreamPool;
use crate::proxy::ListenerHandle;
use crate::rt::signal::Signal;
use crate::shard::Shard;
use crate::tls::{self, Refusal, ServerTls, TlsStream};
use crate::{io, proxy, Epoch};

/// One bound listener on this shard.
struct ListenerSlot {
    address: SocketAddr,
    /// Its name, stop signal (raised when it is removed or the shard drains) and counters.
    handle: Rc<ListenerHandle>,
}

pub(super) struct Runner {
    shard: Rc<Shard>,
    /// Request states lent to connections while they have a request in progress.
    downstreams: Rc<DownstreamPool>,
    listeners: RefCell<Vec<ListenerSlot>>,
    stopped: Rc<Signal>,
    /// When the drain began and how long it may take.
    drain_timeout: Cell<Option<Duration>>,
}

fn bind(l: &Listener) -> std::io::Result<TcpListener> {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(4096);
    TcpListener::bind_with_config(l.listen, &opts)
}

pub(super) async fn run(
    shard: Rc<Shard>,
    epoch: Arc<Epoch>,
    info: ShardInfo,
    ready: Ready,
    inbox: ShardInbox,
) {
    let downstreams = DownstreamPool::new(
        shard.access_log.is_some(),
        shard.draining.clone(),
        shard.timers.clone(),
    );
    let runner = Rc::new(Runner {
        shard: shard.clone(),
        downstreams: Rc::new(downstreams),
        listeners: RefCell::new(Vec::new()),
        stopped: Signal::new(),
        drain_timeout: Cell::new(None),
    });
    if let Err((listener, address, error)) = runner.reconcile_listeners(&epoch) {
        let _ = ready.send(Err(StartError::Bind {
            shard: shard.index,
            listener,
            address,
            error,
        }));
        return;
    }
    monoio::spawn(sweep_pools(shard.clone(), sweep_period(&epoch)));
    // Held past here, the first epoch would stay alive as long as the shard: its route table
    // and the statistics of its removed routes would never be freed.
    drop(epoch);
    monoio::spawn(shard.timers.clone().tick());
    monoio::spawn(super::leases::run_leases(shard.clone()));
    if shard.access_log.is_some() {
        monoio::spawn(flush_access_log(shard.clone()));
    }
    let _ = ready.send(Ok(info));
    drop(ready);
    let inbox_task = monoio::spawn(runner.clone().read_inbox(inbox));
    runner.stopped.wait().await;
    drop(inbox_task);
    if let Some(log) = &shard.access_log {
        log.flush();
    }
    let _ = shard.events.send(FromShard::Stopped { shard: shard.index });
}

fn sweep_period(epoch: &Epoch) -> Duration {
    epoch
        .config
        .upstreams
        .iter()
        .map(|u| u.pool_idle_timeout / 2)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(50), Duration::from_secs(1))
}

impl Runner {
    /// Binds the listeners `epoch` adds and stops those it removes; a listener whose name and
    /// address did not change keeps its socket and its connections. Nothing changes on error.
    fn reconcile_listeners(
        &self,
        epoch: &Epoch,
    ) -> Result<(), (String, SocketAddr, std::io::Error)> {
        let mut current = self.listeners.borrow_mut();
        let mut bound = Vec::new();
        for l in &epoch.config.listeners {
            if current
                .iter()
                .any(|s| &*s.handle.name == l.name.as_str() && s.address == l.listen)
            {
                continue;
            }
            match bind(l) {
                Ok(socket) => bound.push((l, socket)),
                Err(e) => return Err((l.name.clone(), l.listen, e)),
            }
        }
        current.retain(|slot| {
            let keep = epoch
                .config
                .listeners
                .iter()
                .any(|l| l.name.as_str() == &*slot.handle.name && l.listen == slot.address);
            if !keep {
                slot.handle.stop.raise();
                // Its idle connections wait on the idle timer, not on the signal.
                self.shard.timers.kick_all();
            }
            keep
        });
        for (l, socket) in bound {
            let shard = &self.shard;
            let slot = ListenerSlot {
                address: l.listen,
                handle: Rc::new(ListenerHandle {
                    name: Rc::from(l.name.as_str()),
                    stop: Signal::new(),
                    open: shard.listener_open(&l.name),
                    shard_open: shard.open_connections.clone(),
                }),
            };
            let downstreams = self.downstreams.clone();
            monoio::spawn(accept_loop(
                shard.clone(),
                downstreams,
                socket,
                slot.handle.clone(),
            ));
            current.push(slot);
        }
        Ok(())
    }

    async fn read_inbox(self: Rc<Self>, inbox: ShardInbox) {
        let mut wake = match monoio::net::UnixStream::from_std(inbox.wake) {
            Ok(wake) => wake,
            Err(e) => {
                tracing::error!(shard = self.shard.index, error = %e, "cannot watch the control channel");
                return;
            }
        };
        let mut buf = vec![0u8; 64];
        loop {
            while let Ok(msg) = inbox.rx.try_recv() {
                self.handle(msg);
            }
            let (res, b) = wake.read(buf).await;
            buf = b;
            if matches!(res, Ok(0) | Err(_)) {
                // The control thread is gone: nobody can reload or stop us any more; keep
                // serving until the process ends.
                return;
            }
        }
    }

    fn handle(self: &Rc<Self>, msg: ToShard) {
        let shard = &self.shard;
        match msg {
            ToShard::Epoch(epoch) => {
                let id = epoch.id;
                let error = match self.reconcile_listeners(&epoch) {
                    Ok(()) => {
                        shard.install(epoch);
                        None
                    }
                    Err((name, address, e)) => {
                        Some(format!("cannot listen on {address} (listener {name}): {e}"))
                    }
                };
                let _ = shard.events.send(FromShard::Ack {
                    shard: shard.index,
                    epoch: id,
                    error,
                });
            }
            ToShard::Health(table) => shard.apply_health(table),
            ToShard::Flush => {
                let report = shard.take_report();
                let _ = shard.events.send(FromShard::Report(Box::new(report)));
            }
            ToShard::Drain { timeout } => {
                if self.drain_timeout.replace(Some(timeout)).is_none() {
                    for slot in self.listeners.borrow_mut().drain(..) {
                        slot.handle.stop.raise();
                    }
                    shard.draining.raise();
                    shard.h2pool.close_idle();
                    shard.timers.kick_all();
                    monoio::spawn(self.clone().finish_drain(timeout));
                }
            }
            ToShard::Stop => self.stopped.raise(),
            ToShard::Lease(grants) => shard.policy.grant(&grants),
        }
    }

    /// Waits for the shard's connections to end, at most `timeout`, then stops.
    async fn finish_drain(self: Rc<Self>, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut tick = monoio::time::interval(Duration::from_millis(20));
        while self.shard.open_connections.get() > 0 && std::time::Instant::now() < deadline {
            tick.tick().await;
        }
        self.stopped.raise();
    }
}

async fn accept_loop(
    shard: Rc<Shard>,
    downstreams: Rc<DownstreamPool>,
    listener: TcpListener,
    handle: Rc<ListenerHandle>,
) {
    let name = &handle.name;
    loop {
        let accepted = monoio::select! {
            accepted = listener.accept() => accepted,
            _ = handle.stop.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let sep = shard.epoch();
                let index = sep.listener_index(name);
                let max = index.map_or(usize::MAX, |i| {
                    sep.epoch.config.listeners[i].max_connections.get()
                });
                let tls = index.and_then(|i| sep.epoch.listener_tls[i].clone());
                // PROXY protocol: the header's deadline, or None when the listener wants none.
                // A peer outside `trusted_proxies` may not speak for anyone.
                let proxy_header = match index.map(|i| &sep.epoch.config.listeners[i]) {
                    Some(l) if l.proxy_protocol => {
                        let trusted = l.trusted_proxies.is_empty()
                            || l.trusted_proxies.iter().any(|n| n.contains(peer.ip()));
                        if !trusted {
                            drop(sep);
                            shard.listener_event(name, |l| l.proxy_refused += 1);
                            tracing::debug!(shard = shard.index, %peer, "PROXY header from an untrusted peer");
                            continue;
                        }
                        Some(std::time::Instant::now() + l.header_timeout)
                    }
                    _ => None,
                };
                drop(sep);
                // The cap is per listener and shard: count this listener's connections.
                if handle.open.get() >= max {
                    shard.listener_event(name, |l| l.refused += 1);
                    // A TLS client could not read a plain 503: it is closed without one
                    // (a handshake is the costly part such a cap protects from).
                    if tls.is_none() {
                        monoio::spawn(refuse_busy(stream));
                    }
                    continue;
                }
                shard.listener_event(name, |l| l.accepted += 1);
                let shard = shard.clone();
                let downstreams = downstreams.clone();
                let handle = handle.clone();
                match tls {
                    None => {
                        let mut conn = proxy::Conn::new(Stream::Plain(stream), peer, handle);
                        // The task captures the shard and the connection, and uses both in
                        // place: every idle connection holds its task, and a value moved into
                        // a local would sit in it beside the captured one.
                        let task = async move {
                            if let Some(deadline) = proxy_header {
                                if !Box::pin(conn.read_proxy_header(&shard, deadline)).await {
                                    return;
                                }
                            }
                            proxy::serve(&shard, &downstreams, &mut conn).await
                        };
                        // Every idle connection holds this task: keep it small (see
                        // `proxy::serve`).
                        debug_assert!(
                            std::mem::size_of_val(&task) <= IDLE_TASK_MAX,
                            "connection task of {} bytes",
                            std::mem::size_of_val(&task)
                        );
                        monoio::spawn(task);
                    }
                    Some(tls) => {
                        // Counted open from the accept, so that handshakes in progress count
                        // against `max_connections` and a drain waits for them.
                        let mut conn = proxy::Conn::handshaking(peer, handle);
                        let task = async move {
                            let mut stream = stream;
                            if let Some(deadline) = proxy_header {
                                let read = conn.proxy_header_on(&shard, &mut stream, deadline);
                                if !Box::pin(read).await {
                                    return;
                                }
                            }
                            // Boxed: the handshake's state is freed when it ends, not kept in
                            // the task of an idle connection.
                            let done = Box::pin(handshake(&shard, stream, tls, &conn)).await;
                            if let Some(mut stream) = done {
                                // The handshake's buffers go back while the first request
                                // is awaited.
                                stream.release();
                                conn.set_stream(Stream::Tls(stream));
                                proxy::serve(&shard, &downstreams, &mut conn).await;
                            }
                        };
                        debug_assert!(
                            std::mem::size_of_val(&task) <= IDLE_TASK_MAX,
                            "connection task of {} bytes",
                            std::mem::size_of_val(&task)
                        );
                        monoio::spawn(task);
                    }
                }
            }
            Err(e) => {
                // Out of descriptors or memory: back off briefly rather than spin.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The server side of a TLS handshake, bounded by the listener's `handshake_timeout`;
/// counted either way.
async fn handshake(
    shard: &Shard,
    stream: TcpStream,
    tls: Arc<ServerTls>,
    conn: &proxy::Conn,
) -> Option<Box<TlsStream>> {
    let deadline = std::time::Instant::now() + tls.handshake_timeout;
    let accepted = shard
        .timers
        .within(deadline, tls::accept(stream, &tls))
        .await;
    let name = conn.listener_name();
    match accepted {
        Ok(Ok(stream)) => {
            let resumed =
                stream.connection().handshake_kind() == Some(rustls::HandshakeKind::Resumed);
            shard.listener_event(name, |l| {
                l.tls_handshakes += 1;
                l.tls_resumed += u64::from(resumed);
            });
            Some(Box::new(stream))
        }
        Ok(Err(refusal)) => {
            tracing::debug!(
                shard = shard.index,
                listener = name,
                reason = refusal.as_str(),
                "TLS handshake refused"
            );
            shard.listener_event(name, |l| l.tls_refused[refusal as usize] += 1);
            None
        }
        Err(_) => {
            shard.listener_event(name, |l| l.tls_refused[Refusal::Timeout as usize] += 1);
            None
        }
    }
}

async fn refuse_busy(mut stream: TcpStream) {
    let _ = io::write_static(&mut stream, proxy::local::error_response(503, true)).await;
    proxy::linger_close(stream, None).await;
}

async fn sweep_pools(shard: Rc<Shard>, every: Duration) {
    let mut tick = monoio::time::interval(every);
    loop {
        tick.tick().await;
        shard.pool.borrow_mut().sweep(std::time::Instant::now());
    }
}

async fn flush_access_log(shard: Rc<Shard>) {
    let mut tick = monoio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(log) = &shard.access_log {
            log.flush();
        }
    }
}
