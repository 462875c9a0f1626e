//! A handshaken TLS connection driven by poll-based I/O, for the h2 crate: rustls is sans-I/O,
//! so the `Connection` our rent-I/O handshake made (SNI, ALPN, mutual TLS, the handshake
//! timeout all stay in `tls::accept` and `tls::connect`) simply goes on over a poll stream,
//! with the plaintext it already decrypted and the ciphertext read but not yet given to it.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::Connection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Plaintext rustls may hold for sending before a write is pushed back.
const SEND_BUFFER_LIMIT: usize = 64 * 1024;

pub struct PollTls<IO> {
    io: IO,
    conn: Connection,
    /// Decrypted bytes rustls holds for reading, as of its last `process_new_packets`.
    plaintext: usize,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> PollTls<IO> {
    /// `unread`: ciphertext read from the socket that `conn` has not taken yet.
    pub fn new(io: IO, mut conn: Connection, mut unread: &[u8]) -> io::Result<PollTls<IO>> {
        conn.set_buffer_limit(Some(SEND_BUFFER_LIMIT));
        while !unread.is_empty() {
            // 0: rustls takes nothing more (after close_notify); what is left is not TLS the
            // connection can use.
            if conn.read_tls(&mut unread)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "records after close_notify",
                ));
            }
            conn.process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        let plaintext = conn
            .process_new_packets()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            .plaintext_bytes_to_read();
        Ok(PollTls {
            io,
            conn,
            plaintext,
        })
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Writes out every record rustls has ready.
    fn poll_send_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = Blocking {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads ciphertext once and decrypts it; Ok(0) when the socket ended.
    fn poll_receive_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = Blocking {
            io: &mut self.io,
            cx,
        };
        let n = match self.conn.read_tls(&mut io) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match self.conn.process_new_packets() {
            Ok(state) => self.plaintext = state.plaintext_bytes_to_read(),
            Err(e) => {
                // The alert rustls queued says why; the error is what the caller needs.
                let _ = self.poll_send_records(cx);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
        Poll::Ready(Ok(n))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for PollTls<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // Zero only as much of the caller's buffer as there is plaintext to copy into it
            // (the h2 crate hands a fresh, uninitialised buffer to every read), and at least
            // a byte, so that Ok(0) still means close_notify.
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let want = this.plaintext.clamp(1, buf.remaining());
            match this.conn.reader().read(buf.initialize_unfilled_to(want)) {
                // Ok(0): close_notify, the end of the stream.
                Ok(n) => {
                    this.plaintext = this.plaintext.saturating_sub(n);
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: the end of the stream, as for
                // `TlsStream`; HTTP/2's framing tells a cut-short connection.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records owed to the peer (a key update's answer, an alert) go out even when
            // only reading; a full socket must not stop the read, so Pending is not waited on.
            if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                return Poll::Ready(Err(e));
            }
            ready!(this.poll_receive_records(cx))?;
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PollTls<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut n = this.conn.writer().write(src)?;
        let sent = this.poll_send_records(cx)?;
        if n == 0 && !src.is_empty() {
            // rustls's buffer was full: only room made by sending lets this write in.
            if sent.is_pending() {
                return Poll::Pending;
            }
            n = this.conn.writer().write(src)?;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.conn.writer().flush()?;
        ready!(this.poll_send_records(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.conn.send_close_notify();
        ready!(this.poll_send_records(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

/// `std::io` over a poll stream, for rustls's `read_tls`/`write_tls`: Pending becomes
/// WouldBlock, with the waker already registered by the poll.
struct Blocking<'a, 'b, IO> {
    io: &'a mut IO,
    cx: &'a mut Context<'b>,
}

impl<IO: AsyncRead + Unpin> Read for Blocking<'_, '_, IO> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl<IO: AsyncWrite + Unpin> Write for Blocking<'_, '_, IO> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use ringway_config::DriverChoice;

    use super::*;
    use crate::http::h2::io::PollStream;
    use crate::rt::runtime::{build, Built};
    use crate::tls::TlsStream;

    fn configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = key.cert.der().clone();
        let private = rustls::pki_types::PrivateKeyDer::Pkcs8(key.key_pair.serialize_der().into());
        let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], private)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let mut client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        (Arc::new(server), Arc::new(client))
    }

    /// The handshake by the rent-I/O `TlsStream` on both sides, then h2 over `PollTls`: the
    /// client's first request rides in the same flight as its Finished where it can, so the
    /// server's hand-over must keep what was read but not decrypted.
    fn h2_over_tls(choice: DriverChoice) {
        let run = async {
            let (server_cfg, client_cfg) = configs();
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let conn = rustls::ServerConnection::new(server_cfg).unwrap();
                let mut tls = TlsStream::new(tcp, conn.into());
                tls.handshake().await.unwrap();
                assert_eq!(tls.connection().alpn_protocol(), Some(&b"h2"[..]));
                let parts = tls.into_parts().await.unwrap();
                let io = PollStream::new(parts.tcp, Vec::new());
                let io = PollTls::new(io, parts.conn, &parts.unread).unwrap();
                let mut h2 = h2::server::handshake(io).await.unwrap();
                while let Some(stream) = h2.accept().await {
                    let (req, mut respond) = stream.unwrap();
                    monoio::spawn(async move {
                        let path = req.uri().path().to_string();
                        let resp = http::Response::builder().status(200).body(()).unwrap();
                        let mut send = respond.send_response(resp, false).unwrap();
                        send.send_data(Bytes::from(path.repeat(20_000)), true)
                            .unwrap();
                    });
                }
            });
            let tcp = monoio::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(client_cfg, name).unwrap();
            let mut tls = TlsStream::new(tcp, conn.into());
            tls.handshake().await.unwrap();
            let parts = tls.into_parts().await.unwrap();
            let io = PollStream::new(parts.tcp, Vec::new());
            let io = PollTls::new(io, parts.conn, &parts.unread).unwrap();
            let (client, conn) = h2::client::handshake(io).await.unwrap();
            monoio::spawn(async move {
                let _ = conn.await;
            });
            let mut tasks = Vec::new();
            for i in 0..10 {
                let mut client = client.clone().ready().await.unwrap();
                tasks.push(monoio::spawn(async move {
                    let req = http::Request::get(format!("https://localhost/{i}"))
                        .body(())
                        .unwrap();
                    let (resp, _) = client.send_request(req, true).unwrap();
                    let mut body = resp.await.unwrap().into_body();
                    let mut got = Vec::new();
                    while let Some(chunk) = body.data().await {
                        let chunk = chunk.unwrap();
                        let _ = body.flow_control().release_capacity(chunk.len());
                        got.extend_from_slice(&chunk);
                    }
                    assert_eq!(got, format!("/{i}").repeat(20_000).into_bytes());
                }));
            }
            for t in tasks {
                t.await;
            }
        };
        match build(choice, 256).expect("a runtime") {
            Built::Uring(mut rt) => rt.block_on(run),
            Built::Legacy(mut rt, _) => rt.block_on(run),
        }
    }

    #[test]
    fn h2_over_tls_on_epoll() {
        h2_over_tls(DriverChoice::Epoll);
    }

    #[test]
    fn h2_over_tls_on_io_uring() {
        h2_over_tls(DriverChoice::IoUring);
    }
}
