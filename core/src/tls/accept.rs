//! The server side of a handshake. The ClientHello is read first (rustls's `Acceptor`), so
//! that choices by the name the client asked for are made before any state for the session
//! exists; a first byte that cannot start a TLS record ends it at once, and a plain HTTP
//! request gets nginx's answer to the same mistake.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::server::Acceptor;
use rustls::Connection;

use ringway_config::ClientAuth;

use super::{ClientIdentity, ServerTls, TlsStream};

/// Largest ClientHello read; real ones are well under 2 KiB (a post-quantum key share adds
/// about 1.2 KiB).
const MAX_CLIENT_HELLO: usize = 16 * 1024;

/// Why a handshake did not complete; the label in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not done within the listener's `handshake_timeout`.
    Timeout,
    /// A plain HTTP request on a TLS port (answered with 400).
    PlainHttp,
    /// Bytes that are not TLS at all.
    NotTls,
    /// The client closed or reset the connection during the handshake.
    Closed,
    /// Mutual TLS: no client certificate, or one that does not verify.
    ClientCertificate,
    /// The client refused the listener's certificate (its alert said so: unknown CA, bad or
    /// expired certificate, ...).
    CertificateRejected,
    /// No protocol in common by ALPN (a client that offers only h2, say).
    NoAlpn,
    /// Anything else the TLS protocol refuses: no common version or cipher suite, a
    /// malformed message, an alert from the client.
    Protocol,
}

impl Refusal {
    pub const COUNT: usize = 8;
    pub const ALL: [Refusal; Refusal::COUNT] = [
        Refusal::Timeout,
        Refusal::PlainHttp,
        Refusal::NotTls,
        Refusal::Closed,
        Refusal::ClientCertificate,
        Refusal::CertificateRejected,
        Refusal::NoAlpn,
        Refusal::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Timeout => "timeout",
            Refusal::PlainHttp => "plain_http",
            Refusal::NotTls => "not_tls",
            Refusal::Closed => "closed",
            Refusal::ClientCertificate => "client_certificate",
            Refusal::CertificateRejected => "certificate_rejected",
            Refusal::NoAlpn => "no_alpn",
            Refusal::Protocol => "protocol",
        }
    }

    fn of_rustls(e: &rustls::Error) -> Refusal {
        use rustls::AlertDescription as A;
        use rustls::Error as E;
        match e {
            E::NoCertificatesPresented | E::InvalidCertificate(_) => Refusal::ClientCertificate,
            E::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA,
            ) => Refusal::CertificateRejected,
            E::NoApplicationProtocol => Refusal::NoAlpn,
            _ => Refusal::Protocol,
        }
    }

    fn of_io(e: &io::Error) -> Refusal {
        match super::tls_error(e) {
            Some(e) => Refusal::of_rustls(e),
            // rustls's own limits (a handshake message past 64 KiB) come as invalid data.
            None if e.kind() == io::ErrorKind::InvalidData => Refusal::Protocol,
            None => Refusal::Closed,
        }
    }
}

const PLAIN_HTTP: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
content-length: 50\r\nconnection: close\r\n\r\n400 Bad Request: plain HTTP sent to an HTTPS port\n";

/// Performs the server side of a handshake on `io` with the listener's `tls`.
pub async fn accept(mut io: TcpStream, tls: &ServerTls) -> Result<TlsStream, Refusal> {
    let mut acceptor = Acceptor::default();
    let mut buf = Vec::with_capacity(2048);
    let mut read_total = 0;
    let accepted = loop {
        buf.clear();
        let (res, b) = io.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => return Err(Refusal::Closed),
            Ok(n) => n,
        };
        if read_total == 0 && buf[0] != 0x16 {
            // 0x16: a handshake record. An upper-case letter starts an HTTP method.
            if buf[0].is_ascii_uppercase() {
                let _ = io.write_all(PLAIN_HTTP).await;
                // Read what the client still sends (at most 64 KiB, for at most a second,
                // so that it counts as plain_http, not as a timeout) so that closing does not
                // reset the answer away. The timer is boxed: it is over-aligned, and inline
                // it would make every handshake's future so.
                let _ = io.shutdown().await;
                let drain = async {
                    let mut drained = 0;
                    while drained < 64 * 1024 {
                        let (res, b) = io.read(std::mem::take(&mut buf)).await;
                        buf = b;
                        match res {
                            Ok(n) if n > 0 => drained += n,
                            _ => break,
                        }
                        buf.clear();
                    }
                };
                let _ = Box::pin(monoio::time::timeout(Duration::from_secs(1), drain)).await;
                return Err(Refusal::PlainHttp);
            }
            return Err(Refusal::NotTls);
        }
        read_total += n;
        if read_total > MAX_CLIENT_HELLO {
            return Err(Refusal::Protocol);
        }
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) | Err(_) => return Err(Refusal::Protocol),
                Ok(_) => {}
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((e, mut alert)) => {
                send_alert(&mut io, |out| alert.write_all(out)).await;
                return Err(Refusal::of_rustls(&e));
            }
        }
    };
    let conn = match accepted.into_connection(tls.config.clone()) {
        Ok(conn) => conn,
        Err((e, mut alert)) => {
            send_alert(&mut io, |out| alert.write_all(out)).await;
            return Err(Refusal::of_rustls(&e));
        }
    };
    let mut stream = TlsStream::new(io, Connection::Server(conn));
    stream.handshake().await.map_err(|e| Refusal::of_io(&e))?;
    if let Some((verifier, auth)) = &tls.client_verifier {
        if stream.connection().handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
            // The session's certificate was verified when it was issued: check it against
            // today's CAs and clock before trusting it again.
            match stream.connection().peer_certificates() {
                Some([leaf, intermediates @ ..]) => {
                    let now = rustls_pki_types::UnixTime::now();
                    if verifier
                        .verify_client_cert(leaf, intermediates, now)
                        .is_err()
                    {
                        return Err(Refusal::ClientCertificate);
                    }
                }
                _ if *auth == ClientAuth::Required => return Err(Refusal::ClientCertificate),
                _ => {}
            }
        }
    }
    if let Some(leaf) = stream
        .connection()
        .peer_certificates()
        .and_then(|c| c.first())
    {
        stream.identity = ClientIdentity::of(leaf).map(Rc::new);
    }
    Ok(stream)
}

async fn send_alert(io: &mut TcpStream, write: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) {
    let mut out = Vec::new();
    if write(&mut out).is_ok() && !out.is_empty() {
        let _ = io.write_all(out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::PLAIN_HTTP;

    #[test]
    fn plain_http_answer_is_framed_right() {
        let text = std::str::from_utf8(PLAIN_HTTP).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len());
    }
}
