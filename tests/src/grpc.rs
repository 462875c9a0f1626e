//! gRPC on both sides of the gateway with tonic: [`GrpcServer`] is a real tonic server (an
//! echo service with one method of each kind, and the standard `grpc.health.v1` service),
//! [`EchoClient`] a tonic client. Messages are derived with prost, so no protoc is needed.
//!
//! The echo service, `test.Echo`:
//! - `Unary`: answers `echo: TEXT`, after `delay_ms`; the request's `x-echo` metadata comes
//!   back as response metadata, and `x-served: yes` as a trailer. TEXT `fail` is answered
//!   NOT_FOUND with a message that needs percent-encoding and a trailer of its own.
//! - `Count` (server streaming): `count` messages `0`..`count-1`, `delay_ms` apart.
//! - `Collect` (client streaming): the texts received, joined by `,`.
//! - `Chat` (bidirectional): each message echoed as it arrives.
//!
//! Every call that ends without the service finishing it (the client cancelled, the gateway
//! reset the stream) counts in [`GrpcServer::cancelled`].

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::{Request, Response, Status, Streaming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tonic_prost::ProstCodec;

/// The one message type of the echo service.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(uint64, tag = "2")]
    pub delay_ms: u64,
    #[prost(uint32, tag = "3")]
    pub count: u32,
}

impl Msg {
    pub fn text(text: &str) -> Msg {
        Msg {
            text: text.to_owned(),
            ..Msg::default()
        }
    }
}

#[derive(Default)]
struct Seen {
    cancelled: AtomicUsize,
    calls: AtomicUsize,
    /// `grpc-timeout` of each call, as received.
    timeouts: Mutex<Vec<Option<String>>>,
}

/// A tonic server on 127.0.0.1, on a runtime in a thread of its own.
pub struct GrpcServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    health: HealthReporter,
    runtime: Option<tokio::runtime::Runtime>,
}

impl GrpcServer {
    pub fn start() -> GrpcServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("local address");
        let seen = Arc::new(Seen::default());
        let echo = Echo { seen: seen.clone() };
        let (health, health_service) = tonic_health::server::health_reporter();
        runtime.block_on(health.set_service_status("", ServingStatus::Serving));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tonic::transport::Server::builder()
                .add_service(echo)
                .add_service(health_service)
                .serve_with_incoming(incoming)
                .await
                .expect("the gRPC test server");
        });
        GrpcServer {
            addr,
            seen,
            health,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Calls that ended before the service finished them.
    pub fn cancelled(&self) -> usize {
        self.seen.cancelled.load(Ordering::SeqCst)
    }

    /// Calls that reached the service.
    pub fn calls(&self) -> usize {
        self.seen.calls.load(Ordering::SeqCst)
    }

    /// The `grpc-timeout` each call arrived with.
    pub fn timeouts(&self) -> Vec<Option<String>> {
        self.seen.timeouts.lock().unwrap().clone()
    }

    /// Sets what `grpc.health.v1.Health/Check` answers for the server as a whole ("").
    pub fn set_serving(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        let health = self.health.clone();
        self.runtime
            .as_ref()
            .expect("running")
            .block_on(async move { health.set_service_status("", status).await });
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// Counts a call as cancelled unless it was finished.
struct CallGuard {
    seen: Arc<Seen>,
    finished: bool,
}

impl CallGuard {
    fn new<T>(seen: &Arc<Seen>, req: &Request<T>) -> CallGuard {
        seen.calls.fetch_add(1, Ordering::SeqCst);
        let timeout = req
            .metadata()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        seen.timeouts.lock().unwrap().push(timeout);
        CallGuard {
            seen: seen.clone(),
            finished: false,
        }
    }
}

impl CallGuard {
    /// The service finished the call (a method, so that closures capture the whole guard).
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.seen.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type BoxStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send + 'static>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

#[derive(Clone)]
struct Echo {
    seen: Arc<Seen>,
}

impl NamedService for Echo {
    const NAME: &'static str = "test.Echo";
}

impl tower_service::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let seen = self.seen.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            let resp = match req.uri().path() {
                "/test.Echo/Unary" => grpc.unary(Unary(seen), req).await,
                "/test.Echo/Count" => grpc.server_streaming(Count(seen), req).await,
                "/test.Echo/Collect" => grpc.client_streaming(Collect(seen), req).await,
                "/test.Echo/Chat" => grpc.streaming(Chat(seen), req).await,
                _ => Status::unimplemented("no such method").into_http(),
            };
            Ok(resp)
        })
    }
}

struct Unary(Arc<Seen>);
struct Count(Arc<Seen>);
struct Collect(Arc<Seen>);
struct Chat(Arc<Seen>);

impl tonic::server::UnaryService<Msg> for Unary {
    type Response = Msg;
    type Future = BoxFuture<Result<Response<Msg>, Status>>;

    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let mut guard = CallGuard::new(&self.0, &req);
        Box::pin(async move {
            let echo = req.metadata().get("x-echo").cloned();
            let msg = req.into_inner();
            tokio::time::sleep(Duration::from_millis(msg.delay_ms)).await;
            guard.finish();
            if msg.text == "fail" {
                let mut status = Status::not_found("no such thing: 100% gone");
                status
                    .metadata_mut()
                    .insert("x-reason", "test".parse().unwrap());
                return Err(status);
            }
            let mut resp = Response::new(Msg::text(&format!("echo: {}", msg.text)));
            if let Some(echo) = echo {
                resp.metadata_mut().insert("x-echo", echo);
            }
            Ok(resp)
        })
    }
}

impl tonic::server::ServerStreamingService<Msg> for Count {
    type Response = Msg;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Result<Response<BoxStream>, Status>>;

    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        let mut guard = CallGuard::new(&self.0, &req);
        let msg = req.into_inner();
        let delay = Duration::from_millis(msg.delay_ms);
        let stream = async_stream(move |tx| async move {
            for i in 0..msg.count {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if tx.send(Ok(Msg::text(&i.to_string()))).await.is_err() {
                    return;
                }
            }
            guard.finish();
        });
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

impl tonic::server::ClientStreamingService<Msg> for Collect {
    type Response = Msg;
    type Future = BoxFuture<Result<Response<Msg>, Status>>;

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let mut guard = CallGuard::new(&self.0, &req);
        Box::pin(async move {
            let mut stream = req.into_inner();
            let mut texts = Vec::new();
            while let Some(msg) = stream.next().await {
                texts.push(msg?.text);
            }
            guard.finish();
            Ok(Response::new(Msg::text(&texts.join(","))))
        })
    }
}

impl tonic::server::StreamingService<Msg> for Chat {
    type Response = Msg;
    type ResponseStream = BoxStream;
    type Future = BoxFuture<Result<Response<BoxStream>, Status>>;

    fn call(&mut self, req: Request<Streaming<Msg>>) -> Self::Future {
        let mut guard = CallGuard::new(&self.0, &req);
        let mut incoming = req.into_inner();
        let stream = async_stream(move |tx| async move {
            while let Some(msg) = incoming.next().await {
                let reply = msg.map(|m| Msg::text(&format!("re: {}", m.text)));
                if tx.send(reply).await.is_err() {
                    return;
                }
            }
            guard.finish();
        });
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

/// A response stream fed by a task running `f` (which stops when the stream is dropped).
fn async_stream<F, Fut>(f: F) -> BoxStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Msg, Status>>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// A tonic client of `test.Echo` on one HTTP/2 connection to `addr` (h2c).
pub struct EchoClient {
    grpc: tonic::client::Grpc<tonic::transport::Channel>,
}

impl EchoClient {
    pub async fn connect(addr: SocketAddr) -> EchoClient {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("an endpoint")
            .connect()
            .await
            .expect("connect to the gateway");
        EchoClient {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    fn path(method: &str) -> http::uri::PathAndQuery {
        format!("/test.Echo/{method}").parse().expect("a path")
    }

    async fn ready(&mut self) {
        self.grpc.ready().await.expect("the channel is ready");
    }

    pub async fn unary(&mut self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        self.ready().await;
        self.grpc
            .unary(req, Self::path("Unary"), ProstCodec::default())
            .await
    }

    /// Calls `method` (any path under test.Echo) as unary.
    pub async fn unary_at(&mut self, method: &str, msg: Msg) -> Result<Response<Msg>, Status> {
        self.ready().await;
        self.grpc
            .unary(Request::new(msg), Self::path(method), ProstCodec::default())
            .await
    }

    pub async fn count(&mut self, req: Request<Msg>) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await;
        self.grpc
            .server_streaming(req, Self::path("Count"), ProstCodec::default())
            .await
    }

    pub async fn collect(
        &mut self,
        msgs: impl Stream<Item = Msg> + Send + 'static,
    ) -> Result<Response<Msg>, Status> {
        self.ready().await;
        self.grpc
            .client_streaming(
                Request::new(msgs),
                Self::path("Collect"),
                ProstCodec::default(),
            )
            .await
    }

    pub async fn chat(
        &mut self,
        msgs: impl Stream<Item = Msg> + Send + 'static,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await;
        self.grpc
            .streaming(
                Request::new(msgs),
                Self::path("Chat"),
                ProstCodec::default(),
            )
            .await
    }
}
