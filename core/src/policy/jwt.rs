//! JSON Web Tokens (RFC 7519) signed with JWS (RFC 7515): a provider's keys compiled once per
//! epoch, and the checks every token meets before it names a consumer.
//!
//! What is refused: `alg: none` and any algorithm not listed below; a key used with an
//! algorithm of another family (an RSA public key can never verify an HMAC, so the classic
//! algorithm confusion has nothing to confuse); a key whose JWKS entry names another `alg`;
//! a `crit` header (no extension is understood, RFC 7515 section 4.1.11); a signature that
//! does not verify; `exp` passed or `nbf` not reached beyond the provider's leeway; an `iss`
//! or `aud` other than the provider's. A token needs an `exp`: one that never expires would
//! be a password that cannot be changed.

use std::time::Duration;

use aws_lc_rs::{hmac, signature};
use base64::Engine;
use ringway_config::{JwkKey, JwtProvider};
use serde_json::Value;

/// Longest token looked at.
pub const MAX_TOKEN: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
    Hs256,
    Hs384,
    Hs512,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            _ => return None,
        })
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url parts of JSON.
    Malformed,
    /// `alg` none or unknown, `crit`, no key for it, or a signature that does not verify.
    Invalid,
    /// `exp` passed, or `nbf` not reached (beyond the leeway); or no `exp`.
    Expired,
    /// `iss` or `aud` not the provider's.
    Claims,
}

/// The claims a verified token lends the request.
#[derive(Debug, PartialEq, Eq)]
pub struct Claims {
    pub sub: Option<String>,
    /// Seconds since the Unix epoch.
    pub exp: u64,
}

enum KeyKind {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { p384: bool, point: Vec<u8> },
    Ed25519(Vec<u8>),
    Hmac(Vec<u8>),
}

struct Key {
    kid: Option<Box<str>>,
    alg: Option<Alg>,
    kind: KeyKind,
}

/// A `[[jwt_providers]]` table, ready to verify tokens.
pub struct Provider {
    issuer: Option<Box<str>>,
    audiences: Box<[Box<str>]>,
    keys: Vec<Key>,
    leeway: u64,
}

impl Provider {
    pub fn compile(p: &JwtProvider) -> Provider {
        let keys = (p.keys.iter())
            .filter_map(|k| {
                // A JWKS `alg` this gateway does not know makes the key unusable, not
                // usable with any algorithm.
                let alg = match &k.alg {
                    Some(name) => Some(Alg::parse(name)?),
                    None => None,
                };
                let kind = match &k.key {
                    JwkKey::Rsa { n, e } => KeyKind::Rsa {
                        n: n.clone(),
                        e: e.clone(),
                    },
                    JwkKey::Ec { p384, point } => KeyKind::Ec {
                        p384: *p384,
                        point: point.clone(),
                    },
                    JwkKey::Ed25519(x) => KeyKind::Ed25519(x.clone()),
                    JwkKey::Hmac(secret) => KeyKind::Hmac(secret.clone()),
                };
                Some(Key {
                    kid: k.kid.as_deref().map(Into::into),
                    alg,
                    kind,
                })
            })
            .collect();
        Provider {
            issuer: p.issuer.as_deref().map(Into::into),
            audiences: p.audiences.iter().map(|a| a.as_str().into()).collect(),
            keys,
            leeway: p.leeway.as_secs(),
        }
    }

    /// Verifies `token` at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &[u8], now: u64) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split(|&b| b == b'.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = json(h64)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or(JwtError::Invalid)?;
        if header.get("crit").is_some() {
            return Err(JwtError::Invalid);
        }
        let kid = header.get("kid").and_then(Value::as_str);
        let signature = b64(s64).ok_or(JwtError::Malformed)?;
        let signed = &token[..h64.len() + 1 + p64.len()];
        let verified = self
            .keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
            .filter(|k| k.alg.is_none_or(|a| a == alg))
            .any(|k| verify_signature(alg, &k.kind, signed, &signature));
        if !verified {
            return Err(JwtError::Invalid);
        }
        let claims = json(p64)?;
        let number = |name: &str| claims.get(name).and_then(Value::as_u64);
        let exp = number("exp").ok_or(JwtError::Expired)?;
        if now > exp.saturating_add(self.leeway) {
            return Err(JwtError::Expired);
        }
        if number("nbf").is_some_and(|nbf| now.saturating_add(self.leeway) < nbf) {
            return Err(JwtError::Expired);
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err(JwtError::Claims);
            }
        }
        if !self.audiences.is_empty() {
            let listed = |aud: &str| self.audiences.iter().any(|a| &**a == aud);
            let ok = match claims.get("aud") {
                Some(Value::String(aud)) => listed(aud),
                Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).any(listed),
                _ => false,
            };
            if !ok {
                return Err(JwtError::Claims);
            }
        }
        Ok(Claims {
            sub: claims.get("sub").and_then(Value::as_str).map(str::to_owned),
            exp,
        })
    }
}

fn b64(part: &[u8]) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
}

fn json(part: &[u8]) -> Result<Value, JwtError> {
    let bytes = b64(part).ok_or(JwtError::Malformed)?;
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(JwtError::Malformed),
    }
}

/// Whether `sig` is `alg`'s signature of `msg` by `key`; false for a key of another family.
fn verify_signature(alg: Alg, key: &KeyKind, msg: &[u8], sig: &[u8]) -> bool {
    use signature::{UnparsedPublicKey, VerificationAlgorithm};
    let rsa = |params: &'static signature::RsaParameters| match key {
        KeyKind::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
            .verify(params, msg, sig)
            .is_ok(),
        _ => false,
    };
    let public = |algorithm: &'static dyn VerificationAlgorithm, bytes: &[u8]| {
        UnparsedPublicKey::new(algorithm, bytes)
            .verify(msg, sig)
            .is_ok()
    };
    let mac = |algorithm: hmac::Algorithm| match key {
        KeyKind::Hmac(secret) => hmac::verify(&hmac::Key::new(algorithm, secret), msg, sig).is_ok(),
        _ => false,
    };
    match alg {
        Alg::Rs256 => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        Alg::Rs384 => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        Alg::Rs512 => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        Alg::Ps256 => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        Alg::Ps384 => rsa(&signature::RSA_PSS_2048_8192_SHA384),
        Alg::Ps512 => rsa(&signature::RSA_PSS_2048_8192_SHA512),
        Alg::Es256 => match key {
            KeyKind::Ec { p384: false, point } => {
                public(&signature::ECDSA_P256_SHA256_FIXED, point)
            }
            _ => false,
        },
        Alg::Es384 => match key {
            KeyKind::Ec { p384: true, point } => public(&signature::ECDSA_P384_SHA384_FIXED, point),
            _ => false,
        },
        Alg::EdDsa => match key {
            KeyKind::Ed25519(x) => public(&signature::ED25519, x),
            _ => false,
        },
        Alg::Hs256 => mac(hmac::HMAC_SHA256),
        Alg::Hs384 => mac(hmac::HMAC_SHA384),
        Alg::Hs512 => mac(hmac::HMAC_SHA512),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Longest a verified token is remembered by a shard, whatever its `exp`.
pub const CACHE_FOR: Duration = Duration::from_secs(300);

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
