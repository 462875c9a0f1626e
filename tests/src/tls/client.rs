//! A blocking rustls client: [`TlsClient`] holds one configuration (trust, SNI, client
//! certificate, ALPN, session store, versions) and opens [`TlsConn`]s, which are the plain
//! [`Client`] over a TLS session, with what the handshake showed on top.
//!
//! The handshake runs on the calling thread; a thread-local notes whether the server asked
//! for a client certificate, since rustls resumes a session only under the very same
//! (`Arc`) certificate resolver, so the resolver cannot be made per connection.

use super::{provider, CertFiles, CertInfo, Pki, TlsVersion};
use crate::client::{connect_tcp, Transport, READ_TIMEOUT};
use crate::Client;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionMemoryCache, ClientSessionStore, ResolvesClientCert, Resumption,
    WebPkiServerVerifier,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ProtocolVersion, RootCertStore,
    SignatureScheme, StreamOwned,
};
use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use rustls::HandshakeKind;

/// How long [`TlsClient::connect`] waits, after a TLS 1.3 handshake in which the server asked
/// for a client certificate, for the server's verdict on it
/// ([`TlsClientBuilder::client_auth_grace`]).
const CLIENT_AUTH_GRACE: Duration = Duration::from_secs(1);

/// How a [`TlsClient`] is made: `TlsClient::builder().trust(&pki).server_name("a.test").build()`.
pub struct TlsClientBuilder {
    roots: RootCertStore,
    verify: bool,
    server_name: Option<String>,
    sni: bool,
    client_cert: Option<CertFiles>,
    alpn: Vec<String>,
    /// `None`: no resumption.
    store: Option<Arc<dyn ClientSessionStore>>,
    /// Taken from another client by [`TlsClientBuilder::resume_with`].
    identity: Option<Identity>,
    version: Option<TlsVersion>,
    client_auth_grace: Duration,
}

/// What rustls requires to be the very same (`Arc`) for a stored session to be resumed:
/// the server certificate verifier and the client certificate resolver.
#[derive(Clone)]
struct Identity {
    verifier: Arc<dyn ServerCertVerifier>,
    resolver: Arc<dyn ResolvesClientCert>,
}

impl TlsClientBuilder {
    /// Trusts `pki`'s root (in addition to any trusted before).
    pub fn trust(mut self, pki: &Pki) -> TlsClientBuilder {
        self.add_root(pki.ca_der().clone());
        self.identity = None;
        self
    }

    /// Trusts every certificate in a PEM file (a CA file or bundle).
    pub fn trust_file(mut self, path: &Path) -> TlsClientBuilder {
        let certs = CertificateDer::pem_file_iter(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for cert in certs {
            self.add_root(cert.unwrap_or_else(|e| panic!("bad PEM in {}: {e}", path.display())));
        }
        self.identity = None;
        self
    }

    fn add_root(&mut self, der: CertificateDer<'static>) {
        self.roots
            .add(der)
            .unwrap_or_else(|e| panic!("a trust anchor: {e}"));
    }

    /// Skips verifying the server's certificate (signatures are still checked): to look at
    /// what a server sends whatever it is.
    pub fn accept_any_certificate(mut self) -> TlsClientBuilder {
        self.verify = false;
        self.identity = None;
        self
    }

    /// The name the server's certificate is verified against and (unless [`sni`] is off)
    /// sent as SNI. An IP literal is verified against IP address SANs and sends no SNI,
    /// which is also what happens without a server name: the connected address is used.
    ///
    /// [`sni`]: TlsClientBuilder::sni
    pub fn server_name(mut self, name: &str) -> TlsClientBuilder {
        self.server_name = Some(name.to_string());
        self
    }

    /// Whether the server name goes out as SNI (default true); false sends no SNI but still
    /// verifies the certificate against the server name.
    pub fn sni(mut self, send: bool) -> TlsClientBuilder {
        self.sni = send;
        self
    }

    /// Presents this certificate (its whole chain) when the server asks for one.
    pub fn client_cert(mut self, files: &CertFiles) -> TlsClientBuilder {
        self.client_cert = Some(files.clone());
        self.identity = None;
        self
    }

    /// ALPN protocols offered, in order (default `["http/1.1"]`; empty offers none).
    pub fn alpn(mut self, protocols: &[&str]) -> TlsClientBuilder {
        self.alpn = protocols.iter().map(|p| p.to_string()).collect();
        self
    }

    /// Resumes the sessions of `other` (and `other` those of this one): its session store,
    /// and, because rustls resumes a session only under the very certificate verifier and
    /// client certificate it was made with, its trust and client certificate too, in place
    /// of any set on this builder (setting either afterwards undoes the sharing of them).
    /// Without this, the connections of one client resume each other's sessions already.
    pub fn resume_with(mut self, other: &TlsClient) -> TlsClientBuilder {
        self.store = other.store.clone();
        self.identity = Some(other.identity.clone());
        self
    }

    /// Never resumes: every handshake is a full one.
    pub fn no_resumption(mut self) -> TlsClientBuilder {
        self.store = None;
        self
    }

    /// Offers only this version (default: 1.3 and 1.2).
    pub fn version(mut self, version: TlsVersion) -> TlsClientBuilder {
        self.version = Some(version);
        self
    }

    /// TLS 1.3 finishes the client's side of the handshake before the server has judged the
    /// client's certificate; a rejection (`CertificateRequired`, `UnknownCA`, ...) comes as
    /// an alert after it, acceptance as the session tickets a server sends. When the server
    /// asked for a certificate, `connect` waits up to this long (default 1 s) for the first
    /// record after the handshake, so a rejection is its error. A server that sends nothing
    /// costs the whole wait; zero skips it (the rejection then shows on the first read).
    pub fn client_auth_grace(mut self, grace: Duration) -> TlsClientBuilder {
        self.client_auth_grace = grace;
        self
    }

    pub fn build(self) -> TlsClient {
        let provider = provider();
        let identity = match self.identity {
            Some(identity) => identity,
            None => Identity::new(
                &provider,
                self.verify.then_some(self.roots),
                self.client_cert.as_ref(),
            ),
        };
        let versions = TlsVersion::rustls_list(self.version);
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .expect("aws-lc-rs supports TLS 1.2 and 1.3")
            .dangerous()
            .with_custom_certificate_verifier(Arc::clone(&identity.verifier))
            .with_client_cert_resolver(Arc::clone(&identity.resolver));
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.enable_sni = self.sni;
        config.resumption = match &self.store {
            Some(store) => Resumption::store(Arc::clone(store)),
            None => Resumption::disabled(),
        };
        let server_name = self.server_name.map(|name| {
            ServerName::try_from(name.clone())
                .unwrap_or_else(|e| panic!("server name {name:?}: {e}"))
        });
        TlsClient {
            config: Arc::new(config),
            server_name,
            store: self.store,
            identity,
            client_auth_grace: self.client_auth_grace,
        }
    }
}

impl Identity {
    /// Verifies against `roots` (`None`: accepts any certificate); presents `client_cert`.
    fn new(
        provider: &Arc<CryptoProvider>,
        roots: Option<RootCertStore>,
        client_cert: Option<&CertFiles>,
    ) -> Identity {
        let verifier: Arc<dyn ServerCertVerifier> = match roots {
            Some(roots) => {
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
                    .build()
                    .unwrap_or_else(|e| panic!("a server certificate verifier: {e}"))
            }
            None => Arc::new(AcceptAny(Arc::clone(provider))),
        };
        let key = client_cert.map(|files| {
            let key = CertifiedKey::from_der(files.chain.clone(), files.key_der(), provider)
                .unwrap_or_else(|e| panic!("client certificate {}: {e}", files.cert.display()));
            Arc::new(key)
        });
        Identity {
            verifier,
            resolver: Arc::new(ClientCert { key }),
        }
    }
}

/// A TLS client configuration; every [`TlsClient::connect`] is one new connection.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    store: Option<Arc<dyn ClientSessionStore>>,
    identity: Identity,
    client_auth_grace: Duration,
}

impl TlsClient {
    /// Trusts nothing yet, no server name (the address is verified and no SNI is sent), no
    /// client certificate, ALPN `http/1.1`, a session store of its own, TLS 1.3 and 1.2.
    pub fn builder() -> TlsClientBuilder {
        TlsClientBuilder {
            roots: RootCertStore::empty(),
            verify: true,
            server_name: None,
            sni: true,
            client_cert: None,
            alpn: vec!["http/1.1".to_string()],
            store: Some(Arc::new(ClientSessionMemoryCache::new(64))),
            identity: None,
            version: None,
            client_auth_grace: CLIENT_AUTH_GRACE,
        }
    }

    /// The common case: trusts `pki`, verifies and sends `server_name`.
    pub fn new(pki: &Pki, server_name: &str) -> TlsClient {
        TlsClient::builder()
            .trust(pki)
            .server_name(server_name)
            .build()
    }

    /// The session store this client resumes from (`None` with
    /// [`TlsClientBuilder::no_resumption`]).
    pub fn session_store(&self) -> Option<Arc<dyn ClientSessionStore>> {
        self.store.clone()
    }

    /// Connects and completes the handshake. A failed handshake is an error whose text
    /// names rustls's reason, e.g. `TLS handshake with 127.0.0.1:4000: invalid peer
    /// certificate: UnknownIssuer` or `...: received fatal alert: CertificateRequired`.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TlsConn> {
        self.connect_after(addr, &[])
    }

    /// [`TlsClient::connect`], writing `preamble` (a PROXY protocol header) on the TCP
    /// connection before the handshake.
    pub fn connect_after(&self, addr: SocketAddr, preamble: &[u8]) -> io::Result<TlsConn> {
        let mut tcp = connect_tcp(addr)?;
        if !preamble.is_empty() {
            std::io::Write::write_all(&mut tcp, preamble)?;
        }
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        let mut conn = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| io::Error::other(format!("TLS client for {addr}: {e}")))?;
        let failed =
            |e: io::Error| io::Error::new(e.kind(), format!("TLS handshake with {addr}: {e}"));
        // The handshake runs on this thread, so the resolver's note is this connection's.
        CERT_REQUESTED.set(false);
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).map_err(failed)?;
        }
        let client_cert_requested = CERT_REQUESTED.get();
        let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
        if client_cert_requested && tls13 && !self.client_auth_grace.is_zero() {
            await_verdict(&mut conn, &mut tcp, self.client_auth_grace).map_err(failed)?;
        }
        Ok(Client::from_stream(TlsStream {
            tls: StreamOwned::new(conn, tcp),
            client_cert_requested,
        }))
    }

    /// The error text of a connection that is expected to fail; panics when it succeeds.
    pub fn connect_err(&self, addr: SocketAddr) -> String {
        match self.connect(addr) {
            Ok(conn) => panic!(
                "the TLS handshake with {addr} succeeded ({:?}, peer {:?}); it should have failed",
                conn.protocol_version(),
                conn.peer_names()
            ),
            Err(e) => e.to_string(),
        }
    }
}

/// Reads what a TLS 1.3 server sends right after the handshake, until a whole record was
/// decoded or `grace` passed: an alert (or a close) is the server's rejection of the client
/// certificate, anything else (session tickets, data) or nothing its acceptance.
fn await_verdict(
    conn: &mut ClientConnection,
    tcp: &mut TcpStream,
    grace: Duration,
) -> io::Result<()> {
    tcp.set_read_timeout(Some(grace))?;
    let tickets = conn.tls13_tickets_received();
    let verdict = loop {
        match conn.read_tls(tcp) {
            Ok(0) => {
                break Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection right after the handshake",
                ))
            }
            Ok(_) => match conn.process_new_packets() {
                Err(e) => break Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                Ok(state) if state.plaintext_bytes_to_read() > 0 => break Ok(()),
                Ok(_) if conn.tls13_tickets_received() > tickets => break Ok(()),
                Ok(_) => continue,
            },
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                break Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    tcp.set_read_timeout(Some(READ_TIMEOUT))?;
    verdict
}

/// A TLS session on a TCP connection, as a [`Client`] runs over it.
pub struct TlsStream {
    tls: StreamOwned<ClientConnection, TcpStream>,
    client_cert_requested: bool,
}

impl TlsStream {
    pub fn connection(&self) -> &ClientConnection {
        &self.tls.conn
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tls.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tls.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tls.flush()
    }
}

impl Transport for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.tls.sock
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.tls.conn.send_close_notify();
        self.tls.flush()?;
        self.tls.sock.shutdown(std::net::Shutdown::Write)
    }
}

/// A client connection over TLS: every request/response helper of [`Client`], and what the
/// handshake showed.
pub type TlsConn = Client<TlsStream>;

impl Client<TlsStream> {
    fn tls(&self) -> &ClientConnection {
        self.stream().connection()
    }

    /// Full or resumed (or full after a HelloRetryRequest).
    pub fn handshake_kind(&self) -> HandshakeKind {
        self.tls()
            .handshake_kind()
            .expect("the handshake is complete")
    }

    pub fn protocol_version(&self) -> TlsVersion {
        self.tls()
            .protocol_version()
            .and_then(TlsVersion::from_rustls)
            .expect("TLS 1.2 or 1.3 was negotiated")
    }

    /// The protocol the server chose by ALPN, if any.
    pub fn alpn(&self) -> Option<String> {
        self.tls()
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub fn cipher_suite(&self) -> String {
        self.tls()
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default()
    }

    /// The certificates the server sent, leaf first (DER). On a resumed session: those of
    /// the session's first handshake.
    pub fn peer_certificates(&self) -> Vec<CertificateDer<'static>> {
        self.tls()
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default()
    }

    /// The server's leaf certificate, parsed.
    pub fn peer_cert(&self) -> CertInfo {
        let certs = self.peer_certificates();
        CertInfo::parse(certs.first().expect("the server sent a certificate"))
    }

    /// The subject alternative names of the server's leaf certificate (DNS names, and IP
    /// addresses as text): which certificate the server picked.
    pub fn peer_names(&self) -> Vec<String> {
        self.peer_cert().names
    }

    /// Whether the server asked for a client certificate (mutual TLS, required or optional).
    pub fn client_cert_requested(&self) -> bool {
        self.stream().client_cert_requested
    }

    /// TLS 1.3 session tickets received so far.
    pub fn tickets_received(&self) -> u32 {
        self.tls().tls13_tickets_received()
    }
}

thread_local! {
    /// Set when the server asks the handshake running on this thread for a certificate.
    static CERT_REQUESTED: Cell<bool> = const { Cell::new(false) };
}

/// Presents the client's certificate, if it has one, noting that the server asked.
#[derive(Debug)]
struct ClientCert {
    key: Option<Arc<CertifiedKey>>,
}

impl ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        CERT_REQUESTED.set(true);
        self.key.clone()
    }

    fn has_certs(&self) -> bool {
        self.key.is_some()
    }
}

/// Accepts any server certificate, checking only the handshake signatures made with it.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
