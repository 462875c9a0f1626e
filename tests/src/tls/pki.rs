//! Certificates made at test time: each [`Pki`] is a CA with a directory of its own, and every
//! certificate it issues is a pair of PEM files there ([`CertFiles`]), kept in memory too for
//! the clients and upstreams that use it.

use super::CertInfo;
use crate::TempDir;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::RootCertStore;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The key algorithm of a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyKind {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa2048,
}

impl KeyKind {
    fn generate(self) -> KeyPair {
        let key = match self {
            KeyKind::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            KeyKind::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            KeyKind::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
            KeyKind::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
        };
        key.unwrap_or_else(|e| panic!("generate a {self:?} key: {e}"))
    }
}

/// What a leaf certificate is for: its extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// Both server and client authentication.
    Both,
}

/// When a certificate is valid, as fixed dates so no test depends on the clock's minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validity {
    /// 2020-01-01 to 2100-01-01.
    #[default]
    Current,
    /// 2000-01-01 to 2001-01-01.
    Expired,
    /// 2090-01-01 to 2100-01-01.
    NotYetValid,
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) {
        let (from, to) = match self {
            Validity::Current => (2020, 2100),
            Validity::Expired => (2000, 2001),
            Validity::NotYetValid => (2090, 2100),
        };
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
    }
}

/// What to issue: `pki.issue(&CertSpec::server(&["a.test"]).key(KeyKind::Rsa2048))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    pub usage: Usage,
    /// Subject alternative names: DNS names (wildcards too) or IP literals, which become IP
    /// address SANs.
    pub names: Vec<String>,
    pub common_name: String,
    pub key: KeyKind,
    pub validity: Validity,
    /// The files are `STEM.pem` and `STEM.key` in the Pki's directory; by default a stem
    /// made of the usage, a counter and the first name.
    pub file_stem: Option<String>,
}

impl CertSpec {
    /// A server certificate for `names`, its common name the first of them.
    pub fn server(names: &[&str]) -> CertSpec {
        CertSpec {
            usage: Usage::Server,
            names: names.iter().map(|n| n.to_string()).collect(),
            common_name: names.first().copied().unwrap_or("server").to_string(),
            key: KeyKind::default(),
            validity: Validity::default(),
            file_stem: None,
        }
    }

    /// A client certificate with this common name and no alternative names.
    pub fn client(common_name: &str) -> CertSpec {
        CertSpec {
            usage: Usage::Client,
            names: Vec::new(),
            common_name: common_name.to_string(),
            ..CertSpec::server(&[])
        }
    }

    pub fn names(mut self, names: &[&str]) -> CertSpec {
        self.names = names.iter().map(|n| n.to_string()).collect();
        self
    }

    pub fn common_name(mut self, common_name: &str) -> CertSpec {
        self.common_name = common_name.to_string();
        self
    }

    pub fn usage(mut self, usage: Usage) -> CertSpec {
        self.usage = usage;
        self
    }

    pub fn key(mut self, key: KeyKind) -> CertSpec {
        self.key = key;
        self
    }

    pub fn validity(mut self, validity: Validity) -> CertSpec {
        self.validity = validity;
        self
    }

    pub fn file_stem(mut self, stem: &str) -> CertSpec {
        self.file_stem = Some(stem.to_string());
        self
    }
}

/// An issued certificate: its files, and the same in memory.
#[derive(Debug)]
pub struct CertFiles {
    /// The leaf, then the intermediates of the issuing [`Pki`] (if any), PEM.
    pub cert: PathBuf,
    /// The leaf's private key, PKCS#8 PEM.
    pub key: PathBuf,
    /// What was issued (names, usage, key kind, ...).
    pub spec: CertSpec,
    /// The leaf, then the intermediates: what `cert` holds, as DER.
    pub chain: Vec<CertificateDer<'static>>,
    pub cert_pem: String,
    pub key_pem: String,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl Clone for CertFiles {
    fn clone(&self) -> CertFiles {
        CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            spec: self.spec.clone(),
            chain: self.chain.clone(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl CertFiles {
    /// The leaf certificate.
    pub fn der(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }

    /// The leaf, parsed: subject, serial, fingerprint, names.
    pub fn info(&self) -> CertInfo {
        CertInfo::parse(self.der())
    }

    /// The leaf's serial number, lower-case hex (as [`CertInfo::serial`]).
    pub fn serial(&self) -> String {
        self.info().serial
    }

    /// SHA-256 of the leaf's DER, lower-case hex (as [`CertInfo::sha256`]).
    pub fn sha256(&self) -> String {
        super::sha256_hex(self.der())
    }

    /// `{ cert = "/abs/x.pem", key = "/abs/x.key" }`: one entry of `certificates = [...]`,
    /// or the `cert`/`key` pair of an `[upstreams.tls]` table, with absolute paths.
    pub fn toml(&self) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.cert.display(),
            self.key.display()
        )
    }

    /// `cert = "/abs/x.pem"` and `key = "/abs/x.key"` on two lines: the client certificate
    /// of an `[upstreams.tls]` table.
    pub fn toml_keys(&self) -> String {
        format!(
            "cert = \"{}\"\nkey = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// [`CertFiles::toml`] with the bare file names, for a config file written into the
    /// Pki's directory (`Gateway::start_in`), which reads them relative to itself.
    pub fn toml_relative(&self) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            file_name(&self.cert),
            file_name(&self.key)
        )
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A certificate authority for one test, with a temp directory of its own (removed on drop)
/// holding `ca.pem` and every certificate it issues.
pub struct Pki {
    name: String,
    dir: TempDir,
    /// The certificate and key that sign what this Pki issues: the root, or an intermediate.
    signer: rcgen::Certificate,
    signer_key: KeyPair,
    /// The trust anchor: this Pki's own root, or the root of the Pki it is an intermediate of.
    root: CertificateDer<'static>,
    root_pem: String,
    /// The intermediates between the signer and the root, signer first, PEM and DER: what
    /// each issued leaf file carries after the leaf.
    chain_pem: String,
    chain: Vec<CertificateDer<'static>>,
    ca_file: PathBuf,
    issued: AtomicUsize,
}

impl Pki {
    /// A root CA whose subject is `CN={name} CA, O=ringway tests`; `ca.pem` is written.
    pub fn new(name: &str) -> Pki {
        let key = KeyKind::EcdsaP256.generate();
        let cert = ca_params(name)
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-sign the {name} CA: {e}"));
        let root = cert.der().clone();
        let root_pem = cert.pem();
        Pki::with_signer(name, cert, key, root, root_pem, String::new(), Vec::new())
    }

    /// An intermediate CA signed by this one: the leaves it issues carry it in their cert
    /// files (leaf then intermediate), and its `ca.pem` is this Pki's root, the anchor
    /// clients trust.
    pub fn intermediate(&self, name: &str) -> Pki {
        let key = KeyKind::EcdsaP256.generate();
        let mut params = ca_params(name);
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&key, &self.signer, &self.signer_key)
            .unwrap_or_else(|e| panic!("sign the {name} intermediate: {e}"));
        let chain_pem = cert.pem() + &self.chain_pem;
        let mut chain = vec![cert.der().clone()];
        chain.extend(self.chain.iter().cloned());
        let (root, root_pem) = (self.root.clone(), self.root_pem.clone());
        Pki::with_signer(name, cert, key, root, root_pem, chain_pem, chain)
    }

    fn with_signer(
        name: &str,
        signer: rcgen::Certificate,
        signer_key: KeyPair,
        root: CertificateDer<'static>,
        root_pem: String,
        chain_pem: String,
        chain: Vec<CertificateDer<'static>>,
    ) -> Pki {
        let dir = TempDir::new("pki");
        let ca_file = dir.path().join("ca.pem");
        write_atomically(&ca_file, &root_pem);
        Pki {
            name: name.to_string(),
            dir,
            signer,
            signer_key,
            root,
            root_pem,
            chain_pem,
            chain,
            ca_file,
            issued: AtomicUsize::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory every file of this Pki is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `ca.pem`: the root certificate, what a client or the gateway trusts (`client_ca`,
    /// `[upstreams.tls] ca`).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.root
    }

    pub fn ca_pem(&self) -> &str {
        &self.root_pem
    }

    /// A root store holding only this Pki's root.
    pub fn root_store(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.root.clone())
            .unwrap_or_else(|e| panic!("the {} root as a trust anchor: {e}", self.name));
        roots
    }

    /// A server certificate for `names` (DNS names, wildcards, IP literals).
    pub fn issue_server(&self, names: &[&str]) -> CertFiles {
        self.issue(&CertSpec::server(names))
    }

    /// A client certificate (client-auth usage) with this common name.
    pub fn issue_client(&self, common_name: &str) -> CertFiles {
        self.issue(&CertSpec::client(common_name))
    }

    /// Issues `spec` into new files `STEM.pem` and `STEM.key` in [`Pki::dir`].
    pub fn issue(&self, spec: &CertSpec) -> CertFiles {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let stem = spec
            .file_stem
            .clone()
            .unwrap_or_else(|| default_stem(spec, n));
        let cert = self.dir().join(format!("{stem}.pem"));
        let key = self.dir().join(format!("{stem}.key"));
        self.issue_into(spec, cert, key)
    }

    /// A new certificate for the same spec into the same files (replaced by rename, the key
    /// file first): a fresh key and a new serial, so a test tells old from new by
    /// [`CertFiles::serial`] or [`CertFiles::sha256`]. For certificate reload tests.
    pub fn reissue(&self, old: &CertFiles) -> CertFiles {
        self.issue_into(&old.spec, old.cert.clone(), old.key.clone())
    }

    /// Writes `contents` to the file `name` in [`Pki::dir`] (e.g. a bundle of two CAs, or a
    /// broken PEM for a config error) and returns its path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        write_atomically(&path, contents);
        path
    }

    fn issue_into(&self, spec: &CertSpec, cert_path: PathBuf, key_path: PathBuf) -> CertFiles {
        let key = spec.key.generate();
        let mut params = CertificateParams::new(spec.names.clone())
            .unwrap_or_else(|e| panic!("names {:?}: {e}", spec.names));
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params
            .distinguished_name
            .push(DnType::OrganizationName, "ringway tests");
        params.serial_number = Some(fresh_serial());
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if spec.key == KeyKind::Rsa2048 {
            params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        }
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Both => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        spec.validity.apply(&mut params);
        let leaf = params
            .signed_by(&key, &self.signer, &self.signer_key)
            .unwrap_or_else(|e| panic!("issue {spec:?}: {e}"));
        let cert_pem = leaf.pem() + &self.chain_pem;
        let key_pem = key.serialize_pem();
        write_atomically(&key_path, &key_pem);
        write_atomically(&cert_path, &cert_pem);
        let mut chain = vec![leaf.der().clone()];
        chain.extend(self.chain.iter().cloned());
        CertFiles {
            cert: cert_path,
            key: key_path,
            spec: spec.clone(),
            chain,
            cert_pem,
            key_pem,
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        }
    }
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("name", &self.name)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ringway tests");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(fresh_serial());
    Validity::Current.apply(&mut params);
    params
}

/// `server-3-a.test`, `client-4-alice`, `server-5-wildcard.a.test`: readable in a listing of
/// the directory, and unique within it.
fn default_stem(spec: &CertSpec, n: usize) -> String {
    let usage = match spec.usage {
        Usage::Server => "server",
        Usage::Client => "client",
        Usage::Both => "cert",
    };
    let first = spec.names.first().unwrap_or(&spec.common_name);
    let first: String = first
        .replace('*', "wildcard")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{usage}-{n}-{first}")
}

/// 16 bytes, never repeated in a process and unlikely across runs: the time, a process-wide
/// counter and the pid. The top bit is clear (a positive integer) and the top byte non-zero.
fn fresh_serial() -> SerialNumber {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&nanos.to_be_bytes());
    bytes[8..].copy_from_slice(&((u64::from(std::process::id()) << 32) ^ count).to_be_bytes());
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// Writes `path` by a rename, so a reader sees the old file or the new one, never a part.
fn write_atomically(path: &Path, contents: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path)
        .unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), path.display()));
}
