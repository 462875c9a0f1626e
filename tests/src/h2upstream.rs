//! An HTTP/2 test upstream on the h2 crate's server (h2c by prior knowledge, or TLS with ALPN
//! `h2`), on a tokio runtime in a thread of its own: the tests see what the gateway sends to
//! an HTTP/2 service (pseudo-headers, fields, body, trailers), how many connections it opens,
//! and how many streams it keeps in flight on each.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct H2Received {
    pub method: String,
    /// `:scheme`, `:authority` and the path with its query.
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<http::HeaderMap>,
}

/// What the upstream answers: status, fields, body (sent after `delay`), trailers.
#[derive(Debug, Clone, Default)]
pub struct H2Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(&'static str, String)>,
    pub delay: Duration,
    /// Reset the stream with this code after the head and body, instead of ending it.
    pub reset: Option<h2::Reason>,
}

impl H2Reply {
    pub fn ok(body: &str) -> H2Reply {
        H2Reply {
            status: 200,
            body: body.as_bytes().to_vec(),
            ..H2Reply::default()
        }
    }
}

type Handler = dyn Fn(&H2Received) -> H2Reply + Send + Sync;

struct Shared {
    handler: Box<Handler>,
    connections: AtomicUsize,
    open: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Streams in flight per connection, at most, over the upstream's life.
    max_per_connection: AtomicUsize,
    received: Mutex<Vec<H2Received>>,
    stop: AtomicBool,
}

/// A running HTTP/2 upstream; dropping it stops the runtime and closes its connections.
pub struct H2Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Options of an [`H2Upstream`].
#[derive(Clone, Default)]
pub struct H2Options {
    /// SETTINGS_MAX_CONCURRENT_STREAMS the upstream announces.
    pub max_concurrent_streams: Option<u32>,
    /// Serve TLS with this config (its ALPN should name `h2`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl H2Upstream {
    /// h2c by prior knowledge on a fresh 127.0.0.1 port.
    pub fn start(handler: impl Fn(&H2Received) -> H2Reply + Send + Sync + 'static) -> H2Upstream {
        H2Upstream::start_with(H2Options::default(), handler)
    }

    pub fn start_with(
        options: H2Options,
        handler: impl Fn(&H2Received) -> H2Reply + Send + Sync + 'static,
    ) -> H2Upstream {
        let std_listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("bind the h2 test upstream");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            handler: Box::new(handler),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            max_per_connection: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = Arc::clone(&shared);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                tokio::select! {
                    _ = accept_loop(listener, serving, options) => {}
                    _ = rx => {}
                }
            });
        });
        H2Upstream {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Streams in flight at once, at most, all connections together.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Streams in flight at once on one connection, at most.
    pub fn max_per_connection(&self) -> usize {
        self.shared.max_per_connection.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open; panics after `deadline`.
    pub fn wait_until_closed(&self, deadline: Duration) {
        crate::wait_for("the upstream's h2 connections to close", deadline, || {
            self.open_connections() == 0
        });
    }

    pub fn requests(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    pub fn received(&self) -> Vec<H2Received> {
        self.shared.received.lock().unwrap().clone()
    }
}

impl Drop for H2Upstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, options: H2Options) {
    let acceptor = options.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let shared = Arc::clone(&shared);
        let max = options.max_concurrent_streams;
        match &acceptor {
            None => {
                tokio::spawn(serve(tcp, shared, max));
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        serve(tls, shared, max).await;
                    }
                });
            }
        }
    }
}

async fn serve<T>(io: T, shared: Arc<Shared>, max: Option<u32>)
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut builder = h2::server::Builder::new();
    if let Some(max) = max {
        builder.max_concurrent_streams(max);
    }
    shared.open.fetch_add(1, Ordering::SeqCst);
    struct Open<'a>(&'a AtomicUsize);
    impl Drop for Open<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    let _open = Open(&shared.open);
    let Ok(mut conn) = builder.handshake::<_, Bytes>(io).await else {
        return;
    };
    let on_conn = Arc::new(AtomicUsize::new(0));
    while let Some(Ok((request, respond))) = conn.accept().await {
        let shared = Arc::clone(&shared);
        let on_conn = Arc::clone(&on_conn);
        tokio::spawn(async move {
            let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let here = on_conn.fetch_add(1, Ordering::SeqCst) + 1;
            shared.max_per_connection.fetch_max(here, Ordering::SeqCst);
            let _ = answer(request, respond, &shared).await;
            on_conn.fetch_sub(1, Ordering::SeqCst);
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn answer(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    shared: &Shared,
) -> Result<(), h2::Error> {
    let (parts, mut body) = request.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        data.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?;
    let received = H2Received {
        method: parts.method.to_string(),
        scheme: parts.uri.scheme_str().unwrap_or("").to_owned(),
        authority: parts
            .uri
            .authority()
            .map_or(String::new(), |a| a.to_string()),
        path: parts
            .uri
            .path_and_query()
            .map_or(String::new(), |p| p.to_string()),
        headers: parts.headers,
        body: data,
        trailers,
    };
    let reply = (shared.handler)(&received);
    shared.received.lock().unwrap().push(received);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = http::Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(*name, value.as_str());
    }
    let response = response.body(()).expect("a valid response");
    let end = reply.body.is_empty() && reply.trailers.is_empty() && reply.reset.is_none();
    let mut send = respond.send_response(response, end)?;
    if !reply.body.is_empty() {
        let last = reply.trailers.is_empty() && reply.reset.is_none();
        send_all(&mut send, Bytes::from(reply.body), last).await?;
    }
    if let Some(reason) = reply.reset {
        // h2 drops the frames still queued on a stream it resets: let the head and body go
        // out first, so that the reset comes mid-response.
        tokio::time::sleep(Duration::from_millis(200)).await;
        send.send_reset(reason);
        return Ok(());
    }
    if !reply.trailers.is_empty() {
        let mut map = http::HeaderMap::new();
        for (name, value) in &reply.trailers {
            map.insert(*name, value.parse().expect("a valid trailer value"));
        }
        send.send_trailers(map)?;
    }
    Ok(())
}

/// Sends `data` within the peer's flow-control window, as it opens.
async fn send_all(
    send: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = std::future::poll_fn(|cx| send.poll_capacity(cx))
            .await
            .ok_or_else(|| h2::Error::from(h2::Reason::CANCEL))??;
        let chunk = data.split_to(granted.min(data.len()));
        send.send_data(chunk, end && data.is_empty())?;
    }
    Ok(())
}
