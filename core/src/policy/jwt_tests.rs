use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use base64::Engine;
use ringway_config::{Jwk, JwkKey, JwtProvider};

use super::*;

fn b64e(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64d(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

fn provider(keys: Vec<Jwk>, issuer: Option<&str>, audiences: &[&str]) -> Provider {
    Provider::compile(&JwtProvider {
        name: "p".into(),
        issuer: issuer.map(Into::into),
        audiences: audiences.iter().map(|a| a.to_string()).collect(),
        keys,
        jwks_file: None,
        secret_file: None,
        leeway: std::time::Duration::from_secs(30),
    })
}

fn key(kid: Option<&str>, key: JwkKey) -> Jwk {
    Jwk {
        kid: kid.map(Into::into),
        alg: None,
        key,
    }
}

// RFC 7515 appendix A: the payload of A.1 to A.3, which expired in 2011 (exp 1300819380).
const RFC_NOW: u64 = 1_300_819_000;

#[test]
fn rfc_7515_a1_hs256() {
    let token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let k = b64d(
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
    );
    let p = provider(vec![key(None, JwkKey::Hmac(k))], Some("joe"), &[]);
    let claims = p.verify(token.as_bytes(), RFC_NOW).unwrap();
    assert_eq!(claims.exp, 1_300_819_380);
    assert_eq!(
        p.verify(token.as_bytes(), 1_300_819_380 + 31),
        Err(JwtError::Expired)
    );
}

#[test]
fn rfc_7515_a2_rs256() {
    let token = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
    let n = b64d("ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ");
    let rsa = JwkKey::Rsa {
        n: n.clone(),
        e: b64d("AQAB"),
    };
    let p = provider(vec![key(None, rsa)], None, &[]);
    assert!(p.verify(token.as_bytes(), RFC_NOW).is_ok());
    // Algorithm confusion: the same header and payload "signed" with HMAC keyed by the RSA
    // public key's bytes, against a provider that holds only that public key.
    let header = b64e(br#"{"alg":"HS256"}"#);
    let payload = token.split('.').nth(1).unwrap();
    let signed = format!("{header}.{payload}");
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &n), signed.as_bytes());
    let forged = format!("{signed}.{}", b64e(mac.as_ref()));
    assert_eq!(p.verify(forged.as_bytes(), RFC_NOW), Err(JwtError::Invalid));
}

#[test]
fn rfc_7515_a3_es256() {
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
    let mut point = vec![4u8];
    point.extend(b64d("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"));
    point.extend(b64d("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"));
    let p = provider(
        vec![key(None, JwkKey::Ec { p384: false, point })],
        None,
        &[],
    );
    assert!(p.verify(token.as_bytes(), RFC_NOW).is_ok());
}

#[test]
fn rfc_8037_a4_ed25519() {
    let token = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";
    let x = b64d("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
    let (signed, sig) = token.rsplit_once('.').unwrap();
    // Its payload is text, not claims: the signature alone is checked.
    let kind = KeyKind::Ed25519(x);
    assert!(verify_signature(
        Alg::EdDsa,
        &kind,
        signed.as_bytes(),
        &b64d(sig)
    ));
    assert!(!verify_signature(Alg::EdDsa, &kind, b"other", &b64d(sig)));
}

/// A token signed with a fresh P-256 key, and the provider that trusts it.
fn es256(header: &str, claims: &str) -> (String, Jwk) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let signed = format!("{}.{}", b64e(header.as_bytes()), b64e(claims.as_bytes()));
    let sig = pair.sign(&rng, signed.as_bytes()).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    (
        format!("{signed}.{}", b64e(sig.as_ref())),
        key(Some("k1"), JwkKey::Ec { p384: false, point }),
    )
}

#[test]
fn claims_are_checked() {
    let now = 2_000_000_000u64;
    let claims = |extra: &str| {
        format!(
            r#"{{"sub":"acme","iss":"https://idp","aud":["x","api"],"exp":{}{extra}}}"#,
            now + 60
        )
    };
    let (token, k) = es256(r#"{"alg":"ES256","kid":"k1"}"#, &claims(""));
    let p = provider(vec![k.clone()], Some("https://idp"), &["api"]);
    assert_eq!(
        p.verify(token.as_bytes(), now),
        Ok(Claims {
            sub: Some("acme".into()),
            exp: now + 60
        })
    );
    assert_eq!(
        p.verify(token.as_bytes(), now + 60 + 31),
        Err(JwtError::Expired)
    );
    assert!(
        p.verify(token.as_bytes(), now + 60 + 29).is_ok(),
        "within the leeway"
    );
    let other_iss = provider(vec![k.clone()], Some("https://other"), &[]);
    assert_eq!(
        other_iss.verify(token.as_bytes(), now),
        Err(JwtError::Claims)
    );
    let other_aud = provider(vec![k.clone()], None, &["web"]);
    assert_eq!(
        other_aud.verify(token.as_bytes(), now),
        Err(JwtError::Claims)
    );
    let (later, k2) = es256(
        r#"{"alg":"ES256"}"#,
        &claims(&format!(r#","nbf":{}"#, now + 100)),
    );
    assert_eq!(
        provider(vec![k2], None, &[]).verify(later.as_bytes(), now),
        Err(JwtError::Expired)
    );
    let (forever, k3) = es256(r#"{"alg":"ES256"}"#, r#"{"sub":"acme"}"#);
    assert_eq!(
        provider(vec![k3], None, &[]).verify(forever.as_bytes(), now),
        Err(JwtError::Expired)
    );
}

#[test]
fn headers_that_are_refused() {
    let now = 2_000_000_000u64;
    let claims = format!(r#"{{"exp":{}}}"#, now + 60);
    let (crit, k) = es256(r#"{"alg":"ES256","crit":["exp"]}"#, &claims);
    assert_eq!(
        provider(vec![k], None, &[]).verify(crit.as_bytes(), now),
        Err(JwtError::Invalid)
    );
    let (token, k) = es256(r#"{"alg":"ES256","kid":"k1"}"#, &claims);
    let p = provider(vec![k.clone()], None, &[]);
    // alg none, with the signature dropped or kept.
    let payload = token.split('.').nth(1).unwrap();
    let none = format!("{}.{payload}.", b64e(br#"{"alg":"none"}"#));
    assert_eq!(
        p.verify(none.as_bytes(), now),
        Err(JwtError::Malformed).or(Err(JwtError::Invalid))
    );
    // Another kid than the key's, and a key pinned to another alg.
    let (other_kid, k_other) = es256(r#"{"alg":"ES256","kid":"k9"}"#, &claims);
    let mut renamed = k_other.clone();
    renamed.kid = Some("k1".into());
    assert_eq!(
        provider(vec![renamed], None, &[]).verify(other_kid.as_bytes(), now),
        Err(JwtError::Invalid)
    );
    let mut pinned = k.clone();
    pinned.alg = Some("ES384".into());
    assert_eq!(
        provider(vec![pinned], None, &[]).verify(token.as_bytes(), now),
        Err(JwtError::Invalid)
    );
    // A flipped signature bit, extra parts, junk.
    let mut bad = token.clone().into_bytes();
    let last = bad.len() - 2;
    bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
    assert_eq!(p.verify(&bad, now), Err(JwtError::Invalid));
    assert_eq!(
        p.verify(format!("{token}.x").as_bytes(), now),
        Err(JwtError::Malformed)
    );
    assert_eq!(p.verify(b"abc", now), Err(JwtError::Malformed));
}

#[test]
fn eddsa_tokens_verify() {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let signed = format!(
        "{}.{}",
        b64e(br#"{"alg":"EdDSA"}"#),
        b64e(br#"{"sub":"s","exp":4000000000}"#)
    );
    let token = format!("{signed}.{}", b64e(pair.sign(signed.as_bytes()).as_ref()));
    let p = provider(
        vec![key(
            None,
            JwkKey::Ed25519(pair.public_key().as_ref().to_vec()),
        )],
        None,
        &[],
    );
    assert_eq!(
        p.verify(token.as_bytes(), 1).unwrap().sub.as_deref(),
        Some("s")
    );
}
