//! `[[jwt_providers]]`: the issuers whose tokens routes accept with `auth = ["jwt:NAME"]`, and
//! their keys, read from `jwks_file` (a JSON Web Key Set, RFC 7517) and `secret_file` (an
//! HMAC secret) at load, so that a reload picks up rotated keys.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use super::Ctx;
use crate::model::{Jwk, JwkKey, JwtProvider};
use crate::raw::{At, List, RawJwtProvider, Typed};

/// Shortest HMAC secret: RFC 7518 section 3.2 asks for at least the hash's size.
const MIN_SECRET: usize = 32;
const MAX_LEEWAY: Duration = Duration::from_secs(600);

pub(super) fn jwt_providers(ctx: &mut Ctx<'_>, raw: &List<At<RawJwtProvider>>) -> Vec<JwtProvider> {
    let Some(raw) = ctx.list(raw, "jwt_providers") else {
        return Vec::new();
    };
    let names = ctx.table_names(raw, "jwt_providers", "JWT provider", |t| t.name.as_ref());
    let mut valid = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let p = spanned.get_ref();
        let prefix = format!("jwt_providers[{i}]");
        let key = |field: &str| format!("{prefix}.{field}");
        let name = names[i].and_then(|name| ctx.name(name, key("name")));
        let issuer = ctx
            .optional(p.issuer.as_ref(), &key("issuer"))
            .map(|i| i.map(|i| i.get_ref().clone()));
        let audiences = audiences(ctx, &key("audiences"), p.audiences.as_ref());
        let leeway = ctx
            .duration(p.leeway.as_ref(), key("leeway"), Duration::from_secs(30))
            .and_then(|leeway| {
                if leeway <= MAX_LEEWAY {
                    return Some(leeway);
                }
                let at = p.leeway.as_ref().and_then(Typed::span);
                ctx.error_near(at, key("leeway"), "must be at most 10m");
                None
            });
        if let Some(url) = ctx
            .optional(p.jwks_url.as_ref(), &key("jwks_url"))
            .flatten()
        {
            let message = "fetching keys from a URL is not available yet: save the JWKS to a \
                           file and name it in jwks_file (a reload reads it again)";
            ctx.error(url, key("jwks_url"), message);
        }
        let mut keys = Vec::new();
        let jwks_file = key_file(ctx, p.jwks_file.as_ref(), key("jwks_file"), |path| {
            keys.extend(read_jwks(path)?);
            Ok(())
        });
        let secret_file = key_file(ctx, p.secret_file.as_ref(), key("secret_file"), |path| {
            let secret = read_secret(path)?;
            keys.push(Jwk {
                kid: None,
                alg: None,
                key: JwkKey::Hmac(secret),
            });
            Ok(())
        });
        let mut files_ok = jwks_file.is_some() && secret_file.is_some();
        let (jwks_file, secret_file) = (jwks_file.flatten(), secret_file.flatten());
        if files_ok && jwks_file.is_none() && secret_file.is_none() && p.jwks_url.is_none() {
            let message = "needs jwks_file (public keys) or secret_file (an HMAC secret)";
            ctx.error_near(spanned.span(), prefix.clone(), message);
            files_ok = false;
        }
        if let (Some(name), Some(issuer), Some(audiences), Some(leeway), true) =
            (name, issuer, audiences, leeway, files_ok)
        {
            valid.push(JwtProvider {
                name,
                issuer,
                audiences,
                keys,
                jwks_file,
                secret_file,
                leeway,
            });
        }
    }
    valid
}

/// A key file of a provider, read by `read`: `Some(None)` when the key is absent, `None`
/// when it is wrong or the file cannot be used (reported).
fn key_file(
    ctx: &mut Ctx<'_>,
    raw: Option<&Typed<String>>,
    key: String,
    read: impl FnOnce(&Path) -> Result<(), String>,
) -> Option<Option<PathBuf>> {
    let Some(raw) = ctx.optional(raw, &key)? else {
        return Some(None);
    };
    let path = ctx.file(raw, key.clone())?;
    match read(&path) {
        Ok(()) => Some(Some(path)),
        Err(message) => ctx.fail(raw, key, message),
    }
}

fn audiences(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: Option<&List<Typed<String>>>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let items = ctx.list(raw, key)?;
    let mut out = Vec::new();
    let mut all_valid = true;
    for (i, item) in items.iter().enumerate() {
        match ctx.typed(item, &format!("{key}[{i}]")) {
            Some(a) => out.push(a.get_ref().clone()),
            None => all_valid = false,
        }
    }
    all_valid.then_some(out)
}

fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let mut secret =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A file written by an editor or `echo` ends with a newline that is not the secret's.
    if secret.ends_with(b"\n") {
        secret.pop();
        if secret.ends_with(b"\r") {
            secret.pop();
        }
    }
    if secret.len() < MIN_SECRET {
        return Err(format!(
            "{}: an HMAC secret is at least {MIN_SECRET} bytes (RFC 7518 section 3.2)",
            path.display()
        ));
    }
    Ok(secret)
}

/// The signature keys of a JWKS file. Keys for encryption (`"use": "enc"`) are skipped.
pub(crate) fn read_jwks(path: &Path) -> Result<Vec<Jwk>, String> {
    let file = path.display();
    let text = std::fs::read(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let doc: Value =
        serde_json::from_slice(&text).map_err(|e| format!("{file} is not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{file} has no \"keys\" array (a JWKS, RFC 7517)"))?;
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let jwk = parse_jwk(k).map_err(|e| format!("{file}: keys[{i}]: {e}"))?;
        out.push(jwk);
    }
    if out.is_empty() {
        return Err(format!("{file} holds no signature key"));
    }
    Ok(out)
}

fn parse_jwk(k: &Value) -> Result<Jwk, String> {
    let text = |name: &str| k.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let v = text(name).ok_or_else(|| format!("missing \"{name}\""))?;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let key = match text("kty") {
        Some("RSA") => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            let bits = n.iter().skip_while(|&&b| b == 0).count() * 8;
            if bits < 2048 {
                return Err(format!(
                    "an RSA key of {bits} bits; at least 2048 are needed"
                ));
            }
            JwkKey::Rsa { n, e }
        }
        Some("EC") => {
            let (p384, size) = match text("crv") {
                Some("P-256") => (false, 32),
                Some("P-384") => (true, 48),
                other => {
                    return Err(format!(
                        "EC curve {other:?} is not supported (P-256, P-384)"
                    ))
                }
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != size || y.len() != size {
                return Err("EC coordinates of the wrong length".into());
            }
            let mut point = vec![4u8];
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            JwkKey::Ec { p384, point }
        }
        Some("OKP") => {
            if text("crv") != Some("Ed25519") {
                return Err("OKP keys must be Ed25519".into());
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("an Ed25519 key is 32 bytes".into());
            }
            JwkKey::Ed25519(x)
        }
        Some("oct") => return Err("symmetric keys go in secret_file, not in a JWKS".into()),
        other => {
            return Err(format!(
                "key type {other:?} is not supported (RSA, EC, OKP)"
            ))
        }
    };
    Ok(Jwk {
        kid: text("kid").map(str::to_owned),
        alg: text("alg").map(str::to_owned),
        key,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use crate::model::{AuthMethod, JwkKey};
    use crate::validate::test_util::{errors, one_error, parse_ok, TempDir, BASE};

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwks() -> String {
        format!(
            r#"{{"keys":[
                {{"kty":"RSA","kid":"r1","alg":"RS256","n":"{}","e":"AQAB"}},
                {{"kty":"EC","kid":"e1","crv":"P-256","x":"{}","y":"{}"}},
                {{"kty":"OKP","kid":"o1","crv":"Ed25519","x":"{}"}},
                {{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB"}}
            ]}}"#,
            b64(&[0xc5; 256]),
            b64(&[1; 32]),
            b64(&[2; 32]),
            b64(&[3; 32]),
        )
    }

    #[test]
    fn providers_read_their_keys_and_routes_name_them() {
        let dir = TempDir::new("jwt-ok");
        let jwks = dir.write("jwks.json", &jwks());
        let secret = dir.write("hs.key", &format!("{}\n", "s".repeat(32)));
        let src = format!(
            "{BASE}[[jwt_providers]]\nname = \"idp\"\nissuer = \"https://idp\"\naudiences = [\"api\"]\n\
             jwks_file = \"{}\"\n\n[[jwt_providers]]\nname = \"hs\"\nsecret_file = \"{}\"\nleeway = \"5s\"\n\n\
             [[consumers]]\nname = \"acme\"\njwt_subject = \"acme-sub\"\n\n\
             [[routes]]\nname = \"r\"\nrespond = {{ status = 200 }}\nauth = [\"jwt:hs\", \"jwt:idp\"]\n",
            jwks.display(),
            secret.display()
        );
        let cfg = parse_ok(&src);
        let idp = &cfg.jwt_providers[0];
        assert_eq!(idp.keys.len(), 3, "the encryption key is skipped");
        assert!(matches!(idp.keys[0].key, JwkKey::Rsa { .. }));
        assert!(
            matches!(idp.keys[1].key, JwkKey::Ec { p384: false, ref point } if point.len() == 65)
        );
        assert!(matches!(idp.keys[2].key, JwkKey::Ed25519(_)));
        assert_eq!(idp.issuer.as_deref(), Some("https://idp"));
        assert_eq!(idp.leeway, std::time::Duration::from_secs(30));
        let hs = &cfg.jwt_providers[1];
        assert!(
            matches!(&hs.keys[0].key, JwkKey::Hmac(s) if s.len() == 32),
            "newline dropped"
        );
        assert!(!format!("{:?}", hs).contains("sssss"));
        assert_eq!(cfg.consumers[0].jwt_subject.as_deref(), Some("acme-sub"));
        let auth = cfg.routes[0].auth.as_ref().unwrap();
        assert_eq!(auth.methods, [AuthMethod::Jwt(1), AuthMethod::Jwt(0)]);
    }

    #[test]
    fn bad_providers() {
        let dir = TempDir::new("jwt-bad");
        let short = dir.write("short.key", "too-short");
        let weak = dir.write(
            "weak.json",
            &format!(
                r#"{{"keys":[{{"kty":"RSA","n":"{}","e":"AQAB"}}]}}"#,
                b64(&[0xc5; 128])
            ),
        );
        let oct = dir.write("oct.json", r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#);
        let notjson = dir.write("x.json", "keys");
        for (lines, want) in [
            (
                "secret_file = \"SHORT\"",
                "an HMAC secret is at least 32 bytes",
            ),
            (
                "jwks_file = \"WEAK\"",
                "keys[0]: an RSA key of 1024 bits; at least 2048 are needed",
            ),
            ("jwks_file = \"OCT\"", "symmetric keys go in secret_file"),
            ("jwks_file = \"NOTJSON\"", "is not JSON"),
            (
                "jwks_file = \"/nonexistent/jwks.json\"",
                "cannot read /nonexistent/jwks.json",
            ),
            (
                "jwks_url = \"https://idp/jwks\"",
                "fetching keys from a URL is not available yet",
            ),
            (
                "issuer = \"i\"",
                "jwt_providers[0]: needs jwks_file (public keys) or secret_file",
            ),
            (
                "secret_file = \"SHORT\"\nleeway = \"1h\"",
                "must be at most 10m",
            ),
        ] {
            let lines = lines
                .replace("SHORT", &short.display().to_string())
                .replace("WEAK", &weak.display().to_string())
                .replace("OCT", &oct.display().to_string())
                .replace("NOTJSON", &notjson.display().to_string());
            let src = format!("{BASE}[[jwt_providers]]\nname = \"p\"\n{lines}\n");
            let all = errors(&src);
            assert!(all.iter().any(|e| e.contains(want)), "{lines}: {all:?}");
        }
        let unknown = format!(
            "{BASE}[[routes]]\nname = \"r\"\nrespond = {{ status = 200 }}\nauth = [\"jwt:nope\"]\n"
        );
        assert!(one_error(&unknown).ends_with("routes[0].auth[0]: no JWT provider named \"nope\""));
        let twice = format!(
            "{BASE}[[consumers]]\nname = \"a\"\njwt_subject = \"s\"\n[[consumers]]\nname = \"b\"\njwt_subject = \"s\"\n"
        );
        assert!(one_error(&twice)
            .ends_with("consumers[1].jwt_subject: subject \"s\" is already consumer \"a\"'s"));
    }
}
