//! The client side of TLS for `load` and `idle` on `https://` URLs: a rustls client (on
//! aws-lc-rs) made as cheap as a benchmark client can be, so that the server's side of each
//! handshake, not the client's, is what a run measures.
//!
//! - The server's certificate and its handshake signature are not checked (the server still
//!   signs: that is the cost being measured). Never use this client for anything else.
//! - One X25519 key pair per process is reused as the client's key share of every handshake
//!   (the server still makes a fresh one of its own and does its half of the exchange): the
//!   client saves a key generation per handshake.
//! - One key-exchange group used (X25519, which nginx's OpenSSL, HAProxy's and rustls all
//!   prefer) and one AEAD (AES-128-GCM) per version, so every server negotiates the same.
//!
//! Resumption (`--resume`): TLS 1.3 with the server's tickets, TLS 1.2 with its session IDs
//! (the server's session cache), kept in memory per process; without it every connection
//! makes a full handshake.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use aws_lc_rs::agreement;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls12Resumption,
    Tls13ClientSessionValue,
};
use rustls::crypto::aws_lc_rs::{self as provider, cipher_suite};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, NamedGroup, PeerMisbehaved, SignatureScheme,
    SupportedProtocolVersion,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Version {
    #[value(name = "1.2")]
    Tls12,
    #[value(name = "1.3")]
    Tls13,
}

/// TLS options of `load` and `idle`; they apply to `https://` URLs only.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// TLS version to offer (https:// only): 1.2 or 1.3. Default: both, 1.3 preferred.
    #[arg(long)]
    pub tls_version: Option<Version>,
    /// Resume TLS sessions on new connections: TLS 1.3 with the server's tickets, TLS 1.2
    /// with its session IDs. Without it every connection makes a full handshake.
    #[arg(long)]
    pub resume: bool,
    /// Server name sent in the handshake (SNI). Default: the URL's host (no SNI for an IP
    /// address).
    #[arg(long)]
    pub server_name: Option<String>,
}

/// What every connection of a process needs to open a TLS session.
#[derive(Debug, Clone)]
pub struct TlsClient {
    pub config: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
}

impl TlsClient {
    /// `host` is the URL's host, used as the server name unless `--server-name` is given.
    pub fn new(args: &TlsArgs, host: &str) -> Result<TlsClient> {
        let name = args.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .with_context(|| format!("{name:?} is not a valid TLS server name"))?;
        Ok(TlsClient {
            config: Arc::new(client_config(args.tls_version, args.resume)?),
            server_name,
        })
    }
}

/// The benchmark client's config: no certificate checks, a reused key share, one group and
/// one AEAD per version.
pub fn client_config(version: Option<Version>, resume: bool) -> Result<ClientConfig> {
    let cheap = CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        ],
        // P-256 listed second and never used: a TLS 1.2 server takes the groups as the curves
        // the client accepts in an ECDSA certificate too, and OpenSSL refuses a P-256 one
        // without it.
        kx_groups: vec![reused_x25519()?, provider::kx_group::SECP256R1],
        ..provider::default_provider()
    };
    let versions: &[&'static SupportedProtocolVersion] = match version {
        None => rustls::DEFAULT_VERSIONS,
        Some(Version::Tls12) => &[&rustls::version::TLS12],
        Some(Version::Tls13) => &[&rustls::version::TLS13],
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(cheap))
        .with_protocol_versions(versions)
        .context("TLS client config")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoVerification))
        .with_no_client_auth();
    config.resumption = if resume {
        // Tickets only for TLS 1.3: TLS 1.2 resumes by session ID, from the server's cache.
        Resumption::store(Arc::new(Sessions::default()))
            .tls12_resumption(Tls12Resumption::SessionIdOnly)
    } else {
        Resumption::disabled()
    };
    Ok(config)
}

/// Accepts any certificate and any handshake signature: the server still makes the
/// signature, and checking it is the client's cost, not the server's.
#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
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
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // What a browser offers, so each server picks its usual scheme for its key.
        vec![
            SignatureScheme::ECDSA_NISTP256_SHA256,
            SignatureScheme::RSA_PSS_SHA256,
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::ECDSA_NISTP384_SHA384,
            SignatureScheme::RSA_PSS_SHA384,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PSS_SHA512,
            SignatureScheme::RSA_PKCS1_SHA512,
            SignatureScheme::ED25519,
        ]
    }
}

/// Most TLS 1.3 tickets kept: each new connection takes one and the server sends two more.
const TICKETS: usize = 1024;

/// The client's sessions, for the one server a run talks to (the server name is ignored).
/// rustls's own store keeps at most 8 tickets per server: too few when dozens of
/// connections open at once, and each connection without one makes a full handshake.
#[derive(Debug, Default)]
struct Sessions(Mutex<SessionState>);

#[derive(Debug, Default)]
struct SessionState {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl Sessions {
    fn state(&self) -> std::sync::MutexGuard<'_, SessionState> {
        // A panic elsewhere cannot leave the state inconsistent: take it anyway.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl ClientSessionStore for Sessions {
    fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
        self.state().kx_hint = Some(group);
    }

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        self.state().kx_hint
    }

    fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.state().tls12 = Some(value);
    }

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.state().tls12.clone()
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {
        self.state().tls12 = None;
    }

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        let mut state = self.state();
        if state.tls13.len() == TICKETS {
            state.tls13.pop_front();
        }
        state.tls13.push_back(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        // The newest first: the oldest may have expired.
        self.state().tls13.pop_back()
    }
}

/// X25519 with one key pair for the whole process, so a handshake costs the client one
/// scalar multiplication (the agreement) instead of two.
#[derive(Debug)]
struct ReusedX25519(Arc<KeyPair>);

#[derive(Debug)]
struct KeyPair {
    private: agreement::PrivateKey,
    public: Vec<u8>,
}

fn reused_x25519() -> Result<&'static dyn SupportedKxGroup> {
    let private = agreement::PrivateKey::generate(&agreement::X25519)
        .map_err(|_| anyhow::anyhow!("generating an X25519 key"))?;
    let public = private
        .compute_public_key()
        .map_err(|_| anyhow::anyhow!("computing an X25519 public key"))?
        .as_ref()
        .to_vec();
    // rustls takes groups as `&'static`: one per config, made once or twice per process.
    Ok(Box::leak(Box::new(ReusedX25519(Arc::new(KeyPair {
        private,
        public,
    })))))
}

impl SupportedKxGroup for ReusedX25519 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        Ok(Box::new(Share(self.0.clone())))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}

/// One handshake's use of the process's key pair.
struct Share(Arc<KeyPair>);

impl ActiveKeyExchange for Share {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        agreement::agree(
            &self.0.private,
            agreement::UnparsedPublicKey::new(&agreement::X25519, peer_pub_key),
            rustls::Error::from(PeerMisbehaved::InvalidKeyShare),
            |secret| Ok(SharedSecret::from(secret)),
        )
    }

    fn pub_key(&self) -> &[u8] {
        &self.0.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519
    }
}
