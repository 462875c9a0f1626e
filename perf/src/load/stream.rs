//! A connection of `load` or `idle`: plain TCP, or TLS driven by hand over the glommio
//! socket (rustls is sans-IO: records go through a buffer of ours to and from the socket).
//!
//! Writes are whole: each `write_all` seals what it is given and sends every pending record
//! in one socket write, so the client's TLS 1.3 Finished goes out with the first request.

use std::io::{self, Read as _, Write as _};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::{ClientConnection, HandshakeKind};

use super::stats::ErrorKind;
use crate::target::Target;
use crate::tls::TlsClient;

/// TLS bytes read from the socket per read (records stream through it: rustls takes part
/// of a record and waits for the rest).
const RAW: usize = 8 * 1024;

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
    /// TLS bytes read from the socket, `raw[start..end]` not yet taken by rustls.
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    /// Records to send, gathered for one socket write.
    out: Vec<u8>,
}

/// A new connection, and how its TLS handshake went (`None` for plain TCP).
pub struct Opened {
    pub stream: Stream,
    pub resumed: Option<bool>,
}

impl Stream {
    /// Connects, and on `https://` makes the TLS handshake. `timeout` bounds the connect and
    /// each read and write after it.
    pub async fn open(
        target: &Target,
        tls: Option<&TlsClient>,
        timeout: Duration,
    ) -> Result<Opened, ErrorKind> {
        let tcp = TcpStream::connect_timeout(target.addr, timeout)
            .await
            .map_err(|_| ErrorKind::Connect)?;
        // Failing to set these only costs accuracy; the run goes on.
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let Some(tls) = tls else {
            return Ok(Opened {
                stream: Stream::Plain(tcp),
                resumed: None,
            });
        };
        let conn = ClientConnection::new(tls.config.clone(), tls.server_name.clone())
            .map_err(|_| ErrorKind::Tls)?;
        let mut stream = TlsStream {
            tcp,
            tls: conn,
            raw: vec![0u8; RAW].into_boxed_slice(),
            start: 0,
            end: 0,
            out: Vec::new(),
        };
        stream.handshake().await.map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => ErrorKind::Timeout,
            _ => ErrorKind::Tls,
        })?;
        let resumed = stream.tls.handshake_kind() == Some(HandshakeKind::Resumed);
        Ok(Opened {
            stream: Stream::Tls(Box::new(stream)),
            resumed: Some(resumed),
        })
    }

    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.write_all(bytes).await,
            Stream::Tls(s) => {
                s.tls.writer().write_all(bytes)?;
                s.flush().await
            }
        }
    }

    /// Reads what is there, at least one byte; 0 at the end of the stream (TLS: the
    /// server's close_notify, or the socket's end without one).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    /// Closes as a well-behaved client does: TLS sends its close_notify first.
    pub async fn close(self) {
        if let Stream::Tls(mut s) = self {
            s.tls.send_close_notify();
            let _ = s.flush().await;
        }
    }
}

impl TlsStream {
    async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            if self.tls.wants_write() {
                self.flush().await?;
            }
            if self.tls.is_handshaking() && !self.receive().await? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        // The client's last flight (TLS 1.3: its Finished) stays queued and leaves with the
        // first request.
        Ok(())
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if !self.receive().await? {
                return Ok(0);
            }
        }
    }

    /// Hands rustls the next TLS bytes (reading the socket when none are left) and processes
    /// them. `false` at the socket's end.
    async fn receive(&mut self) -> io::Result<bool> {
        if self.start == self.end {
            let n = self.tcp.read(&mut self.raw).await?;
            if n == 0 {
                return Ok(false);
            }
            (self.start, self.end) = (0, n);
        }
        let mut pending = &self.raw[self.start..self.end];
        self.start += self.tls.read_tls(&mut pending)?;
        self.tls
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(true)
    }

    /// Sends every pending record in one socket write.
    async fn flush(&mut self) -> io::Result<()> {
        self.out.clear();
        while self.tls.wants_write() {
            self.tls.write_tls(&mut self.out)?;
        }
        if self.out.is_empty() {
            return Ok(());
        }
        self.tcp.write_all(&self.out).await
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection, StreamOwned};

    use super::*;
    use crate::tls::{TlsArgs, Version};

    /// A rustls server on a thread: answers one GET per connection with a 200, for
    /// `connections` connections; tickets on (TLS 1.3) and a session cache (TLS 1.2).
    fn server(connections: usize) -> std::net::SocketAddr {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .expect("server config");
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("ticketer");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for _ in 0..connections {
                let (tcp, _) = listener.accept().expect("accept");
                let conn = ServerConnection::new(config.clone()).expect("server connection");
                let mut tls = BufReader::new(StreamOwned::new(conn, tcp));
                let mut line = String::new();
                while tls.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let tls = tls.get_mut();
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                let _ = tls.flush();
                // Until the client's close_notify.
                let _ = tls.read(&mut [0u8; 64]);
            }
        });
        addr
    }

    /// Opens `n` connections one after the other, each with one request; returns whether each
    /// handshake resumed.
    fn client(version: Version, n: usize) -> Vec<Option<bool>> {
        let addr = server(n);
        let target =
            Target::parse(&format!("https://localhost:{}/", addr.port()), 0).expect("target");
        let args = TlsArgs {
            tls_version: Some(version),
            resume: true,
            server_name: None,
        };
        let tls = TlsClient::new(&args, &target.host).expect("client");
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let mut resumed = Vec::new();
                for _ in 0..n {
                    let opened = Stream::open(&target, Some(&tls), Duration::from_secs(5))
                        .await
                        .expect("handshake");
                    let mut stream = opened.stream;
                    stream.write_all(&target.request).await.expect("request");
                    let mut response = Vec::new();
                    let mut buf = [0u8; 256];
                    while !response.ends_with(b"ok") {
                        let read = stream.read(&mut buf).await.expect("response");
                        assert!(read > 0, "the response ended early");
                        response.extend_from_slice(&buf[..read]);
                    }
                    assert!(response.starts_with(b"HTTP/1.1 200 OK\r\n"));
                    stream.close().await;
                    resumed.push(opened.resumed);
                }
                resumed
            })
            .expect("executor")
            .join()
            .expect("client thread")
    }

    #[test]
    fn tls13_requests_and_resumes_by_ticket() {
        assert_eq!(
            client(Version::Tls13, 3),
            [Some(false), Some(true), Some(true)]
        );
    }

    #[test]
    fn tls12_requests_and_resumes_by_session_id() {
        assert_eq!(
            client(Version::Tls12, 3),
            [Some(false), Some(true), Some(true)]
        );
    }
}
