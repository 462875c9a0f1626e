//! A shard's main task: bind its listeners, report readiness, accept connections.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener, TcpStream};

use super::{Ready, ShardInfo, StartError};
use crate::shard::Shard;
use crate::{io, proxy, Epoch};

pub(super) async fn run(index: usize, epoch: Arc<Epoch>, info: ShardInfo, ready: Ready) {
    let mut listeners = Vec::with_capacity(epoch.config.listeners.len());
    for l in &epoch.config.listeners {
        let opts = ListenerOpts::new()
            .reuse_port(true)
            .reuse_addr(true)
            .backlog(4096);
        match TcpListener::bind_with_config(l.listen, &opts) {
            Ok(listener) => listeners.push(listener),
            Err(error) => {
                let _ = ready.send(Err(StartError::Bind {
                    shard: index,
                    listener: l.name.clone(),
                    address: l.listen,
                    error,
                }));
                return;
            }
        }
    }
    let shard = Rc::new(Shard::new(index, epoch.clone()));
    let sweep_every = epoch
        .config
        .upstreams
        .iter()
        .map(|u| u.pool_idle_timeout / 2)
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    monoio::spawn(sweep_pools(shard.clone(), sweep_every));
    let mut tasks = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        tasks.push(monoio::spawn(accept_loop(shard.clone(), listener, i)));
    }
    let _ = ready.send(Ok(info));
    drop(ready);
    for task in tasks {
        task.await;
    }
}

async fn accept_loop(shard: Rc<Shard>, listener: TcpListener, index: usize) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let max = shard.epoch().epoch.config.listeners[index]
                    .max_connections
                    .get();
                let open = &shard.connections[index];
                if open.get() >= max {
                    monoio::spawn(refuse_busy(stream));
                    continue;
                }
                open.set(open.get() + 1);
                let shard = shard.clone();
                monoio::spawn(async move {
                    let _guard = ConnectionGuard {
                        shard: &shard,
                        index,
                    };
                    proxy::serve(&shard, stream, peer, index).await;
                });
            }
            Err(e) => {
                // Out of descriptors or memory: back off briefly rather than spin.
                tracing::warn!(shard = shard.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct ConnectionGuard<'a> {
    shard: &'a Shard,
    index: usize,
}

impl Drop for ConnectionGuard<'_> {
    fn drop(&mut self) {
        let open = &self.shard.connections[self.index];
        open.set(open.get() - 1);
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
