//! The PEM files a config names: certificate chains, their private keys and CA bundles.
//! They are read while loading, so a reload re-reads them. Each function checks what the
//! gateway will later need of the file (rustls on aws-lc-rs must accept the key, the key
//! must match the certificate, CAs must make trust anchors) and says what is wrong as
//! `"path": reason`; `tls` places the message at the key that named the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rustls::crypto::aws_lc_rs;
use rustls::server::ParsedCertificate;
use rustls::RootCertStore;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::der_parser::asn1_rs::{Any, Tag, ToDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate, X509Name};

use crate::model::{CaBundle, CertKey, KeyFormat, PrivateKey};

/// A certificate file read and its leaf understood; the key is checked against it next.
pub(super) struct Chain {
    file: PathBuf,
    /// DER, leaf first.
    certs: Vec<Vec<u8>>,
    names: Vec<String>,
    not_after: i64,
    subject: String,
}

/// Reads the certificates of `file` (at least one; the first is the leaf) and what the
/// gateway shows and matches of the leaf.
pub(super) fn chain(file: &Path) -> Result<Chain, String> {
    let certs = certificates(file)?;
    for (i, der) in certs.iter().enumerate().skip(1) {
        parse(file, i, der)?;
    }
    let leaf = &certs[0];
    let cert = parse(file, 0, leaf)?;
    // webpki (through rustls) parses the leaf again when it is served; it is stricter.
    ParsedCertificate::try_from(&CertificateDer::from(leaf.as_slice()))
        .map_err(|e| why(file, format!("certificate 1 cannot be served: {e}")))?;
    let names = names(&cert).map_err(|e| why(file, format!("certificate 1: {e}")))?;
    Ok(Chain {
        file: file.to_owned(),
        names,
        not_after: cert.validity().not_after.timestamp(),
        subject: rfc4514(cert.subject()),
        certs,
    })
}

/// Reads the one private key of `file`, as rustls will load it.
pub(super) fn private_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(file)?;
    let mut keys = Vec::new();
    for key in PrivateKeyDer::pem_slice_iter(&bytes) {
        keys.push(key.map_err(|e| not_pem(file, &e))?);
    }
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 if contains(&bytes, b"ENCRYPTED") => Err(why(
            file,
            "the private key is encrypted; Ringway needs it unencrypted",
        )),
        0 => Err(why(
            file,
            "no private key in it (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")",
        )),
        n => Err(why(
            file,
            format!("{n} private keys in it; it must hold exactly one"),
        )),
    }
}

/// Pairs a chain with the key read from `key_file`: rustls must be able to sign with the key,
/// and its public key must be the leaf's. The error is about the key.
pub(super) fn certified(
    chain: Chain,
    key: PrivateKeyDer<'static>,
    key_file: &Path,
) -> Result<CertKey, String> {
    let format = match &key {
        PrivateKeyDer::Pkcs1(_) => KeyFormat::Pkcs1,
        PrivateKeyDer::Sec1(_) => KeyFormat::Sec1,
        PrivateKeyDer::Pkcs8(_) => KeyFormat::Pkcs8,
        _ => return Err(why(key_file, UNSUPPORTED_KEY)),
    };
    let der = key.secret_der().to_vec();
    let signing_key = aws_lc_rs::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|_| why(key_file, UNSUPPORTED_KEY))?;
    let leaf = CertificateDer::from(chain.certs[0].as_slice());
    // `chain` already parsed the leaf this way, so this cannot fail; never trust that blindly.
    let leaf_key = ParsedCertificate::try_from(&leaf)
        .map(|leaf| leaf.subject_public_key_info())
        .map_err(|e| why(&chain.file, format!("certificate 1 cannot be served: {e}")))?;
    if signing_key.public_key().as_ref() != Some(&leaf_key) {
        let message = format!(
            "the private key does not match the certificate in \"{}\"",
            chain.file.display()
        );
        return Err(why(key_file, message));
    }
    Ok(CertKey {
        cert_file: chain.file,
        key_file: key_file.to_owned(),
        chain: chain.certs,
        key: PrivateKey { format, der },
        names: chain.names,
        not_after: chain.not_after,
        subject: chain.subject,
    })
}

const UNSUPPORTED_KEY: &str =
    "unsupported private key type; use RSA, ECDSA (P-256, P-384 or P-521) or Ed25519";

/// Reads the CA certificates of `file`: at least one, each usable as a trust anchor.
pub(super) fn ca_bundle(file: &Path) -> Result<CaBundle, String> {
    let certs = certificates(file)?;
    let mut roots = RootCertStore::empty();
    for (i, der) in certs.iter().enumerate() {
        parse(file, i, der)?;
        roots
            .add(CertificateDer::from(der.as_slice()))
            .map_err(|e| {
                let n = i + 1;
                why(
                    file,
                    format!("certificate {n} cannot be a trust anchor: {e}"),
                )
            })?;
    }
    Ok(CaBundle {
        file: file.to_owned(),
        certs,
    })
}

/// The certificates of a PEM file, in file order; at least one. Other PEM sections (such as
/// a key kept in the same file) are skipped.
fn certificates(file: &Path) -> Result<Vec<Vec<u8>>, String> {
    let bytes = read(file)?;
    let mut certs = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| not_pem(file, &e))?;
        certs.push(cert.as_ref().to_vec());
    }
    if certs.is_empty() {
        return Err(why(file, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The `index`th certificate of `file` (counted from 0, shown from 1), parsed.
fn parse<'d>(file: &Path, index: usize, der: &'d [u8]) -> Result<X509Certificate<'d>, String> {
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => Ok(cert),
        Err(e) => Err(why(
            file,
            format!("certificate {} does not parse: {e}", index + 1),
        )),
    }
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| why(file, format!("cannot read it: {e}")))
}

fn not_pem(file: &Path, error: &pem::Error) -> String {
    why(file, format!("not valid PEM: {error}"))
}

fn why(file: &Path, reason: impl std::fmt::Display) -> String {
    format!("\"{}\": {reason}", file.display())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The DNS names a certificate is for, lowercase: its subjectAltName DNS entries, or its
/// subject's common names when it has none.
fn names(cert: &X509Certificate<'_>) -> Result<Vec<String>, String> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?;
    let dns: Vec<String> = san
        .iter()
        .flat_map(|san| &san.value.general_names)
        .filter_map(|name| match name {
            GeneralName::DNSName(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        })
        .collect();
    if !dns.is_empty() {
        return Ok(dns);
    }
    Ok(cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .map(str::to_ascii_lowercase)
        .collect())
}

/// The subject of the certificate `der` as RFC 4514 text (see [`rfc4514`]); `None` when it
/// does not parse.
pub fn certificate_subject(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(rfc4514(cert.subject()))
}

/// A distinguished name as RFC 4514 text: the last RDN first, `,` between RDNs, `+` inside
/// one; the short names of RFC 4514 section 3 or a dotted OID; string values escaped, other
/// values (and values of dotted types) as `#` and the hex of their DER.
fn rfc4514(name: &X509Name<'_>) -> String {
    let mut out = String::new();
    let rdns: Vec<_> = name.iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, attr) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = attr.attr_type().to_id_string();
            let short = short_name(&oid);
            out.push_str(short.unwrap_or(&oid));
            out.push('=');
            match short.and_then(|_| text_of(attr.attr_value())) {
                Some(text) => escape_into(&mut out, &text),
                None => hex_into(&mut out, attr.attr_value()),
            }
        }
    }
    out
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.6" => "C",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The text of a directory string; `None` for other values.
fn text_of(value: &Any<'_>) -> Option<String> {
    match value.tag() {
        Tag::Utf8String
        | Tag::PrintableString
        | Tag::Ia5String
        | Tag::NumericString
        | Tag::VisibleString
        | Tag::T61String => std::str::from_utf8(value.data).ok().map(str::to_owned),
        Tag::BmpString => {
            let pairs = value.data.chunks_exact(2);
            if !pairs.remainder().is_empty() {
                return None;
            }
            let units = pairs.map(|pair| u16::from_be_bytes([pair[0], pair[1]]));
            char::decode_utf16(units)
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// RFC 4514 section 2.4: a leading space or `#`, a trailing space, `"+,;<>\` are escaped
/// with a backslash; NUL and other control characters as `\` and two hex digits.
fn escape_into(out: &mut String, text: &str) {
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        match c {
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '#' if i == 0 => out.push_str("\\#"),
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() => {
                let _ = write!(out, "\\{:02X}", c as u8);
            }
            c => out.push(c),
        }
    }
}

fn hex_into(out: &mut String, value: &Any<'_>) {
    out.push('#');
    let der = value.to_der_vec().unwrap_or_else(|_| value.data.to_vec());
    for byte in der {
        let _ = write!(out, "{byte:02X}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::test_util::TempDir;

    #[test]
    fn escapes_as_rfc4514_says() {
        let escaped = |text: &str| {
            let mut out = String::new();
            escape_into(&mut out, text);
            out
        };
        assert_eq!(escaped("Acme, Inc."), "Acme\\, Inc.");
        assert_eq!(escaped(" #a+b "), "\\ #a\\+b\\ ");
        assert_eq!(escaped("#x"), "\\#x");
        assert_eq!(escaped("a\"b;c<d>e\\f"), "a\\\"b\\;c\\<d\\>e\\\\f");
        assert_eq!(escaped("nul\0"), "nul\\00");
        assert_eq!(escaped("é"), "é");
    }

    #[test]
    fn subject_is_rfc4514_with_the_last_rdn_first() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "NL");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "a.example");
        params.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            rcgen::DnValue::PrintableString("42".try_into().unwrap()),
        );
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let (_, parsed) = X509Certificate::from_der(cert.der()).unwrap();
        // serialNumber (2.5.4.5) has no short name: dotted, with its DER in hex.
        assert_eq!(
            rfc4514(parsed.subject()),
            "2.5.4.5=#13023432,CN=a.example,O=Acme\\, Inc.,C=NL"
        );
    }

    #[test]
    fn names_fall_back_to_the_common_name() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Legacy.Example");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = TempDir::new("pem-cn");
        let file = dir.write("cn.pem", &cert.pem());
        let chain = chain(&file).unwrap();
        assert_eq!(chain.names, ["legacy.example"]);
        assert_eq!(chain.subject, "CN=Legacy.Example");
    }

    #[test]
    fn a_cert_file_may_hold_the_key_and_a_key_file_the_cert() {
        let cert = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        let both = format!("{}{}", cert.key_pair.serialize_pem(), cert.cert.pem());
        let dir = TempDir::new("pem-both");
        let file = dir.write("both.pem", &both);
        let chain = chain(&file).unwrap();
        assert_eq!(chain.certs.len(), 1);
        let key = private_key(&file).unwrap();
        let certified = certified(chain, key, &file).unwrap();
        assert_eq!(certified.key.format, KeyFormat::Pkcs8);
        assert_eq!(certified.key.der, cert.key_pair.serialize_der());
        assert_eq!(
            format!("{:?}", certified.key),
            format!(
                "PrivateKey {{ format: Pkcs8, der: <{} bytes> }}",
                certified.key.der.len()
            )
        );
    }

    #[test]
    fn every_supported_key_type_loads() {
        let dir = TempDir::new("pem-kinds");
        for (i, alg) in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ]
        .into_iter()
        .enumerate()
        {
            let key = rcgen::KeyPair::generate_for(alg).unwrap();
            let params = rcgen::CertificateParams::new(vec!["a.example".to_owned()]).unwrap();
            let cert = params.self_signed(&key).unwrap();
            let cert_file = dir.write(&format!("{i}.pem"), &cert.pem());
            let key_file = dir.write(&format!("{i}.key"), &key.serialize_pem());
            let chain = chain(&cert_file).unwrap();
            let key = private_key(&key_file).unwrap();
            assert!(certified(chain, key, &key_file).is_ok(), "{alg:?}");
        }
    }

    #[test]
    fn a_ca_bundle_keeps_every_certificate() {
        let dir = TempDir::new("pem-ca");
        let a = rcgen::generate_simple_self_signed(vec!["a".to_owned()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".to_owned()]).unwrap();
        let file = dir.write("ca.pem", &format!("{}{}", a.cert.pem(), b.cert.pem()));
        let bundle = ca_bundle(&file).unwrap();
        assert_eq!(bundle.file, file);
        assert_eq!(bundle.certs, [a.cert.der().to_vec(), b.cert.der().to_vec()]);
    }

    #[test]
    fn a_certificate_that_does_not_parse() {
        let dir = TempDir::new("pem-garbage");
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n";
        let file = dir.write("bad.pem", garbage);
        let error = chain(&file).err().unwrap();
        assert!(
            error.starts_with(&format!(
                "\"{}\": certificate 1 does not parse: ",
                file.display()
            )),
            "{error}"
        );
        let error = ca_bundle(&file).unwrap_err();
        assert!(error.contains("certificate 1 does not parse"), "{error}");
        let file = dir.write("broken.pem", "-----BEGIN CERTIFICATE-----\n!!\n");
        let error = chain(&file).err().unwrap();
        assert!(error.contains(": not valid PEM: "), "{error}");
    }
}
