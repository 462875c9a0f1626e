//! The test upstream over TLS: [`crate::Upstream`] serving each connection after a rustls
//! handshake, recording what every handshake showed ([`TlsSeen`]): the SNI the gateway
//! sent, the ALPN it offered, and the client certificate it presented.

use super::{provider, CertFiles, CertInfo, Pki, TlsVersion};
use crate::upstream::{Conn, Wrap};
use crate::{Received, Reply, Upstream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{Acceptor, WebPkiClientVerifier};
use rustls::{HandshakeKind, RootCertStore, ServerConfig, ServerConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long the upstream waits for a client to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one connection's handshake showed the upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSeen {
    /// The connection: the upstream's accept order, as [`Received::connection`].
    pub connection: usize,
    /// The server name the client sent (SNI); `None` when it sent none.
    pub sni: Option<String>,
    /// The ALPN protocols the client offered, in its order.
    pub alpn_offered: Vec<String>,
    /// The protocol chosen by ALPN.
    pub alpn: Option<String>,
    /// `None` when the handshake failed before a version was agreed.
    pub version: Option<TlsVersion>,
    pub resumed: bool,
    /// The client's verified certificate (leaf), when it presented one.
    pub client_cert: Option<CertInfo>,
    /// Why the handshake failed (`None`: it completed), e.g. `received fatal alert:
    /// UnknownCA` when the client did not trust the upstream's certificate.
    pub error: Option<String>,
}

/// How a [`TlsUpstream`] is made: `TlsUpstream::builder(&cert).client_ca(&pki).ok("hi")`.
pub struct TlsUpstreamBuilder {
    cert: CertFiles,
    client_roots: Option<RootCertStore>,
    client_auth_optional: bool,
    alpn: Vec<String>,
    version: Option<TlsVersion>,
    tickets: bool,
}

impl TlsUpstreamBuilder {
    /// Requires a client certificate issued by `pki` (see [`optional_client_auth`]).
    ///
    /// [`optional_client_auth`]: TlsUpstreamBuilder::optional_client_auth
    pub fn client_ca(mut self, pki: &Pki) -> TlsUpstreamBuilder {
        let roots = self.client_roots.get_or_insert_with(RootCertStore::empty);
        roots
            .add(pki.ca_der().clone())
            .unwrap_or_else(|e| panic!("the {} root as a client CA: {e}", pki.name()));
        self
    }

    /// [`TlsUpstreamBuilder::client_ca`] from a PEM file (every certificate in it).
    pub fn client_ca_file(mut self, path: &Path) -> TlsUpstreamBuilder {
        let roots = self.client_roots.get_or_insert_with(RootCertStore::empty);
        let certs = CertificateDer::pem_file_iter(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for cert in certs {
            let cert = cert.unwrap_or_else(|e| panic!("bad PEM in {}: {e}", path.display()));
            roots
                .add(cert)
                .unwrap_or_else(|e| panic!("a client CA from {}: {e}", path.display()));
        }
        self
    }

    /// Asks for a client certificate but serves clients without one too (a certificate that
    /// is presented must still verify).
    pub fn optional_client_auth(mut self) -> TlsUpstreamBuilder {
        self.client_auth_optional = true;
        self
    }

    /// ALPN protocols the upstream accepts (default none: it ignores the client's offer).
    pub fn alpn(mut self, protocols: &[&str]) -> TlsUpstreamBuilder {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Accepts only this version (default 1.3 and 1.2).
    pub fn version(mut self, version: TlsVersion) -> TlsUpstreamBuilder {
        self.version = Some(version);
        self
    }

    /// Resumes by stateless tickets (TLS 1.2 and 1.3) instead of its session cache.
    pub fn tickets(mut self) -> TlsUpstreamBuilder {
        self.tickets = true;
        self
    }

    /// Starts it on a fresh 127.0.0.1 port; `handler` answers each request as for
    /// [`Upstream::start`].
    pub fn start(
        self,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> TlsUpstream {
        let config = Arc::new(self.server_config());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recording = Arc::clone(&seen);
        let wrap: Wrap = Box::new(move |tcp, id| {
            let (result, record) = handshake(&config, tcp, id);
            lock(&recording).push(record);
            result.map(|tls| Box::new(TlsServerStream(tls)) as Box<dyn Conn>)
        });
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let listener = TcpListener::bind(any).expect("bind the TLS test upstream");
        let upstream = Upstream::start_wrapped(listener, Some(wrap), Box::new(handler))
            .expect("start the TLS test upstream");
        TlsUpstream { upstream, seen }
    }

    /// 200 with `body` to every request.
    pub fn ok(self, body: &str) -> TlsUpstream {
        let body = body.to_string();
        self.start(move |_| Reply::ok(&body))
    }

    /// The rustls config it serves with (for servers of other protocols, such as the h2
    /// test upstream).
    pub fn server_config(&self) -> ServerConfig {
        let provider = provider();
        let versions = TlsVersion::rustls_list(self.version);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&versions)
            .expect("aws-lc-rs supports TLS 1.2 and 1.3");
        let builder = match &self.client_roots {
            None => builder.with_no_client_auth(),
            Some(roots) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots.clone()),
                    Arc::clone(&provider),
                );
                let verifier = if self.client_auth_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier.build().expect("a client certificate verifier");
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(self.cert.chain.clone(), self.cert.key_der())
            .unwrap_or_else(|e| panic!("server certificate {}: {e}", self.cert.cert.display()));
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        if self.tickets {
            config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().expect("a ticketer");
        }
        config
    }
}

/// A running TLS test upstream. It dereferences to the [`Upstream`] underneath: `addr()`,
/// `received()`, `connections()` (TCP connections, handshakes failed or not), `wait_until`.
pub struct TlsUpstream {
    upstream: Upstream,
    seen: Arc<Mutex<Vec<TlsSeen>>>,
}

impl TlsUpstream {
    /// Serves `cert` (no client authentication, no ALPN, TLS 1.3 and 1.2); see
    /// [`TlsUpstream::builder`] for the rest.
    pub fn builder(cert: &CertFiles) -> TlsUpstreamBuilder {
        TlsUpstreamBuilder {
            cert: cert.clone(),
            client_roots: None,
            client_auth_optional: false,
            alpn: Vec::new(),
            version: None,
            tickets: false,
        }
    }

    /// Serves `cert` and answers each request with `handler(&request)`.
    pub fn start(
        cert: &CertFiles,
        handler: impl Fn(&Received) -> Reply + Send + Sync + 'static,
    ) -> TlsUpstream {
        TlsUpstream::builder(cert).start(handler)
    }

    /// Serves `cert`, 200 with `body` to every request.
    pub fn ok(cert: &CertFiles, body: &str) -> TlsUpstream {
        TlsUpstream::builder(cert).ok(body)
    }

    /// Every handshake so far (those that failed too), in connection order.
    pub fn handshakes(&self) -> Vec<TlsSeen> {
        let mut seen = lock(&self.seen).clone();
        seen.sort_by_key(|s| s.connection);
        seen
    }

    /// Waits until `count` handshakes have ended (a handshake is recorded when the upstream's
    /// side of it ends, which may be after the client saw it fail) and returns them all;
    /// panics after `deadline`.
    pub fn wait_handshakes(&self, count: usize, deadline: Duration) -> Vec<TlsSeen> {
        let what = format!("{count} TLS handshakes at the upstream");
        crate::wait_for(&what, deadline, || lock(&self.seen).len() >= count);
        self.handshakes()
    }

    /// The SNI of every handshake so far, in connection order (`None`: no SNI sent).
    pub fn sni_seen(&self) -> Vec<Option<String>> {
        self.handshakes().into_iter().map(|s| s.sni).collect()
    }

    /// The client certificate of every handshake so far, in connection order.
    pub fn client_certs_seen(&self) -> Vec<Option<CertInfo>> {
        self.handshakes()
            .into_iter()
            .map(|s| s.client_cert)
            .collect()
    }

    /// Why each failed handshake failed, in connection order.
    pub fn handshake_errors(&self) -> Vec<String> {
        self.handshakes()
            .into_iter()
            .filter_map(|s| s.error)
            .collect()
    }
}

impl std::ops::Deref for TlsUpstream {
    type Target = Upstream;

    fn deref(&self) -> &Upstream {
        &self.upstream
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type ServerStream = StreamOwned<ServerConnection, TcpStream>;

/// The server side of a handshake on connection `id`, and what it showed.
fn handshake(
    config: &Arc<ServerConfig>,
    mut tcp: TcpStream,
    id: usize,
) -> (io::Result<ServerStream>, TlsSeen) {
    let mut seen = TlsSeen {
        connection: id,
        ..TlsSeen::default()
    };
    let result = accept(config, &mut tcp, &mut seen).and_then(|conn| {
        tcp.set_read_timeout(None)?;
        tcp.set_write_timeout(None)?;
        Ok(StreamOwned::new(conn, tcp))
    });
    if let Err(e) = &result {
        seen.error = Some(e.to_string());
    }
    (result, seen)
}

fn accept(
    config: &Arc<ServerConfig>,
    tcp: &mut TcpStream,
    seen: &mut TlsSeen,
) -> io::Result<ServerConnection> {
    tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    tcp.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut acceptor = Acceptor::default();
    let accepted = loop {
        if acceptor.read_tls(tcp)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before a whole ClientHello",
            ));
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => break accepted,
            Ok(None) => continue,
            Err((e, mut alert)) => {
                let _ = alert.write_all(tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
    };
    let hello = accepted.client_hello();
    seen.sni = hello.server_name().map(str::to_owned);
    seen.alpn_offered = hello
        .alpn()
        .map(|offered| offered.map(lossy).collect())
        .unwrap_or_default();
    let mut conn = accepted
        .into_connection(Arc::clone(config))
        .map_err(|(e, mut alert)| {
            let _ = alert.write_all(tcp);
            io::Error::new(io::ErrorKind::InvalidData, e)
        })?;
    while conn.is_handshaking() {
        conn.complete_io(tcp)?;
    }
    seen.version = conn.protocol_version().and_then(TlsVersion::from_rustls);
    seen.resumed = conn.handshake_kind() == Some(HandshakeKind::Resumed);
    seen.alpn = conn.alpn_protocol().map(lossy);
    seen.client_cert = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(CertInfo::parse);
    Ok(conn)
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The upstream's side of a TLS session; a close it chooses sends `close_notify` first.
struct TlsServerStream(ServerStream);

impl Read for TlsServerStream {
    /// A close without `close_notify` reads as end of file, as on plain TCP: whether it cut
    /// a request short is the HTTP parser's to tell, and a pooled connection the gateway
    /// drops between requests is not an error.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl Write for TlsServerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Conn for TlsServerStream {
    fn finish(&mut self) {
        self.0.conn.send_close_notify();
        let _ = self.0.flush();
    }
}
