//! TLS on both sides, with rustls on aws-lc-rs: listeners that terminate it and upstreams
//! reached over it.
//!
//! A listener's and an upstream's rustls configs are built here once per epoch, on the
//! control thread, from certificates the config loader read (so a reload re-reads the files
//! and new handshakes use the new certificates at once, while established connections keep
//! theirs). What makes resumption work outlives epochs: a listener's ticket keys and session
//! cache pass from the running epoch to the next one for the same name ([`Kept`]) unless
//! the reload changed who may connect, and an upstream whose TLS settings did not change
//! keeps its client config whole (rustls resumes only with the config that made a session). All shards share them, so a client resumes on whichever
//! shard its next connection lands; the ticket keys rotate every 6 hours (the previous key
//! still decrypts). Both take a lock per handshake, never per request.
//!
//! TLS 1.2 and 1.3 only; rustls has no renegotiation.

mod accept;
mod identity;
pub mod poll;
mod sni;
pub mod stream;

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ahash::AHashMap;
use ringway_config::{
    CaBundle, CertKey, ClientAuth, KeyFormat, ListenerTls, TlsVersion, UpstreamTls,
};
use rustls::client::{ClientSessionMemoryCache, Resumption};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ProducesTickets, ServerSessionMemoryCache, StoresServerSessions, WebPkiClientVerifier,
};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    ServerName,
};

pub use accept::{accept, Refusal};
pub use identity::ClientIdentity;
pub use stream::{TlsParts, TlsStream};

/// ALPN protocols a listener offers, in its order of preference.
const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN protocols offered to an HTTP/1.1 upstream.
const UPSTREAM_ALPN: &[&[u8]] = &[b"http/1.1"];
/// ALPN protocols offered to an HTTP/2 upstream.
const UPSTREAM_H2_ALPN: &[&[u8]] = &[b"h2"];
/// Client sessions remembered per upstream, for resumption towards its endpoints.
const CLIENT_SESSIONS: usize = 1024;

pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: &[&rustls::SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];
    static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match min {
        TlsVersion::V1_2 => BOTH,
        TlsVersion::V1_3 => ONLY_13,
    }
}

/// A listener's TLS in one epoch.
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
    /// The header that carries a verified client certificate's identity upstream
    /// (lower-case); client-sent copies are always removed.
    pub client_cert_header: Option<Box<str>>,
    tickets: Option<Arc<dyn ProducesTickets>>,
    sessions: Option<Arc<ServerSessionMemoryCache>>,
    session_cache: usize,
    /// Mutual TLS: the verifier, run again on resumed sessions (rustls restores a resumed
    /// session's client certificate without checking it against the current CAs or clock),
    /// and whether a certificate is required.
    pub(crate) client_verifier: Option<(Arc<dyn ClientCertVerifier>, ClientAuth)>,
    /// A digest of what decides who may connect (client CAs, client_auth): sessions are
    /// carried into a new epoch only when it is unchanged, so that a reload that tightens
    /// mutual TLS is not walked around by resuming an older session.
    access: u64,
}

/// An upstream's TLS in one epoch.
pub struct ClientTls {
    pub config: Arc<ClientConfig>,
    /// A digest of the settings, for the pool: connections made with other settings are
    /// not reused for this upstream.
    settings: u64,
    /// `sni`, when set: the name every endpoint is sent and verified against.
    pub sni: Option<ServerName<'static>>,
}

/// The TLS state of the running epoch that the next one keeps, by listener and upstream name.
#[derive(Default)]
pub struct Kept<'a> {
    pub listeners: AHashMap<&'a str, &'a ServerTls>,
    pub upstreams: AHashMap<&'a str, &'a ClientTls>,
}

/// A stable, non-zero digest of what `feed` hashes (the same in every epoch of a process).
fn digest(feed: impl FnOnce(&mut ahash::AHasher)) -> u64 {
    let mut h = ahash::RandomState::with_seeds(1, 2, 3, 4).build_hasher();
    feed(&mut h);
    h.finish() | 1
}

fn chain(cert: &CertKey) -> Vec<CertificateDer<'static>> {
    cert.chain
        .iter()
        .map(|der| CertificateDer::from(der.clone()))
        .collect()
}

fn private_key(cert: &CertKey) -> PrivateKeyDer<'static> {
    let der = cert.key.der.clone();
    match cert.key.format {
        KeyFormat::Pkcs1 => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        KeyFormat::Sec1 => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        KeyFormat::Pkcs8 => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
    }
}

fn certified_key(cert: &CertKey) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
    rustls::sign::CertifiedKey::from_der(chain(cert), private_key(cert), &provider())
        .map(Arc::new)
        .map_err(|e| format!("{}: {e}", cert.key_file.display()))
}

fn roots(bundle: &CaBundle) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for der in &bundle.certs {
        store
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| format!("{}: {e}", bundle.file.display()))?;
    }
    Ok(Arc::new(store))
}

/// The system's trust roots, read once per process.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!("system trust roots: {e}");
            }
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system trust roots loaded");
            Arc::new(store)
        })
        .clone()
}

impl ServerTls {
    /// Builds a listener's TLS; `kept` is the same listener's in the running epoch.
    pub fn build(cfg: &ListenerTls, kept: Option<&ServerTls>) -> Result<ServerTls, String> {
        let mut certs = Vec::with_capacity(cfg.certificates.len());
        for cert in &cfg.certificates {
            certs.push((certified_key(cert)?, cert.names.clone()));
        }
        let resolver = Arc::new(sni::SniResolver::new(certs));
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(cfg.min_version))
            .map_err(|e| e.to_string())?;
        let (builder, client_verifier) = match &cfg.client_ca {
            None => (builder.with_no_client_auth(), None),
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider());
                let verifier = match cfg.client_auth {
                    ClientAuth::Required => verifier,
                    ClientAuth::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("{}: {e}", ca.file.display()))?;
                (
                    builder.with_client_cert_verifier(verifier.clone()),
                    Some((verifier, cfg.client_auth)),
                )
            }
        };
        let access = digest(|h| {
            cfg.client_ca.as_ref().map(|ca| &ca.certs).hash(h);
            (cfg.client_auth == ClientAuth::Required).hash(h);
        });
        let kept = kept.filter(|k| k.access == access);
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        let tickets = match (cfg.session_tickets, kept.and_then(|k| k.tickets.clone())) {
            (false, _) => None,
            (true, Some(kept)) => Some(kept),
            (true, None) => {
                Some(rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?)
            }
        };
        if let Some(t) = &tickets {
            config.ticketer = t.clone();
        }
        let sessions = match kept {
            Some(k) if k.session_cache == cfg.session_cache => k.sessions.clone(),
            _ if cfg.session_cache == 0 => None,
            _ => Some(ServerSessionMemoryCache::new(cfg.session_cache)),
        };
        config.session_storage = match &sessions {
            Some(s) => s.clone() as Arc<dyn StoresServerSessions>,
            None => Arc::new(rustls::server::NoServerSessionStorage {}),
        };
        // TLS 1.3 resumes by a ticket: sealed by the ticket keys, else (tickets off) an id
        // into the session cache. One per full handshake is what a resuming client needs.
        config.send_tls13_tickets = usize::from(tickets.is_some() || sessions.is_some());
        Ok(ServerTls {
            config: Arc::new(config),
            handshake_timeout: cfg.handshake_timeout,
            client_cert_header: cfg.client_cert_header.as_deref().map(Box::from),
            tickets,
            sessions,
            session_cache: cfg.session_cache,
            client_verifier,
            access,
        })
    }
}

impl ClientTls {
    /// Builds an upstream's TLS; `kept` is the same upstream's in the running epoch; `h2`:
    /// the upstream speaks HTTP/2, which ALPN asks for.
    pub fn build(
        cfg: &UpstreamTls,
        kept: Option<&ClientTls>,
        h2: bool,
    ) -> Result<ClientTls, String> {
        let settings = digest(|h| {
            h2.hash(h);
            cfg.sni.hash(h);
            cfg.ca.as_ref().map(|ca| &ca.certs).hash(h);
            cfg.client_cert
                .as_ref()
                .map(|c| (&c.chain, &c.key.der))
                .hash(h);
        });
        let sni = match &cfg.sni {
            None => None,
            Some(name) => {
                Some(ServerName::try_from(name.clone()).map_err(|e| format!("sni {name:?}: {e}"))?)
            }
        };
        // rustls resumes a session only with the very verifier and certificate resolver that
        // made it: unchanged settings keep the running config whole, sessions included.
        if let Some(kept) = kept.filter(|k| k.settings == settings) {
            return Ok(ClientTls {
                config: kept.config.clone(),
                settings,
                sni,
            });
        }
        let roots = match &cfg.ca {
            Some(ca) => roots(ca)?,
            None => system_roots(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions(TlsVersion::V1_2))
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let mut config = match &cfg.client_cert {
            None => builder.with_no_client_auth(),
            Some(cert) => builder
                .with_client_auth_cert(chain(cert), private_key(cert))
                .map_err(|e| format!("{}: {e}", cert.key_file.display()))?,
        };
        let alpn = if h2 { UPSTREAM_H2_ALPN } else { UPSTREAM_ALPN };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config.resumption =
            Resumption::store(Arc::new(ClientSessionMemoryCache::new(CLIENT_SESSIONS)));
        Ok(ClientTls {
            config: Arc::new(config),
            settings,
            sni,
        })
    }

    /// The pool key part of connections to an endpoint with this `host` (never 0).
    pub fn pool_key(&self, host: Option<&str>) -> u64 {
        match host {
            None => self.settings,
            Some(host) => digest(|h| {
                self.settings.hash(h);
                host.hash(h);
            }),
        }
    }

    /// The name an endpoint is sent (SNI) and verified against: `sni`, else the endpoint's
    /// host name as configured, else its address.
    pub fn server_name(
        &self,
        host: Option<&str>,
        addr: std::net::SocketAddr,
    ) -> ServerName<'static> {
        if let Some(sni) = &self.sni {
            return sni.clone();
        }
        if let Some(name) = host.and_then(|h| ServerName::try_from(h.to_owned()).ok()) {
            return name;
        }
        ServerName::IpAddress(addr.ip().into())
    }
}

/// Starts a client handshake over `io` and drives it to its end.
pub async fn connect(
    io: monoio::net::TcpStream,
    tls: &ClientTls,
    name: ServerName<'static>,
) -> std::io::Result<TlsStream> {
    let conn = rustls::ClientConnection::new(tls.config.clone(), name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stream = TlsStream::new(io, rustls::Connection::Client(conn));
    stream.handshake().await?;
    Ok(stream)
}

/// The rustls error inside an I/O error from a TLS stream, if that is what it was.
pub fn tls_error(e: &std::io::Error) -> Option<&rustls::Error> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}
