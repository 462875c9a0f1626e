//! The validated, immutable configuration. Every value here has passed validation: types
//! cannot hold an invalid state, names are unique, references resolve.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

/// A whole validated configuration, as one epoch will run it.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (`<default>` for the bundled one).
    pub source: String,
    /// The TOML text exactly as read ([`DEFAULT_TOML`](crate::DEFAULT_TOML) for the bundled
    /// one), for `ringway ctl config`. It may hold secrets: redact before showing it.
    pub source_text: String,
    /// `[runtime]`: shards, I/O driver, pinning.
    pub runtime: Runtime,
    /// `[control]`: the control socket, drain and reload timeouts.
    pub control: Control,
    /// `[admin]`; `None` when the table is absent (no admin listener).
    pub admin: Option<Admin>,
    /// `[metrics]`: the defaults when the table is absent.
    pub metrics: Metrics,
    /// `[access_log]`; `None` when the table is absent (no access log).
    pub access_log: Option<AccessLog>,
    /// `[[listeners]]`, in file order; at least one, names and addresses unique.
    pub listeners: Vec<Listener>,
    /// `[resolver]`: how endpoint host names are looked up (the system's resolver when the
    /// table is absent).
    pub resolver: Resolver,
    /// `[[upstreams]]`, in file order; names unique.
    pub upstreams: Vec<Upstream>,
    /// In the order of the file; the router computes precedence.
    pub routes: Vec<Route>,
    /// `[[consumers]]`, in file order; names and API keys unique.
    pub consumers: Vec<Consumer>,
    /// `[[jwt_providers]]`, in file order; names unique.
    pub jwt_providers: Vec<JwtProvider>,
}

impl Config {
    /// The upstream with this name, if any.
    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shards {
    /// One per core available to the process.
    Auto,
    Count(NonZeroUsize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring, falling back to epoll when it cannot start.
    Auto,
    IoUring,
    Epoll,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    /// `shards` (default `"auto"`).
    pub shards: Shards,
    /// `driver` (default `"auto"`).
    pub driver: DriverChoice,
    /// Pin each shard's thread to its own core (default true).
    pub pin: bool,
    /// io_uring submission queue entries per shard: a power of two in 2..=32768 (default 1024).
    pub uring_entries: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// Unix socket path for `ringway ctl` (default `/run/ringway/control.sock`).
    pub socket: PathBuf,
    /// How long SIGTERM or `ctl drain` waits for in-flight requests (default 30s).
    pub drain_timeout: Duration,
    /// How long a reload waits for every shard to acknowledge it (default 5s).
    pub reload_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metrics {
    /// How often shards report to the control thread, and the period of the HdrHistogram
    /// interval log: at least 100ms (default 1s).
    pub interval: Duration,
    /// HdrHistogram interval log file (non-empty); `None`: no interval log.
    pub interval_log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// File the JSON access log is appended to (non-empty).
    pub path: PathBuf,
}

/// `[resolver]`: where upstream endpoint names are looked up, at load and when they are
/// looked up again (every upstream's `resolve_interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolver {
    /// `servers`: DNS servers asked over UDP, in this order until one answers (a port of 53
    /// when none is written). Empty (the default): the system's resolver (`getaddrinfo`:
    /// `/etc/hosts`, then the servers of `/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// `timeout`: how long one server is given to answer one query (default 2s).
    pub timeout: Duration,
}

impl Default for Resolver {
    fn default() -> Resolver {
        Resolver {
            servers: Vec::new(),
            timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    /// Address of the admin listener (`/metrics`, `/healthz`, `/ready`).
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Unique among listeners; routes refer to it.
    pub name: String,
    /// Bound by every shard (SO_REUSEPORT); host names were resolved at load.
    pub listen: SocketAddr,
    /// Cap on open downstream connections, per shard; past it new connections get 503 and close.
    pub max_connections: NonZeroUsize,
    /// Time allowed to receive a whole request head, from its first byte (or the accept).
    pub header_timeout: Duration,
    /// How long a keep-alive connection may wait for the next request.
    pub idle_timeout: Duration,
    /// Longest quiet time while reading a request body.
    pub body_timeout: Duration,
    /// Longest time one write to the client may wait for the client to read (nginx's
    /// `send_timeout`); then the connection is closed.
    pub send_timeout: Duration,
    /// Longest request line (method, target, version) in bytes; past it 414.
    pub max_request_line: usize,
    /// Largest request head (request line and headers) in bytes; past it 431.
    pub max_header_bytes: usize,
    /// Largest request body in bytes; past it 413.
    pub max_request_body: u64,
    /// `tls`; `None`: a plaintext listener.
    pub tls: Option<ListenerTls>,
    /// `trusted_proxies`: addresses of proxies in front of the gateway. A request from one of
    /// them has its client address taken from `X-Forwarded-For` (the last address that is not
    /// itself trusted), and its forwarding headers are extended; from anyone else they are
    /// replaced. Empty: nobody is trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// `proxy_protocol`: every connection starts with a PROXY protocol header (v1 or v2),
    /// whose source address is the client's (only from `trusted_proxies` when that is set).
    pub proxy_protocol: bool,
    /// `encoded_slashes`: what a `%2F` or `%5C` in a request's path gets. The path is
    /// normalised before routing either way (core/src/http/path.rs).
    pub encoded_slashes: EncodedSlashes,
}

/// `encoded_slashes` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// `"reject"` (the default): 400, since a server behind the gateway may decode them into
    /// separators the router never saw.
    Reject,
    /// `"keep"`: passed on encoded, as part of a segment.
    Keep,
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is a host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in the network; an IPv4-mapped IPv6 address counts as its IPv4 one.
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Parses `a.b.c.d/n`, `v6/n` or a bare address; the address must have no bits set past
    /// the prefix, so that a typo like `10.0.0.1/8` is not silently widened.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        use std::net::IpAddr;
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("\"{text}\" is not an IP address or CIDR network"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("\"{text}\": prefix length must be 0 to {max}")),
            },
        };
        let net = IpNet { addr, prefix };
        if net.network() != addr {
            return Err(format!(
                "\"{text}\" has host bits set; the network is {}/{prefix}",
                net.network()
            ));
        }
        Ok(net)
    }

    fn network(&self) -> std::net::IpAddr {
        use std::net::IpAddr;
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// `tls` of a listener: it speaks TLS 1.2/1.3 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// `certificates`: at least one; SNI picks among them by the names in each certificate;
    /// the first is the default.
    pub certificates: Vec<CertKey>,
    /// `client_ca`: mutual TLS; clients must present a certificate issued by one of these.
    pub client_ca: Option<CaBundle>,
    /// `client_auth`: "required" (default when client_ca is set) or "optional" (a client
    /// without a certificate is let through; one with a bad certificate is refused). Refused
    /// without client_ca.
    pub client_auth: ClientAuth,
    /// `min_version`: "1.2" (default) or "1.3".
    pub min_version: TlsVersion,
    /// `handshake_timeout`: duration, default "10s"; a TLS handshake not done in this time is
    /// closed.
    pub handshake_timeout: Duration,
    /// `session_tickets`: bool, default true (stateless resumption, keys rotated by the
    /// gateway).
    pub session_tickets: bool,
    /// `session_cache`: integer entries, default 20000, 0 = off (session-id resumption, shared
    /// by all shards).
    pub session_cache: usize,
    /// `client_cert_header`: optional header name (an HTTP token, stored lowercase) in which
    /// the verified client certificate's identity is forwarded upstream; only with client_ca.
    pub client_cert_header: Option<String>,
}

/// `client_auth` of a listener's `tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Required,
    Optional,
}

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    V1_2,
    V1_3,
}

/// A certificate chain and its private key, read from PEM files at load (so a reload re-reads
/// them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertKey {
    /// The certificate file, resolved from the config file's folder.
    pub cert_file: PathBuf,
    /// The key file, resolved from the config file's folder.
    pub key_file: PathBuf,
    /// DER certificates, leaf first, in file order.
    pub chain: Vec<Vec<u8>>,
    /// It matches the leaf's public key, and rustls can sign with it.
    pub key: PrivateKey,
    /// DNS names the leaf certifies, lowercase: its subjectAltName DNS entries (wildcards kept
    /// as "*.example.com"); the subject CN only when there are no DNS SANs.
    pub names: Vec<String>,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    /// The leaf's subject, RFC 4514 text (for status output).
    pub subject: String,
}

/// DER private key; Debug never prints the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey {
    pub format: KeyFormat,
    pub der: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("format", &self.format)
            .field("der", &format_args!("<{} bytes>", self.der.len()))
            .finish()
    }
}

/// The PEM label a private key was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// `RSA PRIVATE KEY`.
    Pkcs1,
    /// `EC PRIVATE KEY`.
    Sec1,
    /// `PRIVATE KEY`.
    Pkcs8,
}

/// CA certificates read from one PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaBundle {
    /// Resolved from the config file's folder.
    pub file: PathBuf,
    /// DER certificates, at least one, in file order.
    pub certs: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Unique among upstreams; routes refer to it.
    pub name: String,
    /// May be empty: requests routed here get 503.
    pub endpoints: Vec<Endpoint>,
    /// Time allowed to establish a connection to an endpoint.
    pub connect_timeout: Duration,
    /// From the start of forwarding a request until the response head has arrived.
    pub request_timeout: Duration,
    /// Longest quiet time while reading from or writing to an upstream connection.
    pub idle_timeout: Duration,
    /// How long an unused pooled keep-alive connection is kept.
    pub pool_idle_timeout: Duration,
    /// Most idle pooled connections kept per endpoint, per shard.
    pub max_idle_per_endpoint: usize,
    /// How each request's endpoint is chosen (`balance`, default round robin).
    pub balance: Balance,
    /// `circuit_breaker`; `None`: no breaker, every request is sent.
    pub circuit_breaker: Option<CircuitBreaker>,
    /// `health_check`; `None`: no active checks, every endpoint counts as healthy.
    pub health_check: Option<HealthCheck>,
    /// `outlier_detection`; `None`: no endpoint is ever ejected.
    pub outlier_detection: Option<OutlierDetection>,
    /// `tls`; `None`: plaintext connections to the endpoints.
    pub tls: Option<UpstreamTls>,
    /// `resolve_interval`: how often the endpoints written as host names are looked up again
    /// while the config runs (default 30s, at least 100ms); `None` (`"off"`): only at load.
    pub resolve_interval: Option<Duration>,
    /// `protocol`: what the gateway speaks to the endpoints (default `"h1"`).
    pub protocol: UpstreamProtocol,
}

/// `protocol` of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 (`"h1"`), one request at a time per pooled connection.
    #[default]
    H1,
    /// HTTP/2 (`"h2"`): h2c on plaintext, ALPN h2 over TLS; streams multiplexed over few
    /// connections. What gRPC services speak.
    H2,
}

/// `tls` of an upstream: every connection to its endpoints is TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// `ca`: the CAs endpoint certificates are verified against; None: the system's roots.
    pub ca: Option<CaBundle>,
    /// `sni`: the server name sent and verified (lowercase); None: the endpoint's host name
    /// when its address was written as a name, else its IP address.
    pub sni: Option<String>,
    /// `cert` + `key` (both or neither): the client certificate presented to endpoints.
    pub client_cert: Option<CertKey>,
}

/// `circuit_breaker` of an upstream: per shard, it opens after `consecutive_failures` or when
/// the failures in `window` reach `error_percent`, answers 503 while open, and lets
/// `half_open_probes` requests through after `open_for` to decide whether to close.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    /// Failures in a row that open the breaker (default 5); 0: this trigger is off.
    pub consecutive_failures: u32,
    /// Share of failed requests in `window`, in percent, that opens it; `None`: off (default).
    pub error_percent: Option<u32>,
    /// The sliding window of `error_percent` (default 10s).
    pub window: Duration,
    /// Fewest requests in `window` before `error_percent` applies (default 20).
    pub min_requests: u32,
    /// How long it stays open the first time (default 5s).
    pub open_for: Duration,
    /// Each reopening after failed probes doubles the open time, up to this (default
    /// `open_for`: no growth); at least `open_for`.
    pub max_open_for: Duration,
    /// Requests let through while half-open; all must succeed to close (default 1).
    pub half_open_probes: u32,
}

/// `health_check` of an upstream: HTTP or gRPC checks from the control thread to every
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// `kind`: what a check sends (default `"http"`).
    pub kind: HealthCheckKind,
    /// Request target of the check (default `/`): starts with `/`, no spaces or controls.
    pub path: String,
    /// `Host` header of the check; `None`: the endpoint's address.
    pub host: Option<String>,
    /// Time between two checks of an endpoint (default 5s).
    pub interval: Duration,
    /// Time allowed for one check, connect to status line (default 1s); at most `interval`.
    pub timeout: Duration,
    /// Statuses that pass, as inclusive ranges (default 200..=299).
    pub expected_statuses: Vec<(u16, u16)>,
    /// Passed checks in a row that make an unhealthy endpoint healthy (default 2).
    pub healthy_threshold: u32,
    /// Failed checks in a row that make a healthy endpoint unhealthy (default 3).
    pub unhealthy_threshold: u32,
}

/// `kind` of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HealthCheckKind {
    /// `GET path` over HTTP/1.1; passes on an expected status.
    #[default]
    Http,
    /// `grpc.health.v1.Health/Check` for `service` (`""`: the server as a whole) over HTTP/2;
    /// passes on SERVING.
    Grpc { service: String },
}

impl HealthCheck {
    /// Whether a check answered with `status` passes.
    pub fn expects(&self, status: u16) -> bool {
        self.expected_statuses
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }
}

/// `outlier_detection` of an upstream: per shard, an endpoint that fails too often in a row
/// is ejected (not picked) for a back-off time that grows with each ejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Failures in a row (5xx responses, connect failures, resets, timeouts, malformed
    /// responses) that eject (default 5); 0: off.
    pub consecutive_5xx: u32,
    /// Gateway failures in a row (502, 503, 504 responses, connect failures, resets,
    /// timeouts, malformed responses) that eject (default 0: off).
    pub consecutive_gateway_failure: u32,
    /// Ejection time the first time; the n-th ejection in a row lasts n times this (default 30s).
    pub base_ejection_time: Duration,
    /// Longest ejection (default 300s); at least `base_ejection_time`.
    pub max_ejection_time: Duration,
    /// Most endpoints ejected at once, in percent of the upstream's endpoints, rounded down,
    /// but at least one of two or more (default 10).
    pub max_ejection_percent: u32,
}

/// `balance` (and `hash_key`) of an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// `"round_robin"`: smooth weighted round robin, per shard.
    RoundRobin,
    /// `"random"`: weighted random, per shard.
    Random,
    /// `"least_request"`: of two distinct endpoints drawn at random (weighted), the one with
    /// fewer requests in flight on this shard.
    LeastRequest,
    /// `"hash"`: consistent hashing (Maglev) on `hash_key`; round robin when the request has
    /// no such key.
    Hash(HashKey),
}

/// What a `"hash"` upstream hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// `"client_ip"`: the downstream peer address (without port).
    ClientIp,
    /// `"header:NAME"`: the first field with this name; lower-case.
    Header(String),
    /// `"cookie:NAME"`: the value of the cookie with this name (case-sensitive).
    Cookie(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host names were resolved at load, and again every `resolve_interval` of the upstream
    /// while the config runs: one of the addresses found (see `ringway_config::resolve`).
    pub address: SocketAddr,
    /// The host name as written in `address`, lowercase, when it was a name; `None` for an IP
    /// literal.
    pub host: Option<String>,
    /// Relative share of requests, 1..=1000 (default 1).
    pub weight: NonZeroU32,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Unique among routes; per-route state and metrics are keyed by it.
    pub name: String,
    /// Listener names this route serves; empty means every listener.
    pub listeners: Vec<String>,
    /// `None` matches any host.
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// Upper-case method names; empty means any method.
    pub methods: Vec<String>,
    /// Every one must match; empty means no header condition.
    pub headers: Vec<HeaderMatch>,
    /// What a matched request gets.
    pub action: RouteAction,
    /// `timeout`: how long a proxied request may wait for its response head, every try and
    /// back-off included; `None`: each try is bounded by the upstream's `request_timeout` only.
    pub timeout: Option<Duration>,
    /// `retry`: when a failed try is sent again; `None`: never (a stale pooled connection is
    /// still replaced once, see the upstream pool).
    pub retry: Option<Retry>,
    /// `rate_limit`: a token bucket per key, node-wide; `None`: not rate limited.
    pub rate_limit: Option<RateLimit>,
    /// `max_in_flight`: most requests of this route in flight at once on each shard (past it
    /// 503); `None`: no cap.
    pub max_in_flight: Option<NonZeroUsize>,
    /// `websocket`: a WebSocket handshake is passed to the upstream, and after its 101 the
    /// connection relays bytes both ways (default true on proxy routes; false on others).
    pub websocket: bool,
    /// `websocket_idle_timeout`: an upgraded connection with no byte either way for this long
    /// is closed (default 5m).
    pub websocket_idle_timeout: Duration,
    /// `auth` (and `api_key`): how a request proves which consumer it is; `None`: anyone.
    pub auth: Option<RouteAuth>,
    /// `acl`: which consumers may use the route (it needs `auth`); `None`: every consumer.
    pub acl: Option<Acl>,
}

/// One `[[consumers]]` table: a caller the gateway knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub name: String,
    /// `groups`, deduplicated, in file order.
    pub groups: Vec<String>,
    /// `api_keys`, kept as their SHA-256 digests only (a key given as `sha256:<hex>` is its
    /// digest already).
    pub api_keys: Vec<KeyDigest>,
    /// `basic`: a user name and password for HTTP basic authentication.
    pub basic: Option<BasicCredential>,
    /// `jwt_subject`: a valid JWT whose `sub` is this names this consumer.
    pub jwt_subject: Option<String>,
}

/// One `[[jwt_providers]]` table: who issues the tokens a route's `"jwt:NAME"` accepts, and
/// the keys they are signed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtProvider {
    pub name: String,
    /// `issuer`: the `iss` a token must carry; `None`: any.
    pub issuer: Option<String>,
    /// `audiences`: a token's `aud` must name one of them; empty: any.
    pub audiences: Vec<String>,
    /// The keys of `jwks_file`, and the HMAC secret of `secret_file`.
    pub keys: Vec<Jwk>,
    pub jwks_file: Option<PathBuf>,
    pub secret_file: Option<PathBuf>,
    /// `leeway`: how far `exp` and `nbf` may be off (default 30s).
    pub leeway: Duration,
}

/// One verification key.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The key's `alg`, when the JWKS names one: tokens must then use exactly it.
    pub alg: Option<String>,
    pub key: JwkKey,
}

#[derive(Clone, PartialEq, Eq)]
pub enum JwkKey {
    /// RS256/384/512 and PS256/384/512: the big-endian modulus and exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// ES256 (P-256) or ES384 (P-384): the uncompressed point (0x04, x, y).
    Ec { p384: bool, point: Vec<u8> },
    /// EdDSA with Ed25519: the 32-byte public key.
    Ed25519(Vec<u8>),
    /// HS256/384/512: the shared secret.
    Hmac(Vec<u8>),
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.key {
            JwkKey::Rsa { .. } => "RSA",
            JwkKey::Ec { p384: false, .. } => "EC P-256",
            JwkKey::Ec { p384: true, .. } => "EC P-384",
            JwkKey::Ed25519(_) => "Ed25519",
            JwkKey::Hmac(_) => "HMAC secret (redacted)",
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("key", &kind)
            .finish()
    }
}

/// `basic = { user, password_hash }` of a consumer.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredential {
    /// Unique among consumers; no `:`.
    pub user: String,
    /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`, as `htpasswd -B` writes it).
    pub password_hash: String,
}

impl fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredential")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// The SHA-256 digest of a secret; its `Debug` shows nothing of it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest(pub [u8; 32]);

impl KeyDigest {
    /// The SHA-256 digest of `secret`.
    pub fn of(secret: &[u8]) -> KeyDigest {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        KeyDigest(out)
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest(<redacted>)")
    }
}

/// `auth` of a route: the methods tried in order; the first that names a consumer wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    pub methods: Vec<AuthMethod>,
    /// `api_key`: where the `api_key` method finds the key.
    pub api_key: ApiKeyFrom,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// `"api_key"`: a key of a consumer's `api_keys`, from a header or a query parameter.
    ApiKey,
    /// `"basic"`: HTTP basic authentication against a consumer's `basic` credentials.
    Basic,
    /// `"jwt:NAME"`: a bearer JWT signed by a key of `jwt_providers[index]`.
    Jwt(usize),
}

/// `api_key = { header, query }` of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyFrom {
    /// The header carrying the key, lower-case (default `x-api-key`).
    pub header: String,
    /// A query parameter carrying the key, tried when the header is absent; `None`: keys
    /// are read from the header only.
    pub query: Option<String>,
}

/// `acl = { allow, deny }`: a consumer matched by `deny` is refused; with `allow`, only a
/// consumer it matches is let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub allow: Vec<Principal>,
    pub deny: Vec<Principal>,
}

/// `"consumer:NAME"` or `"group:NAME"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Consumer(String),
    Group(String),
}

/// `retry` of a proxy route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Tries after the first, 1..=10 (default 1).
    pub retries: u32,
    /// `on`: which failures are retried (default connect_failure, reset and timeout).
    pub on: RetryOn,
    /// Response statuses retried (default none), e.g. 502, 503, 504.
    pub statuses: Vec<u16>,
    /// Retry methods that are not idempotent (POST, PATCH) too (default false). A connect
    /// failure is retried whatever the method: nothing reached the upstream.
    pub non_idempotent: bool,
    /// Bound on one try, from sending to the response head; `None`: the upstream's
    /// `request_timeout`.
    pub per_try_timeout: Option<Duration>,
    /// Base of the jittered exponential back-off between tries (default 25ms, at most 10x).
    pub backoff: Duration,
    /// A request body up to this size is read whole before the first try, so that it can be
    /// sent again (default 64 KiB); a larger body is streamed and its request is not retried
    /// once a byte of the body has gone upstream.
    pub max_buffered_body: u64,
    /// Retries in flight may be at most this share of the requests in flight on the route,
    /// per shard (default 20)...
    pub budget_percent: u32,
    /// ...but this many are always allowed (default 3).
    pub min_retries: u32,
}

/// `on` of a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn {
    /// `"connect_failure"`: the connection was refused or timed out.
    pub connect_failure: bool,
    /// `"reset"`: the upstream closed or reset the connection before any response byte.
    pub reset: bool,
    /// `"timeout"`: no response head within the try's timeout.
    pub timeout: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case host name, without port.
    Exact(String),
    /// `*.example.com` is stored as the suffix `.example.com` (lower case); it matches
    /// `a.example.com` and `a.b.example.com`, not `example.com`.
    Wildcard(String),
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    /// No path key: every path.
    Any,
    Exact(String),
    Prefix(String),
    /// Anchored at both ends (`^(?:...)$` is added), matched against the path without query.
    Regex(regex::Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Lower-case header name.
    pub name: String,
    /// Exact value; `None` means the header only has to be present.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteAction {
    /// Proxy to the named upstream (it exists: validation checked).
    Proxy {
        upstream: String,
    },
    Respond(DirectResponse),
    Redirect(Redirect),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectResponse {
    /// 200..=599; 204 and 304 have an empty body.
    pub status: u16,
    /// In file order, names as written (HTTP tokens), values without CR/LF/NUL; never
    /// `content-length` or `transfer-encoding` (the gateway frames the body itself).
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Non-empty, without CR/LF/NUL; sent as the `location` header.
    pub location: String,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
    /// Append the request's path and query to `location`.
    pub keep_path: bool,
}

/// `rate_limit` of a route: one token bucket per key for the whole node (every shard
/// together), refilled with `rate` tokens every `per`, holding at most `burst`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Tokens added every `per`: at least 1.
    pub rate: NonZeroU32,
    /// The period of `rate` (default 1s).
    pub per: Duration,
    /// Most tokens the bucket holds: the largest burst admitted at once (default `rate`).
    pub burst: NonZeroU32,
    /// What requests are counted by (default the whole route).
    pub key: RateLimitKey,
    /// Most keys each shard keeps buckets for; the least recently used goes first (default
    /// 10000).
    pub max_keys: NonZeroUsize,
}

/// `key` of a rate limit: which requests share a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateLimitKey {
    /// `"route"`: every request of the route.
    Route,
    /// `"client_ip"`: the downstream peer address (without port).
    ClientIp,
    /// `"header:NAME"`: the value of the first field with this name (lower-case); requests
    /// without it share one bucket.
    Header(String),
    /// `"consumer"`: the consumer the route's `auth` found (it needs `auth`).
    Consumer,
}

impl RateLimitKey {
    /// The kind of key, as a metrics label: `route`, `client_ip`, `header` or `consumer`.
    pub fn kind(&self) -> &'static str {
        match self {
            RateLimitKey::Route => "route",
            RateLimitKey::ClientIp => "client_ip",
            RateLimitKey::Header(_) => "header",
            RateLimitKey::Consumer => "consumer",
        }
    }
}
