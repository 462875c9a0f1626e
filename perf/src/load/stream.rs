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
