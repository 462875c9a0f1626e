//! Config snippets that point the gateway at certificate files, with absolute paths (the
//! config file is elsewhere). For relative paths, write the config into the Pki's
//! directory with `Gateway::start_in` and use [`CertFiles::toml_relative`].

use super::CertFiles;
use crate::{listener_toml, route_toml, upstream_toml};
use std::net::SocketAddr;
use std::path::Path;

/// `[listeners.tls]` with `certificates` (the first is the default when SNI matches none)
/// and `extra` lines (`client_ca = "..."`, `min_version = "1.3"`, ...). It belongs right
/// after the keys of the `[[listeners]]` table it is for.
pub fn listener_tls_toml(certs: &[&CertFiles], extra: &str) -> String {
    let certs: Vec<String> = certs.iter().map(|c| c.toml()).collect();
    format!(
        "[listeners.tls]\ncertificates = [{}]\n{extra}\n\n",
        certs.join(", ")
    )
}

/// A `[[listeners]]` table named `main` on `{listen}` (with `listener_extra` lines), serving
/// TLS with `certs` and `tls_extra` lines in its `[listeners.tls]`.
pub fn tls_listener_toml(listener_extra: &str, certs: &[&CertFiles], tls_extra: &str) -> String {
    listener_toml(listener_extra) + &listener_tls_toml(certs, tls_extra)
}

/// [`crate::proxy_toml`] with TLS on the listener: one TLS listener, one upstream `backend`
/// at `upstream` (with `upstream_extra` lines; add [`upstream_tls_toml`] there for TLS to
/// it), one catch-all route.
pub fn tls_proxy_toml(
    certs: &[&CertFiles],
    tls_extra: &str,
    upstream: SocketAddr,
    upstream_extra: &str,
) -> String {
    tls_listener_toml("", certs, tls_extra)
        + &upstream_toml("backend", &[(upstream, 1)], upstream_extra)
        + &route_toml("all", "backend")
}

/// `[upstreams.tls]` trusting the CA file `ca` (`None`: the system roots), with `extra`
/// lines (`sni = "backend.internal"`, or a client certificate by [`CertFiles::toml_keys`]).
/// It belongs right after the keys of the `[[upstreams]]` table it is for, e.g. as the end
/// of `upstream_extra` in [`crate::upstream_toml`].
pub fn upstream_tls_toml(ca: Option<&Path>, extra: &str) -> String {
    let ca = ca
        .map(|ca| format!("ca = \"{}\"\n", ca.display()))
        .unwrap_or_default();
    format!("[upstreams.tls]\n{ca}{extra}\n")
}
