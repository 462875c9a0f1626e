//! The TOML schema exactly as users write it.
//!
//! Deserialising these types fails only where the schema needs a table and something else
//! was written (`respond = "hello"`). Everything else is left to `validate`, so that it is
//! reported together with every other problem:
//!
//! - unknown keys are not rejected here; `read` collects them while deserialising;
//! - a missing required key is an absent `Option`;
//! - a leaf value of the wrong TOML type is a [`Typed`] holding the type error, and an array
//!   key holding something else is a [`List`] holding the type error.
//!
//! Every value keeps its position so that errors can name line and column: values always
//! have one; a table made by dotted keys (`respond.status = 200`) or implied by a header
//! (`[a.b]` implies `a`) has none, and validation then looks its key up in the document. The
//! checks themselves live in `validate`, which turns these types into the ones in `model`.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Range;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer};
use serde::de::{Unexpected, Visitor};
use serde::Deserialize;
use serde_spanned::__unstable as spanned;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(expecting = "a Ringway configuration")]
pub(crate) struct RawConfig {
    pub runtime: Option<RawRuntime>,
    pub control: Option<RawControl>,
    pub admin: Option<At<RawAdmin>>,
    pub metrics: Option<RawMetrics>,
    pub access_log: Option<At<RawAccessLog>>,
    pub resolver: Option<RawResolver>,
    #[serde(default)]
    pub listeners: List<At<RawListener>>,
    #[serde(default)]
    pub upstreams: List<At<RawUpstream>>,
    #[serde(default)]
    pub routes: List<At<RawRoute>>,
    #[serde(default)]
    pub consumers: List<At<RawConsumer>>,
    #[serde(default)]
    pub jwt_providers: List<At<RawJwtProvider>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a JWT provider such as { name = \"idp\", issuer = \"https://idp.example.com\", jwks_file = \"jwks.json\" }"
)]
pub(crate) struct RawJwtProvider {
    /// Required.
    pub name: Option<Typed<String>>,
    pub issuer: Option<Typed<String>>,
    pub audiences: Option<List<Typed<String>>>,
    pub jwks_file: Option<Typed<String>>,
    pub jwks_url: Option<Typed<String>>,
    pub secret_file: Option<Typed<String>>,
    pub leeway: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a consumer such as { name = \"acme\", api_keys = [\"sha256:...\"] }")]
pub(crate) struct RawConsumer {
    /// Required.
    pub name: Option<Typed<String>>,
    pub groups: Option<List<Typed<String>>>,
    pub api_keys: Option<List<Typed<String>>>,
    pub basic: Option<At<RawBasic>>,
    pub jwt_subject: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "basic credentials such as { user = \"acme\", password_hash = \"$2y$10$...\" }"
)]
pub(crate) struct RawBasic {
    pub user: Option<Typed<String>>,
    pub password_hash: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "where API keys are read, such as { header = \"x-api-key\", query = \"apikey\" }"
)]
pub(crate) struct RawApiKeyFrom {
    pub header: Option<Typed<String>>,
    pub query: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an access list such as { allow = [\"group:partners\", \"consumer:bob\"] }")]
pub(crate) struct RawAcl {
    pub allow: Option<List<Typed<String>>>,
    pub deny: Option<List<Typed<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table of runtime settings")]
pub(crate) struct RawRuntime {
    pub shards: Option<Typed<RawShards>>,
    pub driver: Option<Typed<String>>,
    pub pin: Option<Typed<bool>>,
    pub uring_entries: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table of control settings")]
pub(crate) struct RawControl {
    pub socket: Option<Typed<String>>,
    pub drain_timeout: Option<Typed<String>>,
    pub reload_timeout: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table with the admin listen address")]
pub(crate) struct RawAdmin {
    /// Required.
    pub listen: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table of metrics settings")]
pub(crate) struct RawMetrics {
    pub interval: Option<Typed<String>>,
    pub interval_log: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table of resolver settings such as { servers = [\"127.0.0.53\"] }")]
pub(crate) struct RawResolver {
    pub servers: Option<List<Typed<String>>>,
    pub timeout: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a table with the access log path")]
pub(crate) struct RawAccessLog {
    /// Required.
    pub path: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a listener table")]
pub(crate) struct RawListener {
    /// Required.
    pub name: Option<Typed<String>>,
    /// Required.
    pub listen: Option<Typed<String>>,
    pub max_connections: Option<Typed<i64>>,
    pub header_timeout: Option<Typed<String>>,
    pub idle_timeout: Option<Typed<String>>,
    pub body_timeout: Option<Typed<String>>,
    pub send_timeout: Option<Typed<String>>,
    pub max_request_line: Option<Typed<RawSize>>,
    pub max_header_bytes: Option<Typed<RawSize>>,
    pub max_request_body: Option<Typed<RawSize>>,
    pub tls: Option<At<RawListenerTls>>,
    pub trusted_proxies: Option<List<Typed<String>>>,
    pub proxy_protocol: Option<Typed<bool>>,
    pub encoded_slashes: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a TLS table such as { certificates = [{ cert = \"api.pem\", key = \"api.key\" }] }"
)]
pub(crate) struct RawListenerTls {
    /// Required, at least one.
    pub certificates: Option<List<At<RawCertKey>>>,
    pub client_ca: Option<Typed<String>>,
    pub client_auth: Option<Typed<String>>,
    pub min_version: Option<Typed<String>>,
    pub handshake_timeout: Option<Typed<String>>,
    pub session_tickets: Option<Typed<bool>>,
    pub session_cache: Option<Typed<i64>>,
    pub client_cert_header: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a certificate such as { cert = \"api.pem\", key = \"api.key\" }")]
pub(crate) struct RawCertKey {
    /// Required.
    pub cert: Option<Typed<String>>,
    /// Required.
    pub key: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an upstream table")]
pub(crate) struct RawUpstream {
    /// Required.
    pub name: Option<Typed<String>>,
    /// Required (may be empty).
    pub endpoints: Option<List<At<RawEndpoint>>>,
    pub connect_timeout: Option<Typed<String>>,
    pub request_timeout: Option<Typed<String>>,
    pub idle_timeout: Option<Typed<String>>,
    pub pool_idle_timeout: Option<Typed<String>>,
    pub max_idle_per_endpoint: Option<Typed<i64>>,
    pub balance: Option<Typed<String>>,
    /// Required with `balance = "hash"`, refused otherwise.
    pub hash_key: Option<Typed<String>>,
    pub circuit_breaker: Option<At<RawCircuitBreaker>>,
    pub health_check: Option<At<RawHealthCheck>>,
    pub outlier_detection: Option<At<RawOutlierDetection>>,
    pub tls: Option<At<RawUpstreamTls>>,
    /// A duration, or `"off"`.
    pub resolve_interval: Option<Typed<String>>,
    /// `"h1"` (default) or `"h2"`.
    pub protocol: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a TLS table such as { ca = \"internal-ca.pem\", sni = \"orders.internal\" }")]
pub(crate) struct RawUpstreamTls {
    pub ca: Option<Typed<String>>,
    pub sni: Option<Typed<String>>,
    /// With `key`, or neither.
    pub cert: Option<Typed<String>>,
    pub key: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a circuit breaker such as { consecutive_failures = 5, open_for = \"5s\" }")]
pub(crate) struct RawCircuitBreaker {
    pub consecutive_failures: Option<Typed<i64>>,
    pub error_percent: Option<Typed<i64>>,
    pub window: Option<Typed<String>>,
    pub min_requests: Option<Typed<i64>>,
    pub open_for: Option<Typed<String>>,
    pub max_open_for: Option<Typed<String>>,
    pub half_open_probes: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an active health check such as { path = \"/healthz\", interval = \"5s\" }")]
pub(crate) struct RawHealthCheck {
    pub kind: Option<Typed<String>>,
    pub service: Option<Typed<String>>,
    pub path: Option<Typed<String>>,
    pub host: Option<Typed<String>>,
    pub interval: Option<Typed<String>>,
    pub timeout: Option<Typed<String>>,
    pub expected_statuses: Option<List<Typed<RawStatus>>>,
    pub healthy_threshold: Option<Typed<i64>>,
    pub unhealthy_threshold: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "outlier detection such as { consecutive_5xx = 5, base_ejection_time = \"30s\" }"
)]
pub(crate) struct RawOutlierDetection {
    pub consecutive_5xx: Option<Typed<i64>>,
    pub consecutive_gateway_failure: Option<Typed<i64>>,
    pub base_ejection_time: Option<Typed<String>>,
    pub max_ejection_time: Option<Typed<String>>,
    pub max_ejection_percent: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "an endpoint table such as { address = \"10.0.0.5:9000\" }")]
pub(crate) struct RawEndpoint {
    /// Required.
    pub address: Option<Typed<String>>,
    pub weight: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a route table")]
pub(crate) struct RawRoute {
    /// Required.
    pub name: Option<Typed<String>>,
    pub listeners: Option<List<Typed<String>>>,
    pub host: Option<Typed<String>>,
    pub path_exact: Option<Typed<String>>,
    pub path_prefix: Option<Typed<String>>,
    pub path_regex: Option<Typed<String>>,
    pub methods: Option<List<Typed<String>>>,
    #[serde(default)]
    pub headers: List<At<RawHeaderMatch>>,
    pub upstream: Option<Typed<String>>,
    pub respond: Option<At<RawRespond>>,
    pub redirect: Option<At<RawRedirect>>,
    pub rate_limit: Option<At<RawRateLimit>>,
    pub max_in_flight: Option<Typed<i64>>,
    /// Deadline for the response head, all tries together.
    pub timeout: Option<Typed<String>>,
    pub retry: Option<At<RawRetry>>,
    pub websocket: Option<Typed<bool>>,
    pub websocket_idle_timeout: Option<Typed<String>>,
    pub auth: Option<List<Typed<String>>>,
    pub api_key: Option<At<RawApiKeyFrom>>,
    pub acl: Option<At<RawAcl>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    expecting = "a retry policy such as { retries = 2, on = [\"connect_failure\", \"reset\"] }"
)]
pub(crate) struct RawRetry {
    pub retries: Option<Typed<i64>>,
    pub on: Option<List<Typed<String>>>,
    pub statuses: Option<List<Typed<i64>>>,
    pub non_idempotent: Option<Typed<bool>>,
    pub per_try_timeout: Option<Typed<String>>,
    pub backoff: Option<Typed<String>>,
    pub max_buffered_body: Option<Typed<RawSize>>,
    pub budget_percent: Option<Typed<i64>>,
    pub min_retries: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a rate limit such as { rate = 500, per = \"1s\", key = \"client_ip\" }")]
pub(crate) struct RawRateLimit {
    /// Required.
    pub rate: Option<Typed<i64>>,
    pub per: Option<Typed<String>>,
    pub burst: Option<Typed<i64>>,
    pub key: Option<Typed<String>>,
    pub max_keys: Option<Typed<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a header match such as { name = \"x-env\", value = \"canary\" }")]
pub(crate) struct RawHeaderMatch {
    /// Required.
    pub name: Option<Typed<String>>,
    pub value: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a direct response such as { status = 200, body = \"hello\" }")]
pub(crate) struct RawRespond {
    /// Required.
    pub status: Option<Typed<i64>>,
    #[serde(default)]
    pub headers: RawHeaderMap,
    pub body: Option<Typed<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(expecting = "a redirect such as { location = \"https://example.com/\" }")]
pub(crate) struct RawRedirect {
    /// Required.
    pub location: Option<Typed<String>>,
    pub status: Option<Typed<i64>>,
    pub keep_path: Option<Typed<bool>>,
}

/// A value (usually a table) and where it is, like `toml::Spanned`, except that a table with
/// no position of its own is still read, with none.
#[derive(Debug)]
pub(crate) struct At<T> {
    span: Option<Range<usize>>,
    value: T,
}

impl<T> At<T> {
    /// Where it is in the source; `None` for a table made by dotted keys or implied.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    pub fn get_ref(&self) -> &T {
        &self.value
    }

    pub fn get_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for At<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The request `toml::Spanned` makes: the deserializer answers it with a map of the
        // span and the value when it knows the span, and with the plain value otherwise.
        const FIELDS: &[&str] = &[
            spanned::START_FIELD,
            spanned::END_FIELD,
            spanned::VALUE_FIELD,
        ];
        deserializer.deserialize_struct(spanned::NAME, FIELDS, AtVisitor(PhantomData))
    }
}

struct AtVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for AtVisitor<T> {
    type Value = At<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<At<T>, A::Error> {
        let first: Option<String> = map.next_key()?;
        if first.as_deref() != Some(spanned::START_FIELD) {
            // A table without a position: its first key is already read.
            let rest = Prepended { first, map };
            let value = T::deserialize(MapAccessDeserializer::new(rest))?;
            return Ok(At { span: None, value });
        }
        let start: usize = map.next_value()?;
        expect_key(&mut map, spanned::END_FIELD)?;
        let end: usize = map.next_value()?;
        expect_key(&mut map, spanned::VALUE_FIELD)?;
        let value: T = map.next_value()?;
        Ok(At {
            span: Some(start..end),
            value,
        })
    }

    // A deserializer that does not know spans gives the value itself.
    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<At<T>, A::Error> {
        T::deserialize(SeqAccessDeserializer::new(seq)).map(At::unplaced)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<At<T>, E> {
        T::deserialize(v.into_deserializer()).map(At::unplaced)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<At<T>, E> {
        T::deserialize(v.into_deserializer()).map(At::unplaced)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<At<T>, E> {
        T::deserialize(v.into_deserializer()).map(At::unplaced)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<At<T>, E> {
        T::deserialize(v.into_deserializer()).map(At::unplaced)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<At<T>, E> {
        T::deserialize(v.into_deserializer()).map(At::unplaced)
    }
}

impl<T> At<T> {
    fn unplaced(value: T) -> Self {
        At { span: None, value }
    }
}

fn expect_key<'de, A: de::MapAccess<'de>>(map: &mut A, name: &str) -> Result<(), A::Error> {
    match map.next_key::<String>()? {
        Some(key) if key == name => Ok(()),
        _ => Err(de::Error::custom("malformed spanned value")),
    }
}

/// A map whose first key was already taken: gives it back first.
struct Prepended<A> {
    first: Option<String>,
    map: A,
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Prepended<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        match self.first.take() {
            Some(key) => seed.deserialize(key.into_deserializer()).map(Some),
            None => self.map.next_key_seed(seed),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A leaf value as written: of type `T`, or the error saying what it is instead (such as
/// ``invalid type: integer `8080`, expected a string``). Any TOML value deserialises into it,
/// so a wrong type never stops reading.
#[derive(Debug)]
pub(crate) enum Typed<T> {
    /// Values always have a position.
    Ok(Spanned<T>),
    /// No position when a table made by dotted keys stands where a value was expected.
    Wrong {
        span: Option<Range<usize>>,
        message: String,
    },
}

impl<T> Typed<T> {
    /// Where the value is in the source.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            Typed::Ok(value) => Some(value.span()),
            Typed::Wrong { span, .. } => span.clone(),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Typed<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Whatever the value is, it is read whole first; only then is it made a `T`, and a
        // failure there is kept rather than returned.
        let At { span, value } = At::<toml::Value>::deserialize(deserializer)?;
        Ok(match (T::deserialize(value), span) {
            (Ok(typed), Some(span)) => Typed::Ok(Spanned::new(span, typed)),
            // Only a table lacks a position, and no leaf type is read from a table.
            (Ok(_), None) => Typed::Wrong {
                span: None,
                message: "invalid type: table, expected a value".to_owned(),
            },
            (Err(error), span) => Typed::Wrong {
                span,
                message: error.message().to_owned(),
            },
        })
    }
}

/// An array key as written, at its position: its elements, or the error saying what it is
/// instead (such as `invalid type: string "GET", expected a sequence`). An element of the
/// wrong shape still stops reading, unless `E` is itself tolerant, as [`Typed`] is.
#[derive(Debug)]
pub(crate) struct List<E> {
    span: Option<Range<usize>>,
    items: Result<Vec<E>, String>,
}

/// An absent key: no elements.
impl<E> Default for List<E> {
    fn default() -> Self {
        List {
            span: None,
            items: Ok(Vec::new()),
        }
    }
}

impl<E> List<E> {
    /// Where the array is in the source; `None` when absent, or when a table made by dotted
    /// keys stands in its place.
    pub fn span(&self) -> Option<Range<usize>> {
        self.span.clone()
    }

    /// The elements, or what was written instead of an array.
    pub fn items(&self) -> Result<&[E], &str> {
        match &self.items {
            Ok(items) => Ok(items),
            Err(error) => Err(error),
        }
    }

    /// The elements; none when it was not an array.
    pub fn items_mut(&mut self) -> &mut [E] {
        match &mut self.items {
            Ok(items) => items,
            Err(_) => &mut [],
        }
    }
}

impl<'de, E: Deserialize<'de>> Deserialize<'de> for List<E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Inner<E>(Result<Vec<E>, String>);
        impl<'de, E: Deserialize<'de>> Deserialize<'de> for Inner<E> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_any(ListVisitor(PhantomData))
                    .map(Inner)
            }
        }
        let At { span, value } = At::<Inner<E>>::deserialize(deserializer)?;
        Ok(List {
            span,
            items: value.0,
        })
    }
}

struct ListVisitor<E>(PhantomData<E>);

type ListResult<E> = Result<Vec<E>, String>;

impl<E> ListVisitor<E> {
    fn wrong<Err>(&self, unexpected: Unexpected<'_>) -> Result<ListResult<E>, Err> {
        Ok(Err(format!(
            "invalid type: {unexpected}, expected a sequence"
        )))
    }
}

impl<'de, E: Deserialize<'de>> Visitor<'de> for ListVisitor<E> {
    type Value = ListResult<E>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ListResult<E>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Ok(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<ListResult<E>, A::Error> {
        // Read as values, not ignored, so that its keys are not reported as unknown too.
        while map.next_entry::<String, toml::Value>()?.is_some() {}
        self.wrong(Unexpected::Map)
    }

    fn visit_str<Err: de::Error>(self, v: &str) -> Result<ListResult<E>, Err> {
        self.wrong(Unexpected::Str(v))
    }

    fn visit_i64<Err: de::Error>(self, v: i64) -> Result<ListResult<E>, Err> {
        self.wrong(Unexpected::Signed(v))
    }

    fn visit_u64<Err: de::Error>(self, v: u64) -> Result<ListResult<E>, Err> {
        self.wrong(Unexpected::Unsigned(v))
    }

    fn visit_f64<Err: de::Error>(self, v: f64) -> Result<ListResult<E>, Err> {
        self.wrong(Unexpected::Float(v))
    }

    fn visit_bool<Err: de::Error>(self, v: bool) -> Result<ListResult<E>, Err> {
        self.wrong(Unexpected::Bool(v))
    }
}

/// `headers = { name = "value", ... }` in file order (a map type would sort it).
///
/// The names are read as plain strings: the key tracking that finds unknown keys cannot
/// follow a `Spanned` key. Each name's span starts as its value's; `read` then moves it to
/// the name itself, found in the parsed document.
#[derive(Debug, Default)]
pub(crate) struct RawHeaderMap(pub Vec<(Spanned<String>, Typed<String>)>);

impl<'de> Deserialize<'de> for RawHeaderMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = RawHeaderMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names to string values")
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeaderMap, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, Typed<String>>()? {
                    let span = value.span().unwrap_or_default();
                    entries.push((Spanned::new(span, name), value));
                }
                Ok(RawHeaderMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// A TOML value that may be an integer or a string; checked later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IntOrText {
    Int(i64),
    Text(String),
}

/// `shards = "auto"` or a number.
#[derive(Debug)]
pub(crate) struct RawShards(pub IntOrText);

/// A byte count: an integer, or a string with a unit such as `"100MiB"`.
#[derive(Debug)]
pub(crate) struct RawSize(pub IntOrText);

/// A response status (`200`) or a class of them (`"2xx"`).
#[derive(Debug)]
pub(crate) struct RawStatus(pub IntOrText);

struct IntOrTextVisitor(&'static str);

impl Visitor<'_> for IntOrTextVisitor {
    type Value = IntOrText;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrText, E> {
        Ok(IntOrText::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrText, E> {
        i64::try_from(v)
            .map(IntOrText::Int)
            .map_err(|_| E::custom(format!("{v} is too large")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrText, E> {
        Ok(IntOrText::Text(v.to_owned()))
    }
}

impl<'de> Deserialize<'de> for RawShards {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntOrTextVisitor("\"auto\" or a number of shards"))
            .map(RawShards)
    }
}

impl<'de> Deserialize<'de> for RawStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntOrTextVisitor(
                "a status such as 200 or a class such as \"2xx\"",
            ))
            .map(RawStatus)
    }
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntOrTextVisitor(
                "a size: a number of bytes or a string such as \"64KiB\"",
            ))
            .map(RawSize)
    }
}
