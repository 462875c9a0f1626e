//! TLS for the tests: certificates made at test time ([`Pki`], PEM files in a directory it
//! owns), a blocking rustls client whose connections are the plain [`crate::Client`] over TLS
//! ([`TlsClient`], [`TlsConn`]), the test upstream serving over TLS ([`TlsUpstream`], which
//! records the SNI and client certificate of every handshake), config snippets that point the
//! gateway at the files ([`tls_listener_toml`], [`upstream_tls_toml`]), and the
//! `openssl s_client` and `curl` command-line tools when they are installed ([`openssl_s_client`],
//! [`curl_https`]).
//!
//! Crypto: rustls 0.23 on aws-lc-rs, as in the gateway; certificates by rcgen (ECDSA P-256
//! unless a [`CertSpec`] says otherwise), read back with x509-parser into [`CertInfo`].
//!
//! Threading and errors as in the rest of the harness: std threads, blocking sockets, panics
//! on a broken precondition. What a test asserts on is returned instead: a failed handshake
//! is an `io::Error` whose text carries rustls's reason (`invalid peer certificate:
//! UnknownIssuer`, `received fatal alert: CertificateRequired`, ...).

mod client;
mod pki;
#[cfg(test)]
mod selftest;
mod toml;
mod tools;
mod upstream;

pub use client::{HandshakeKind, TlsClient, TlsClientBuilder, TlsConn, TlsStream};
pub use pki::{CertFiles, CertSpec, KeyKind, Pki, Usage, Validity};
pub use toml::{listener_tls_toml, tls_listener_toml, tls_proxy_toml, upstream_tls_toml};
pub use tools::{curl_https, openssl_s_client, CurlOutput};
pub use upstream::{TlsSeen, TlsUpstream, TlsUpstreamBuilder};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::ProtocolVersion;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// A TLS protocol version the harness can pin a client or upstream to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// The value of `min_version` in the gateway's config: `"1.2"` or `"1.3"`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }

    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }

    fn from_rustls(version: ProtocolVersion) -> Option<TlsVersion> {
        match version {
            ProtocolVersion::TLSv1_2 => Some(TlsVersion::Tls12),
            ProtocolVersion::TLSv1_3 => Some(TlsVersion::Tls13),
            _ => None,
        }
    }

    /// Both versions, or only `pinned`, as rustls's config builders take them.
    fn rustls_list(pinned: Option<TlsVersion>) -> Vec<&'static rustls::SupportedProtocolVersion> {
        match pinned {
            Some(version) => vec![version.rustls()],
            None => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }
}

impl std::fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The provider every client and upstream here uses, as the gateway does.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What a test compares of a certificate: names, subject, serial and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject as x509-parser prints it, e.g. `CN=alice, O=ringway tests`.
    pub subject: String,
    pub issuer: String,
    /// The subject's common name, when it has one.
    pub common_name: Option<String>,
    /// The serial number in lower-case hex, without leading zeros or colons.
    pub serial: String,
    /// SHA-256 of the DER, lower-case hex without colons.
    pub sha256: String,
    /// The subject alternative names: DNS names as written (`*.a.test`), IP addresses as
    /// text (`127.0.0.1`, `::1`).
    pub names: Vec<String>,
    pub der: CertificateDer<'static>,
}

impl CertInfo {
    /// Parses one DER certificate; panics when it is not one.
    pub fn parse(der: &CertificateDer<'_>) -> CertInfo {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .unwrap_or_else(|e| panic!("not an X.509 certificate: {e}"));
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => names.push(dns.to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            names.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let serial = hex(cert.raw_serial());
        let serial = serial.trim_start_matches('0');
        CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name,
            serial: if serial.is_empty() { "0" } else { serial }.to_string(),
            sha256: sha256_hex(der),
            names,
            der: der.clone().into_owned(),
        }
    }

    /// The first certificate of a PEM file (a leaf file written by [`Pki`], a CA file, a
    /// bundle); panics when there is none.
    pub fn from_pem_file(path: &Path) -> CertInfo {
        let der = CertificateDer::pem_file_iter(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .next()
            .unwrap_or_else(|| panic!("no certificate in {}", path.display()))
            .unwrap_or_else(|e| panic!("bad PEM in {}: {e}", path.display()));
        CertInfo::parse(&der)
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// SHA-256 of `bytes`, lower-case hex without colons (how certificate fingerprints are
/// compared here).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
