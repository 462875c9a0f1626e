//! Picking a listener's certificate by the name the client asked for (SNI): an exact name
//! first, then a wildcard one label deep (`*.example.com` serves `a.example.com`, not
//! `example.com` nor `a.b.example.com`), else the listener's first certificate. Names are
//! those the certificates themselves certify, read at load.

use std::sync::Arc;

use ahash::AHashMap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug)]
pub struct SniResolver {
    exact: AHashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: AHashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    /// `certs` in the listener's order (at least one); an earlier certificate wins a name
    /// that two certify.
    pub fn new(certs: Vec<(Arc<CertifiedKey>, Vec<String>)>) -> SniResolver {
        let default = certs
            .first()
            .map(|(key, _)| key.clone())
            .expect("a TLS listener has at least one certificate");
        let mut exact = AHashMap::new();
        let mut wildcard = AHashMap::new();
        for (key, names) in certs {
            for name in names {
                let name = name.to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()),
                    None => exact.entry(name),
                }
                .or_insert_with(|| key.clone());
            }
        }
        SniResolver {
            exact,
            wildcard,
            default,
        }
    }

    pub fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = server_name else {
            return &self.default;
        };
        // rustls hands over names already lower-cased and without a trailing dot.
        if let Some(key) = self.exact.get(name) {
            return key;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(key) = self.wildcard.get(parent) {
                return key;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<CertifiedKey> {
        let cert = rcgen::generate_simple_self_signed(vec!["x.test".into()]).unwrap();
        let der = rustls_pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        Arc::new(
            CertifiedKey::from_der(
                vec![cert.cert.der().clone()],
                der,
                &super::super::provider(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let (a, b, c) = (key(), key(), key());
        let r = SniResolver::new(vec![
            (a.clone(), vec!["a.example".into()]),
            (
                b.clone(),
                vec!["*.example.com".into(), "API.example.org".into()],
            ),
            (c.clone(), vec!["x.example.com".into()]),
        ]);
        let is = |got: &Arc<CertifiedKey>, want: &Arc<CertifiedKey>| Arc::ptr_eq(got, want);
        assert!(is(r.pick(None), &a), "no SNI: the first");
        assert!(is(r.pick(Some("unknown.test")), &a), "unknown: the first");
        assert!(is(r.pick(Some("a.example")), &a));
        assert!(
            is(r.pick(Some("x.example.com")), &c),
            "exact beats wildcard"
        );
        assert!(is(r.pick(Some("y.example.com")), &b), "wildcard");
        assert!(
            is(r.pick(Some("api.example.org")), &b),
            "names compared lower-case"
        );
        assert!(
            is(r.pick(Some("example.com")), &a),
            "a wildcard does not cover its parent"
        );
        assert!(is(r.pick(Some("a.b.example.com")), &a), "nor two labels");
    }
}
