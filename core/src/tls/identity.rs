//! The identity of a verified client certificate (mutual TLS): what later policies read and
//! what the listener's `client_cert_header` carries upstream.
//!
//! The header value follows Envoy's `x-forwarded-client-cert` element syntax, so upstreams
//! that parse that can parse this: `Hash=<sha256 hex of the DER>;Subject="<RFC 4514>"`,
//! then one `URI=`, `DNS=` or `Email=` pair per subjectAltName entry of those kinds, a
//! value quoted when it holds `,`, `;`, `=`, `"` or `\`.

use std::fmt::Write as _;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// RFC 4514 text of the subject.
    pub subject: String,
    /// subjectAltName entries: DNS names, URIs, e-mail addresses.
    pub dns: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub fingerprint: String,
    /// The forwarded header's value, made once per connection.
    pub header_value: Box<[u8]>,
}

impl ClientIdentity {
    /// The identity in `der`, a certificate rustls has verified; `None` if it does not parse
    /// (it did for the verifier, so that does not happen).
    pub fn of(der: &[u8]) -> Option<ClientIdentity> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let subject = printable(&ringway_config::certificate_subject(der)?, false);
        let (mut dns, mut uris, mut emails) = (Vec::new(), Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push(printable(n, true)),
                    GeneralName::URI(u) => uris.push(printable(u, true)),
                    GeneralName::RFC822Name(e) => emails.push(printable(e, true)),
                    _ => {}
                }
            }
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut fingerprint = String::with_capacity(64);
        for b in digest.as_ref() {
            let _ = write!(fingerprint, "{b:02x}");
        }
        let mut value = format!("Hash={fingerprint};Subject=");
        push_quoted(&mut value, &subject);
        for (key, list) in [("URI", &uris), ("DNS", &dns), ("Email", &emails)] {
            for item in list {
                let _ = write!(value, ";{key}=");
                // As Envoy: quoted when it holds a separator.
                if item.contains([',', ';', '=', '"', '\\']) {
                    push_quoted(&mut value, item);
                } else {
                    value.push_str(item);
                }
            }
        }
        Some(ClientIdentity {
            subject,
            dns,
            uris,
            emails,
            fingerprint,
            header_value: value.into_bytes().into_boxed_slice(),
        })
    }
}

/// `s` in double quotes, `"` and `\\` escaped with a backslash.
fn push_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// `s` with control characters and non-ASCII written as `\XX` escapes of their UTF-8 bytes
/// (RFC 4514's form), so that the header stays one ASCII line and two names that differ only
/// there stay different.
///
/// A backslash is escaped too (`\\5C`) in a SAN, so that the text `\\C3\\A9` and `é` stay
/// different; not in the subject, whose RFC 4514 text already writes one as `\\\\`.
fn printable(s: &str, backslash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() && !c.is_ascii_control() && (c != '\\' || !backslash) {
            out.push(c);
        } else {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                let _ = write!(out, "\\{b:02X}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_with_separators_are_quoted_not_dropped() {
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        for uri in ["urn:x;y=z", "https://x.test/a,b"] {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::Ia5String::try_from(uri).unwrap(),
            ));
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let id = ClientIdentity::of(params.self_signed(&key).unwrap().der()).unwrap();
        let value = String::from_utf8(id.header_value.to_vec()).unwrap();
        assert!(
            value.ends_with(r#";URI="urn:x;y=z";URI="https://x.test/a,b";DNS=a.example"#),
            "{value}"
        );
    }

    #[test]
    fn controls_and_non_ascii_are_escaped_not_dropped() {
        assert_eq!(printable("ad\u{85}min", true), "ad\\C2\\85min");
        assert_eq!(printable("a\x01b\r\n", true), "a\\01b\\0D\\0A");
        assert_eq!(printable("plain", true), "plain");
        assert_eq!(printable("a\\b", true), "a\\5Cb");
        assert_eq!(printable("a\\b", false), "a\\b");
    }

    #[test]
    fn subject_sans_and_fingerprint() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "partner \"one\"");
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::Ia5String::try_from("spiffe://acme/gw").unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let id = ClientIdentity::of(cert.der()).unwrap();
        assert_eq!(
            id.subject, "CN=partner \\\"one\\\"",
            "RFC 4514 escapes the quotes"
        );
        assert_eq!(id.dns, ["client.example"]);
        assert_eq!(id.uris, ["spiffe://acme/gw"]);
        assert_eq!(id.fingerprint.len(), 64);
        let value = String::from_utf8(id.header_value.to_vec()).unwrap();
        assert_eq!(
            value,
            format!(
                r#"Hash={};Subject="CN=partner \\\"one\\\"";URI=spiffe://acme/gw;DNS=client.example"#,
                id.fingerprint
            )
        );
    }
}
