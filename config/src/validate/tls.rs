//! `tls` of listeners and upstreams: which certificates, keys and CAs, read from their files
//! now (see `pem`), and how handshakes go. A file that cannot be used is an error at the key
//! that named it.

use std::net::IpAddr;
use std::time::Duration;

use rustls_pki_types::ServerName;
use toml::Spanned;

use super::check::host_name;
use super::pem;
use super::Ctx;
use crate::model::{CaBundle, CertKey, ClientAuth, ListenerTls, TlsVersion, UpstreamTls};
use crate::raw::{At, RawCertKey, RawListenerTls, RawUpstreamTls};

/// The largest `session_cache`: the cache is allocated whole when a listener starts.
const MAX_SESSION_CACHE: i64 = 1_000_000;

/// Headers the gateway writes or removes itself (framing, hop-by-hop, forwarding): the
/// client's identity must not land in one of them.
const GATEWAY_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "proxy-authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "forwarded",
    "via",
    "x-request-id",
];

/// `tls` of the listener whose key path is `listener`: `Some(None)` when absent, `None` when
/// invalid (recorded).
pub(super) fn listener_tls(
    ctx: &mut Ctx<'_>,
    listener: &str,
    raw: Option<&At<RawListenerTls>>,
) -> Option<Option<ListenerTls>> {
    let Some(table) = raw else {
        return Some(None);
    };
    let t = table.get_ref();
    let prefix = format!("{listener}.tls");
    let key = |field: &str| format!("{prefix}.{field}");
    let certificates = match &t.certificates {
        Some(list) => ctx.list(list, &key("certificates")).and_then(|items| {
            if items.is_empty() {
                let message = "at least one certificate is required";
                ctx.error_near(list.span(), key("certificates"), message);
                return None;
            }
            certificates(ctx, &key("certificates"), items)
        }),
        None => {
            ctx.error_near(table.span(), prefix.clone(), "missing field `certificates`");
            None
        }
    };
    let client_ca = match ctx.optional(t.client_ca.as_ref(), &key("client_ca")) {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => ca_bundle(ctx, raw, key("client_ca")).map(Some),
    };
    // Both are about client certificates, so meaningless without the CAs that verify them; a
    // `client_ca` that was written but is invalid has its own error.
    let needs_ca = |ctx: &mut Ctx<'_>, raw: &Spanned<String>, field: &str| {
        if t.client_ca.is_some() {
            return true;
        }
        let message = format!(
            "{field} needs client_ca (the CAs that client certificates are verified against)"
        );
        ctx.error(raw, key(field), message);
        false
    };
    let client_auth = match ctx.optional(t.client_auth.as_ref(), &key("client_auth")) {
        None => None,
        Some(None) => Some(ClientAuth::Required),
        Some(Some(raw)) => match raw.get_ref().as_str() {
            _ if !needs_ca(ctx, raw, "client_auth") => None,
            "required" => Some(ClientAuth::Required),
            "optional" => Some(ClientAuth::Optional),
            other => {
                let message = format!(
                    "unknown client_auth \"{other}\"; expected \"required\" or \"optional\""
                );
                ctx.fail(raw, key("client_auth"), message)
            }
        },
    };
    let min_version = match ctx.optional(t.min_version.as_ref(), &key("min_version")) {
        None => None,
        Some(None) => Some(TlsVersion::V1_2),
        Some(Some(raw)) => tls_version(ctx, raw, key("min_version")),
    };
    let handshake_timeout = ctx.duration(
        t.handshake_timeout.as_ref(),
        key("handshake_timeout"),
        Duration::from_secs(10),
    );
    let session_tickets = ctx
        .optional(t.session_tickets.as_ref(), &key("session_tickets"))
        .map(|tickets| tickets.is_none_or(|tickets| *tickets.get_ref()));
    let session_cache = ctx
        .int(
            t.session_cache.as_ref(),
            key("session_cache"),
            20_000,
            (0, MAX_SESSION_CACHE),
        )
        .and_then(|n| usize::try_from(n).ok());
    let header = key("client_cert_header");
    let client_cert_header = match ctx.optional(t.client_cert_header.as_ref(), &header) {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) if !needs_ca(ctx, raw, "client_cert_header") => None,
        Some(Some(raw)) => match ctx.token(raw, header.clone(), "header name") {
            None => None,
            Some(name) => {
                let name = name.to_ascii_lowercase();
                if GATEWAY_HEADERS.contains(&name.replace('_', "-").as_str()) {
                    let message = format!(
                        "\"{name}\" is a header the gateway frames or writes itself; \
                         choose another name, such as \"x-client-cert\""
                    );
                    ctx.fail(raw, header, message)
                } else {
                    Some(Some(name))
                }
            }
        },
    };
    Some(Some(ListenerTls {
        certificates: certificates?,
        client_ca: client_ca?,
        client_auth: client_auth?,
        min_version: min_version?,
        handshake_timeout: handshake_timeout?,
        session_tickets: session_tickets?,
        session_cache: session_cache?,
        client_cert_header: client_cert_header?,
    }))
}

/// `"1.2"` or `"1.3"`.
fn tls_version(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<TlsVersion> {
    match raw.get_ref().as_str() {
        "1.2" => Some(TlsVersion::V1_2),
        "1.3" => Some(TlsVersion::V1_3),
        other => {
            let why = if matches!(other, "1.0" | "1.1") {
                "TLS 1.0 and 1.1 are not supported"
            } else {
                "unknown TLS version"
            };
            let message = format!("{why} (\"{other}\"); expected \"1.2\" or \"1.3\"");
            ctx.fail(raw, key, message)
        }
    }
}

/// Every entry of `certificates` (whose key path is `list`) read; `None` if any failed.
fn certificates(ctx: &mut Ctx<'_>, list: &str, raw: &[At<RawCertKey>]) -> Option<Vec<CertKey>> {
    let mut valid = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let prefix = format!("{list}[{i}]");
        let table = (entry, prefix.as_str());
        let e = entry.get_ref();
        let cert = ctx.required(e.cert.as_ref(), table, "cert");
        let key = ctx.required(e.key.as_ref(), table, "key");
        if let (Some(cert), Some(key)) = (cert, key) {
            valid.extend(cert_key(ctx, (cert, key), &prefix));
        }
    }
    (valid.len() == raw.len()).then_some(valid)
}

/// `cert` and `key` of the table at `prefix`: both files read, and the key checked against
/// the certificate. Each problem is reported at the key that names the file concerned.
fn cert_key(
    ctx: &mut Ctx<'_>,
    (raw_cert, raw_key): (&Spanned<String>, &Spanned<String>),
    prefix: &str,
) -> Option<CertKey> {
    let key = |field: &str| format!("{prefix}.{field}");
    let cert_file = ctx.file(raw_cert, key("cert"));
    let key_file = ctx.file(raw_key, key("key"));
    let chain = cert_file.and_then(|file| read(ctx, pem::chain(&file), raw_cert, key("cert")));
    let private_key = key_file
        .as_ref()
        .and_then(|file| read(ctx, pem::private_key(file), raw_key, key("key")));
    let (chain, private_key, key_file) = (chain?, private_key?, key_file?);
    let certified = pem::certified(chain, private_key, &key_file);
    read(ctx, certified, raw_key, key("key"))
}

/// A CA file at `raw`, read.
fn ca_bundle(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<CaBundle> {
    let file = ctx.file(raw, key.clone())?;
    read(ctx, pem::ca_bundle(&file), raw, key)
}

/// The result of reading a file, its error recorded at the key that named the file.
fn read<T>(
    ctx: &mut Ctx<'_>,
    result: Result<T, String>,
    raw: &Spanned<String>,
    key: String,
) -> Option<T> {
    result.map_or_else(|message| ctx.fail(raw, key, message), Some)
}

/// `tls` of the upstream whose key path is `upstream`: `Some(None)` when absent, `None` when
/// invalid (recorded).
pub(super) fn upstream_tls(
    ctx: &mut Ctx<'_>,
    upstream: &str,
    raw: Option<&At<RawUpstreamTls>>,
) -> Option<Option<UpstreamTls>> {
    let Some(table) = raw else {
        return Some(None);
    };
    let t = table.get_ref();
    let prefix = format!("{upstream}.tls");
    let key = |field: &str| format!("{prefix}.{field}");
    let ca = match ctx.optional(t.ca.as_ref(), &key("ca")) {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => ca_bundle(ctx, raw, key("ca")).map(Some),
    };
    let sni = match ctx.optional(t.sni.as_ref(), &key("sni")) {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => server_name(ctx, raw, key("sni")).map(Some),
    };
    let cert = ctx.optional(t.cert.as_ref(), &key("cert"));
    let private_key = ctx.optional(t.key.as_ref(), &key("key"));
    let client_cert = match (cert, private_key) {
        (Some(Some(cert)), Some(Some(private_key))) => {
            cert_key(ctx, (cert, private_key), &prefix).map(Some)
        }
        (Some(Some(cert)), Some(None)) => {
            let message = "cert needs key: the private key of the client certificate";
            ctx.fail(cert, key("key"), message)
        }
        (Some(None), Some(Some(private_key))) => {
            let message = "key needs cert: the client certificate of this private key";
            ctx.fail(private_key, key("cert"), message)
        }
        (Some(None), Some(None)) => Some(None),
        // A value of the wrong type, recorded.
        (None, _) | (_, None) => None,
    };
    Some(Some(UpstreamTls {
        ca: ca?,
        sni: sni?,
        client_cert: client_cert?,
    }))
}

/// `sni`: a DNS name (lower-cased) or an IP address, as rustls takes it.
fn server_name(ctx: &mut Ctx<'_>, raw: &Spanned<String>, key: String) -> Option<String> {
    let text = raw.get_ref();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let lower = text.to_ascii_lowercase();
    let checked = host_name(&lower).map_err(str::to_owned).and_then(|()| {
        ServerName::try_from(lower.as_str())
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match checked {
        Ok(()) => Some(lower),
        Err(why) => {
            let message =
                format!("invalid sni \"{text}\": {why}; expected a DNS name or an IP address");
            ctx.fail(raw, key, message)
        }
    }
}

#[cfg(test)]
mod tests;
