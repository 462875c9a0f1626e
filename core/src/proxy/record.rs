//! What one request did, recorded at its end into the shard's statistics and access log.

use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Instant, SystemTime};

use super::Downstream;
use crate::http::h1::{HeaderKind, HeaderRef, RequestHead};
use crate::metrics::{ErrorCause, TrafficStats};
use crate::policy::identity::{AuthFailure, Credential};
use crate::router::RouteId;
use crate::state::access_log::{json_str, rfc3339};
use crate::state::{RouteSlot, Shard, ShardEpoch, UpstreamSlot};

/// Longest client-supplied request id kept (longer ones are cut).
const MAX_REQUEST_ID: usize = 128;

pub(crate) struct RequestLog {
    /// Write access-log lines (the fields below that only the log needs are filled then).
    access_log: bool,
    pub start: Instant,
    wall: SystemTime,
    /// The status sent to the client; 0 when none could be sent.
    pub status: u16,
    pub route: Option<RouteId>,
    /// The route as this request's epoch resolved it, once routed (looked up once, used by
    /// the policies, the retries and the statistics).
    pub route_slot: Option<Rc<RouteSlot>>,
    pub upstream: Option<usize>,
    pub upstream_slot: Option<Rc<UpstreamSlot>>,
    pub endpoint: Option<SocketAddr>,
    /// From forwarding the request to the upstream's response head.
    pub upstream_us: Option<u64>,
    pub cause: Option<ErrorCause>,
    /// The consumer the route's auth found (an index into the epoch's consumers).
    pub consumer: Option<u32>,
    /// Why the route's auth found none.
    pub auth_failure: Option<AuthFailure>,
    /// Where the credentials that found the consumer were.
    pub credential: Option<Credential>,
    /// Bytes the client sent past HTTP (an upgraded connection's).
    pub upgraded_in: u64,
    in_start: u64,
    out_start: u64,
    /// `"method":..,"host":..,"path":..` for the access log, captured while the head is there.
    fields: Vec<u8>,
}

impl RequestLog {
    pub fn new(access_log: bool) -> RequestLog {
        RequestLog {
            access_log,
            start: Instant::now(),
            wall: SystemTime::UNIX_EPOCH,
            status: 0,
            route: None,
            route_slot: None,
            upstream: None,
            upstream_slot: None,
            endpoint: None,
            upstream_us: None,
            cause: None,
            consumer: None,
            auth_failure: None,
            credential: None,
            upgraded_in: 0,
            in_start: 0,
            out_start: 0,
            fields: Vec::with_capacity(if access_log { 256 } else { 0 }),
        }
    }

    /// Starts a request: its head just arrived.
    pub fn begin(&mut self, consumed_total: u64, written: u64) {
        self.start = Instant::now();
        if self.access_log {
            self.wall = SystemTime::now();
        }
        self.status = 0;
        self.route = None;
        self.route_slot = None;
        self.upstream = None;
        self.upstream_slot = None;
        self.endpoint = None;
        self.upstream_us = None;
        self.cause = None;
        self.consumer = None;
        self.auth_failure = None;
        self.credential = None;
        self.upgraded_in = 0;
        self.in_start = consumed_total;
        self.out_start = written;
        self.fields.clear();
    }

    /// Takes what is needed later from the head before it leaves the buffer, and settles the
    /// request id.
    pub fn capture(
        &mut self,
        shard: &Shard,
        src: &[u8],
        head: &RequestHead,
        headers: &[HeaderRef],
        request_id: &mut Vec<u8>,
        h2: bool,
    ) {
        request_id.clear();
        match headers.iter().find(|h| h.kind == HeaderKind::XRequestId) {
            Some(h) => {
                let value = h.value.get(src);
                request_id.extend_from_slice(&value[..value.len().min(MAX_REQUEST_ID)]);
            }
            None => shard.request_id(request_id),
        }
        if self.access_log {
            self.fields.extend_from_slice(b"\"method\":");
            json_str(&mut self.fields, head.method_span.get(src));
            self.fields.extend_from_slice(b",\"host\":");
            json_str(&mut self.fields, head.host.map_or(&b""[..], |h| h.get(src)));
            self.fields.extend_from_slice(b",\"path\":");
            json_str(&mut self.fields, head.target.get(src));
            self.fields.extend_from_slice(b",\"protocol\":\"");
            let protocol = if h2 { "HTTP/2" } else { head.version.as_str() };
            self.fields.extend_from_slice(protocol.as_bytes());
            self.fields.push(b'"');
        }
    }
}

impl RequestLog {
    /// Replaces `secret` (a credential the request carried in its target) in what the access
    /// log will show of the request.
    pub fn redact(&mut self, secret: &[u8]) {
        if !self.access_log || secret.is_empty() {
            return;
        }
        if let Some(at) = self.fields.windows(secret.len()).position(|w| w == secret) {
            self.fields
                .splice(at..at + secret.len(), b"<redacted>".iter().copied());
        }
    }

    /// For a request refused before its head parsed: a fresh id, and for the access log the
    /// request line's first two words as sent (cut short, escaped when written).
    pub fn capture_rejected(&mut self, shard: &Shard, src: &[u8], request_id: &mut Vec<u8>) {
        request_id.clear();
        shard.request_id(request_id);
        if self.access_log {
            let line = src.split(|&b| b == b'\n').next().unwrap_or(b"");
            let mut words = line.split(|&b| b == b' ');
            let method = words.next().unwrap_or(b"");
            let target = words.next().unwrap_or(b"");
            self.fields.extend_from_slice(b"\"method\":");
            json_str(&mut self.fields, &method[..method.len().min(32)]);
            self.fields.extend_from_slice(b",\"host\":null,\"path\":");
            json_str(&mut self.fields, &target[..target.len().min(256)]);
            self.fields.extend_from_slice(b",\"protocol\":null");
        }
    }
}

fn apply(stats: &mut TrafficStats, log: &RequestLog, total_us: u64, bytes_in: u64, bytes_out: u64) {
    stats.requests += 1;
    stats.record_status(log.status);
    stats.bytes_in += bytes_in;
    stats.bytes_out += bytes_out;
    // An upgraded connection's life is not a request's latency: its 101 counts, its
    // duration goes to the access log only.
    if log.status != 101 {
        stats.total_latency.record(total_us.max(1));
    }
    if let Some(us) = log.upstream_us {
        stats.upstream_latency.record(us.max(1));
    }
    if let Some(cause) = log.cause {
        stats.record_error(cause);
    }
}

/// Records the finished request of `d` into the shard's statistics and access log.
pub(crate) fn finish(shard: &Shard, sep: &ShardEpoch, d: &mut Downstream) {
    // Taken: a pooled request state must not keep an epoch's routes alive.
    let route_slot = d.log.route_slot.take();
    let upstream_slot = d.log.upstream_slot.take();
    let log = &d.log;
    let total_us = log.start.elapsed().as_micros() as u64;
    let bytes_in = d.buf.consumed_total() - log.in_start + log.upgraded_in;
    let bytes_out = d.written - log.out_start;
    // Routing sets both; the lookup is only a fallback should a path set the route alone.
    let route_slot = route_slot.or_else(|| log.route.map(|route| sep.route(shard, route)));
    match route_slot {
        Some(slot) => shard.record_route(&slot.state, |stats| {
            apply(stats, log, total_us, bytes_in, bytes_out)
        }),
        None => shard.record_unrouted(|s| apply(s, log, total_us, bytes_in, bytes_out)),
    }
    if let Some(upstream) = log.upstream {
        let slot = upstream_slot.unwrap_or_else(|| sep.upstream(shard, upstream));
        let mut stats = slot.stats.borrow_mut();
        stats.requests += 1;
        stats.record_status(log.status);
        stats.bytes_in += bytes_in;
        stats.bytes_out += bytes_out;
        if let Some(us) = log.upstream_us {
            stats.upstream_latency.record(us.max(1));
        }
        if let Some(cause) = log
            .cause
            .filter(|c| c.side() == crate::error::Side::Upstream)
        {
            stats.record_error(cause);
        }
    }
    if let Some(access_log) = &shard.access_log {
        let config = &sep.epoch.config;
        access_log.line(|out| {
            out.extend_from_slice(b"{\"time\":\"");
            rfc3339(out, log.wall);
            out.extend_from_slice(b"\",\"request_id\":");
            json_str(out, &d.request_id);
            // The peer with its port, or the address a trusted proxy forwarded for.
            if d.client == d.peer.ip() {
                let _ = write!(out, ",\"client\":\"{}\",", d.peer);
            } else {
                let _ = write!(out, ",\"client\":\"{}\",", d.client);
            }
            if log.fields.is_empty() {
                out.extend_from_slice(b"\"method\":null,\"host\":null,\"path\":null");
            } else {
                out.extend_from_slice(&log.fields);
            }
            let _ = write!(
                out,
                ",\"status\":{},\"bytes_in\":{bytes_in},\"bytes_out\":{bytes_out},\"route\":",
                log.status
            );
            match log.route {
                Some(r) => json_str(out, config.routes[r].name.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"upstream\":");
            match log.upstream {
                Some(u) => json_str(out, config.upstreams[u].name.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            match log.endpoint {
                Some(e) => {
                    let _ = write!(out, ",\"endpoint\":\"{e}\"");
                }
                None => out.extend_from_slice(b",\"endpoint\":null"),
            }
            let _ = write!(
                out,
                ",\"duration_ms\":{:.3},\"upstream_ms\":",
                total_us as f64 / 1000.0
            );
            match log.upstream_us {
                Some(us) => {
                    let _ = write!(out, "{:.3}", us as f64 / 1000.0);
                }
                None => out.extend_from_slice(b"null"),
            }
            let _ = write!(out, ",\"shard\":{},\"cause\":", shard.index);
            match log.cause {
                Some(c) => json_str(out, c.as_str().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"consumer\":");
            let consumers = &sep.epoch.identity.consumers;
            match log.consumer.and_then(|c| consumers.get(c as usize)) {
                Some(c) => json_str(out, c.name.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b",\"auth\":");
            match log.auth_failure {
                Some(f) => json_str(out, f.as_str().as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            // An HTTP/1.1 connection's TLS stream, or an HTTP/2 one's session kept by its
            // streams.
            let tls = match (d.stream.tls(), d.stream.h2_session()) {
                (Some(tls), _) => Some((tls.version_name(), tls.server_name())),
                (None, Some(s)) => Some((s.version, s.sni.as_deref())),
                (None, None) => None,
            };
            match tls {
                None => out.extend_from_slice(b",\"tls\":null,\"sni\":null,\"client_cert\":null"),
                Some((version, sni)) => {
                    let _ = write!(out, ",\"tls\":\"{version}\",\"sni\":");
                    match sni {
                        Some(name) => json_str(out, name.as_bytes()),
                        None => out.extend_from_slice(b"null"),
                    }
                    out.extend_from_slice(b",\"client_cert\":");
                    match d.stream.identity() {
                        Some(id) => json_str(out, id.subject.as_bytes()),
                        None => out.extend_from_slice(b"null"),
                    }
                }
            }
            out.push(b'}');
        });
    }
}
