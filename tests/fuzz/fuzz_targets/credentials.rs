//! Hostile credentials and paths: a JWT verifier fed arbitrary tokens never panics and never
//! accepts one (no key it holds signed them), and path normalisation never panics, never
//! grows a path, and gives a path that normalising again leaves as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_config::{Jwk, JwkKey, JwtProvider};
use ringway_core::http::path::{normalize, EncodedSlashes};
use ringway_core::policy::jwt::Provider;

fn provider() -> Provider {
    let mut point = vec![4u8];
    point.extend([7u8; 64]);
    let keys = vec![
        Jwk {
            kid: None,
            alg: None,
            key: JwkKey::Hmac(b"fuzz-secret-fuzz-secret-fuzz-secret!".to_vec()),
        },
        Jwk {
            kid: Some("ec".into()),
            alg: None,
            key: JwkKey::Ec { p384: false, point },
        },
        Jwk {
            kid: Some("ed".into()),
            alg: Some("EdDSA".into()),
            key: JwkKey::Ed25519(vec![9u8; 32]),
        },
    ];
    Provider::compile(&JwtProvider {
        name: "fuzz".into(),
        issuer: None,
        audiences: Vec::new(),
        keys,
        jwks_file: None,
        secret_file: None,
        leeway: std::time::Duration::from_secs(30),
    })
}

fuzz_target!(|data: &[u8]| {
    let p = provider();
    assert!(p.verify(data, 1_700_000_000).is_err(), "an unsigned token passed");

    for slashes in [EncodedSlashes::Reject, EncodedSlashes::Keep] {
        let mut path = vec![b'/'];
        path.extend_from_slice(data);
        let before = path.len();
        if let Ok(n) = normalize(&mut path, slashes) {
            assert!(n <= before);
            path.truncate(n);
            let mut again = path.clone();
            let m = normalize(&mut again, slashes).expect("a normal form normalises");
            assert_eq!(&again[..m], &path[..], "not a fixed point");
        }
    }
});
