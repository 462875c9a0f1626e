//! The h2 crate's client against the gateway: each test runs its async part on a
//! current-thread tokio runtime ([`block_on`]), opens connections with [`connect`] (h2c by
//! prior knowledge), and drives streams with the h2 API itself, so the tests see exactly the
//! frames a real HTTP/2 client sees (GOAWAY, RST_STREAM, trailers, flow control).

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use tokio::net::TcpStream;

/// Runs `f` on a fresh current-thread runtime, failing the test after `limit`.
pub fn block_on<F: Future>(limit: Duration, f: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async move {
        tokio::time::timeout(limit, f)
            .await
            .unwrap_or_else(|_| panic!("the HTTP/2 exchange took over {limit:?}"))
    })
}

/// A connection's request handle, and its driver's task (which ends, with the connection's
/// error if any, when the connection does).
pub struct H2 {
    pub send: SendRequest<Bytes>,
    pub driver: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// Opens an h2c connection by prior knowledge; `window` sets the client's initial stream
/// window (the gateway may send that much per stream before the client reads).
pub async fn connect_with(addr: SocketAddr, window: u32) -> H2 {
    let tcp = TcpStream::connect(addr)
        .await
        .expect("connect to the gateway");
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(16 << 20)
        .handshake::<_, Bytes>(tcp)
        .await
        .expect("h2 handshake with the gateway");
    let driver = tokio::spawn(conn);
    H2 { send, driver }
}

/// Opens an h2c connection by prior knowledge with the h2 crate's default windows.
pub async fn connect(addr: SocketAddr) -> H2 {
    connect_with(addr, 65_535).await
}

/// A request of `method` to `path` (`:authority` "h2.test").
pub fn request(method: &str, path: &str) -> http::Request<()> {
    http::Request::builder()
        .method(method)
        .uri(format!("http://h2.test{path}"))
        .body(())
        .expect("a valid request")
}

/// Reads a response body whole, releasing flow-control capacity as it goes; then its
/// trailers.
pub async fn read_body(
    mut body: h2::RecvStream,
) -> Result<(Vec<u8>, Option<http::HeaderMap>), h2::Error> {
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        out.extend_from_slice(&chunk);
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?;
    Ok((out, trailers))
}
