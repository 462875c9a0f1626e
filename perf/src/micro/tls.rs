//! TLS handshakes in memory, for the choice of rustls's crypto provider (aws-lc-rs or ring):
//! a rustls client and a rustls server exchange records through a buffer, no sockets, and the
//! time spent in the server's calls is its CPU per handshake. The client is `load`'s (no
//! certificate checks, a reused X25519 key share), so its figure is also the load
//! generator's cost per handshake, beside the server's.
//!
//! Cases, for each provider and key (ECDSA P-256, RSA 2048, self-signed, made in memory): a
//! full TLS 1.3 handshake; a resumed one (the server's stateless tickets, as with
//! `session_tickets = true`); a full TLS 1.2 one; a TLS 1.2 one resumed by session ID (the
//! server's session cache).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rcgen::{CertificateParams, KeyPair, SignatureAlgorithm};
use rustls::crypto::{aws_lc_rs, ring, CryptoProvider};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, ServerConnection};

use crate::tls::{client_config, Version};

struct Case {
    name: &'static str,
    version: Version,
    resume: bool,
}

const CASES: [Case; 4] = [
    Case {
        name: "TLS 1.3 full",
        version: Version::Tls13,
        resume: false,
    },
    Case {
        name: "TLS 1.3 resumed (ticket)",
        version: Version::Tls13,
        resume: true,
    },
    Case {
        name: "TLS 1.2 full",
        version: Version::Tls12,
        resume: false,
    },
    Case {
        name: "TLS 1.2 resumed (session ID)",
        version: Version::Tls12,
        resume: true,
    },
];

type Ticketer = fn() -> Result<Arc<dyn ProducesTickets>, rustls::Error>;

pub fn run(time: Duration) -> Result<()> {
    let keys: [(&str, &'static SignatureAlgorithm); 2] = [
        ("ECDSA P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
        ("RSA 2048", &rcgen::PKCS_RSA_SHA256),
    ];
    let providers: [(&str, CryptoProvider, Ticketer); 2] = [
        (
            "aws-lc-rs",
            aws_lc_rs::default_provider(),
            aws_lc_rs::Ticketer::new,
        ),
        ("ring", ring::default_provider(), ring::Ticketer::new),
    ];
    println!(
        "{:<54} {:>10} {:>16} {:>10}",
        "server side of a handshake, in memory", "server us", "(min - max)", "client us"
    );
    for (key_name, alg) in keys {
        let key = KeyPair::generate_for(alg).context("generating a key")?;
        let cert = CertificateParams::new(vec!["localhost".to_string()])?
            .self_signed(&key)
            .context("self-signing a certificate")?;
        for (provider_name, provider, ticketer) in &providers {
            let mut server = ServerConfig::builder_with_provider(Arc::new(provider.clone()))
                .with_protocol_versions(rustls::DEFAULT_VERSIONS)?
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                )?;
            server.ticketer = ticketer()?;
            server.session_storage = ServerSessionMemoryCache::new(20_000);
            let server = Arc::new(server);
            for case in &CASES {
                let client = Arc::new(client_config(Some(case.version), case.resume)?);
                let (server_us, min, max, client_us) = measure(time, &client, &server, case)?;
                println!(
                    "{:<54} {server_us:>10.1} {:>16} {client_us:>10.1}",
                    format!("{provider_name}, {key_name}, {}", case.name),
                    format!("({min:.1} - {max:.1})"),
                );
            }
        }
    }
    Ok(())
}

/// Handshakes in batches of about 10 ms for `time`; returns the median, min and max of the
/// batches' server microseconds per handshake, and the median of the client's.
fn measure(
    time: Duration,
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
    case: &Case,
) -> Result<(f64, f64, f64, f64)> {
    // The first handshake primes the client's session store.
    handshake(client, server)?;
    let mut batch = 1u32;
    loop {
        let start = Instant::now();
        for _ in 0..batch {
            check(handshake(client, server)?, case)?;
        }
        if start.elapsed() > Duration::from_millis(10) {
            break;
        }
        batch *= 2;
    }
    let end = Instant::now() + time;
    let (mut server_us, mut client_us) = (Vec::new(), Vec::new());
    while Instant::now() < end || server_us.len() < 5 {
        let (mut on_server, mut total) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..batch {
            let start = Instant::now();
            let (kind, server_time) = handshake(client, server)?;
            total += start.elapsed();
            on_server += server_time;
            check((kind, server_time), case)?;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(batch);
        server_us.push(per(on_server));
        client_us.push(per(total - on_server));
    }
    server_us.sort_by(f64::total_cmp);
    client_us.sort_by(f64::total_cmp);
    Ok((
        server_us[server_us.len() / 2],
        server_us[0],
        server_us[server_us.len() - 1],
        client_us[client_us.len() / 2],
    ))
}

fn check((kind, _): (Option<HandshakeKind>, Duration), case: &Case) -> Result<()> {
    let resumed = kind == Some(HandshakeKind::Resumed);
    if resumed != case.resume {
        bail!("{}: the handshake was {kind:?}", case.name);
    }
    Ok(())
}

/// One handshake, to the end of the server's last flight (TLS 1.3: its tickets); returns
/// its kind and the time spent in the server's calls.
fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> Result<(Option<HandshakeKind>, Duration)> {
    let mut c = ClientConnection::new(client.clone(), ServerName::try_from("localhost")?)?;
    let start = Instant::now();
    let mut s = ServerConnection::new(server.clone())?;
    let mut on_server = start.elapsed();
    let mut records = Vec::with_capacity(16 * 1024);
    loop {
        records.clear();
        while c.wants_write() {
            c.write_tls(&mut records)?;
        }
        let start = Instant::now();
        let sent = !records.is_empty();
        let mut rd = &records[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd)?;
            s.process_new_packets()?;
        }
        records.clear();
        while s.wants_write() {
            s.write_tls(&mut records)?;
        }
        on_server += start.elapsed();
        let answered = !records.is_empty();
        let mut rd = &records[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd)?;
            c.process_new_packets()?;
        }
        if !sent && !answered && !c.is_handshaking() && !s.is_handshaking() {
            return Ok((s.handshake_kind(), on_server));
        }
    }
}
