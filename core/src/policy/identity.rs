//! Who a request is: a route's `auth` methods find its consumer, and its `acl` decides whether
//! that consumer may use the route. An epoch compiles the consumers once ([`Identity`]) and
//! each route's rules ([`RouteAuth`]); a request is looked up without a lock or an
//! allocation.
//!
//! API keys are kept as SHA-256 digests only. A presented key is hashed and its digest found
//! by its first eight bytes; the whole digest is then compared in constant time, so the
//! time a lookup takes says nothing about any stored key.

use std::sync::Arc;

use ahash::AHashMap;
use base64::Engine;
use ringway_config::{AuthMethod, Config, KeyDigest, Principal};

use super::basic::{self, BasicCache};
use super::jwt;
use crate::http::h1::{HeaderRef, RequestHead, Span};

/// Longest API key read from a query parameter (percent-decoded on the stack).
const MAX_QUERY_KEY: usize = 512;

/// The consumers of an epoch.
pub struct Identity {
    pub consumers: Vec<ConsumerInfo>,
    /// API key digests by their first eight bytes.
    keys: AHashMap<u64, Vec<(KeyDigest, u32)>>,
    /// Basic-auth users: their consumer and bcrypt hash.
    basic: AHashMap<Box<[u8]>, (u32, Arc<str>)>,
    /// The JWT providers, by index, and the consumers by their `jwt_subject`.
    jwt: Vec<jwt::Provider>,
    subjects: AHashMap<Box<str>, u32>,
    /// The epoch this identity belongs to: a shard's remembered tokens are only good for it.
    epoch: u64,
    /// Consumer and group numbers by name, for compiling routes' ACLs.
    consumer_ids: AHashMap<Box<str>, u32>,
    group_ids: AHashMap<Box<str>, u32>,
}

pub struct ConsumerInfo {
    pub name: Box<str>,
    /// The `x-consumer-groups` value: the groups joined by ", " (empty without groups).
    pub groups_header: Box<str>,
    groups: Box<[u32]>,
}

/// One route's `auth` and `acl`, compiled.
pub struct RouteAuth {
    methods: Box<[AuthMethod]>,
    /// Lower-case.
    pub key_header: Box<str>,
    key_query: Option<Box<str>>,
    acl: Option<Acl>,
    /// The `www-authenticate` fields of its 401, one per method.
    challenge: Box<[u8]>,
}

impl RouteAuth {
    /// The `www-authenticate` header lines (each ending in CRLF) of the route's 401.
    pub fn challenge(&self) -> &[u8] {
        &self.challenge
    }

    /// Whether the route takes basic credentials (so an `authorization: Basic` field is the
    /// gateway's, never forwarded).
    pub fn takes_basic(&self) -> bool {
        self.methods.contains(&AuthMethod::Basic)
    }
}

struct Acl {
    allow_consumers: Box<[u32]>,
    allow_groups: Box<[u32]>,
    deny_consumers: Box<[u32]>,
    deny_groups: Box<[u32]>,
    /// An allow list was given: only what it matches passes.
    allow_listed: bool,
}

/// Why a request has no consumer: the `auth` field of the access log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credentials of any method the route takes.
    Missing,
    /// An API key that is no consumer's.
    UnknownApiKey,
    /// Basic credentials that do not decode to `user:password`.
    MalformedBasic,
    /// Basic credentials of a user no consumer has.
    UnknownUser,
    /// Basic credentials whose password does not match.
    BadPassword,
    /// A bearer token that is not a JWT.
    MalformedToken,
    /// A JWT whose algorithm, key or signature is refused.
    InvalidToken,
    /// A JWT past its `exp` (or before its `nbf`), or without `exp`.
    ExpiredToken,
    /// A JWT of another issuer or audience.
    TokenClaims,
    /// A valid JWT whose `sub` is no consumer's `jwt_subject`.
    UnknownSubject,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no_credentials",
            AuthFailure::UnknownApiKey => "unknown_api_key",
            AuthFailure::MalformedBasic => "malformed_basic",
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::BadPassword => "bad_password",
            AuthFailure::MalformedToken => "malformed_token",
            AuthFailure::InvalidToken => "invalid_token",
            AuthFailure::ExpiredToken => "expired_token",
            AuthFailure::TokenClaims => "token_claims",
            AuthFailure::UnknownSubject => "unknown_subject",
        }
    }
}

/// Where the credentials a request was let in with are, to be taken out before forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// In the route's key header (every field of that name is dropped).
    Header,
    /// The query parameter at this span of the buffer, `&` or `?` before it included.
    Query(Span),
    /// In the `authorization` field (basic credentials: that field is dropped).
    Basic,
    /// A bearer token in the `authorization` field: forwarded, for the upstream to read.
    Bearer,
}

/// What authenticating a request came to: an answer, or a password to verify first.
pub enum Attempt {
    Done(Result<(u32, Credential), AuthFailure>),
    /// Basic credentials not in the shard's cache: `password` must be checked against `hash`
    /// (off the shard), and the answer remembered under `key`.
    Verify {
        consumer: u32,
        hash: Arc<str>,
        password: Vec<u8>,
        key: KeyDigest,
    },
}

fn prefix(d: &KeyDigest) -> u64 {
    u64::from_le_bytes(d.0[..8].try_into().expect("eight bytes"))
}

impl Identity {
    pub fn compile(config: &Config, epoch: u64) -> Identity {
        let mut group_ids: AHashMap<Box<str>, u32> = AHashMap::new();
        let mut keys: AHashMap<u64, Vec<(KeyDigest, u32)>> = AHashMap::new();
        let consumers = (config.consumers.iter().enumerate())
            .map(|(i, c)| {
                for key in &c.api_keys {
                    keys.entry(prefix(key)).or_default().push((*key, i as u32));
                }
                let groups = c
                    .groups
                    .iter()
                    .map(|g| {
                        let next = group_ids.len() as u32;
                        *group_ids.entry(g.as_str().into()).or_insert(next)
                    })
                    .collect();
                ConsumerInfo {
                    name: c.name.as_str().into(),
                    groups_header: c.groups.join(", ").into(),
                    groups,
                }
            })
            .collect();
        let basic = (config.consumers.iter().enumerate())
            .filter_map(|(i, c)| {
                let b = c.basic.as_ref()?;
                Some((
                    b.user.as_bytes().into(),
                    (i as u32, b.password_hash.as_str().into()),
                ))
            })
            .collect();
        let consumer_ids = (config.consumers.iter().enumerate())
            .map(|(i, c)| (c.name.as_str().into(), i as u32))
            .collect();
        let jwt = config
            .jwt_providers
            .iter()
            .map(jwt::Provider::compile)
            .collect();
        let subjects = (config.consumers.iter().enumerate())
            .filter_map(|(i, c)| Some((c.jwt_subject.as_deref()?.into(), i as u32)))
            .collect();
        Identity {
            consumers,
            keys,
            basic,
            jwt,
            subjects,
            epoch,
            consumer_ids,
            group_ids,
        }
    }

    /// The route's rules, `None` for a route open to anyone.
    pub fn route(&self, route: &ringway_config::Route) -> Option<RouteAuth> {
        let auth = route.auth.as_ref()?;
        let consumer_id = |name: &str| self.consumer_ids.get(name).copied();
        let group_id = |name: &str| self.group_ids.get(name).copied();
        let ids = |list: &[Principal], consumers: bool| -> Box<[u32]> {
            list.iter()
                .filter_map(|p| match (p, consumers) {
                    (Principal::Consumer(name), true) => consumer_id(name),
                    (Principal::Group(name), false) => group_id(name),
                    _ => None,
                })
                .collect()
        };
        let acl = route.acl.as_ref().map(|acl| Acl {
            allow_consumers: ids(&acl.allow, true),
            allow_groups: ids(&acl.allow, false),
            deny_consumers: ids(&acl.deny, true),
            deny_groups: ids(&acl.deny, false),
            allow_listed: !acl.allow.is_empty(),
        });
        let mut challenge: Vec<u8> = Vec::new();
        for method in &auth.methods {
            let line: &[u8] = match method {
                AuthMethod::ApiKey => b"www-authenticate: ApiKey realm=\"ringway\"\r\n",
                AuthMethod::Basic => {
                    b"www-authenticate: Basic realm=\"ringway\", charset=\"UTF-8\"\r\n"
                }
                AuthMethod::Jwt(_) => b"www-authenticate: Bearer realm=\"ringway\"\r\n",
            };
            // Several providers share one Bearer challenge.
            if !challenge.windows(line.len()).any(|w| w == line) {
                challenge.extend_from_slice(line);
            }
        }
        Some(RouteAuth {
            challenge: challenge.into(),
            methods: auth.methods.iter().copied().collect(),
            key_header: auth.api_key.header.as_str().into(),
            key_query: auth.api_key.query.as_deref().map(Into::into),
            acl,
        })
    }

    /// The consumer the request's credentials name, by the route's methods in order, and
    /// where those credentials are.
    pub fn authenticate(
        &self,
        auth: &RouteAuth,
        src: &[u8],
        head: &RequestHead,
        headers: &[HeaderRef],
        cache: &mut AuthCache,
    ) -> Attempt {
        let mut failure = AuthFailure::Missing;
        for method in &auth.methods {
            match method {
                AuthMethod::ApiKey => match self.api_key(auth, src, head, headers, cache) {
                    Some(Ok(found)) => return Attempt::Done(Ok(found)),
                    Some(Err(e)) => failure = e,
                    None => {}
                },
                AuthMethod::Basic => match self.basic(src, headers, &cache.basic) {
                    Some(Ok(attempt)) => return attempt,
                    Some(Err(e)) => failure = e,
                    None => {}
                },
                AuthMethod::Jwt(provider) => match self.bearer(*provider, src, headers, cache) {
                    Some(Ok(consumer)) => return Attempt::Done(Ok((consumer, Credential::Bearer))),
                    Some(Err(e)) => failure = e,
                    None => {}
                },
            }
        }
        Attempt::Done(Err(failure))
    }

    /// `None`: no bearer token in the request. A token verified before, for this provider
    /// and epoch, is taken from the shard's cache until its `exp` (at most [`jwt::CACHE_FOR`]).
    fn bearer(
        &self,
        provider: usize,
        src: &[u8],
        headers: &[HeaderRef],
        cache: &mut AuthCache,
    ) -> Option<Result<u32, AuthFailure>> {
        let token = authorization(src, headers, b"bearer")?;
        let now = jwt::unix_now();
        if let Some(hit) = cache.jwt.get(token, provider as u32, self.epoch, now) {
            return Some(Ok(hit));
        }
        let claims = match self.jwt.get(provider)?.verify(token, now) {
            Ok(claims) => claims,
            Err(e) => {
                return Some(Err(match e {
                    jwt::JwtError::Malformed => AuthFailure::MalformedToken,
                    jwt::JwtError::Invalid => AuthFailure::InvalidToken,
                    jwt::JwtError::Expired => AuthFailure::ExpiredToken,
                    jwt::JwtError::Claims => AuthFailure::TokenClaims,
                }))
            }
        };
        let Some(&consumer) = claims.sub.as_deref().and_then(|s| self.subjects.get(s)) else {
            return Some(Err(AuthFailure::UnknownSubject));
        };
        let until = claims.exp.min(now + jwt::CACHE_FOR.as_secs());
        cache
            .jwt
            .put(token, provider as u32, self.epoch, consumer, until);
        Some(Ok(consumer))
    }

    /// `None`: no basic credentials in the request.
    fn basic(
        &self,
        src: &[u8],
        headers: &[HeaderRef],
        cache: &BasicCache,
    ) -> Option<Result<Attempt, AuthFailure>> {
        let encoded = authorization(src, headers, b"basic")?;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return Some(Err(AuthFailure::MalformedBasic));
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return Some(Err(AuthFailure::MalformedBasic));
        };
        let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
        let Some((consumer, hash)) = self.basic.get(user) else {
            return Some(Err(AuthFailure::UnknownUser));
        };
        let key = basic::cache_key(hash, password);
        Some(match cache.get(&key, std::time::Instant::now()) {
            Some(true) => Ok(Attempt::Done(Ok((*consumer, Credential::Basic)))),
            Some(false) => Err(AuthFailure::BadPassword),
            None => Ok(Attempt::Verify {
                consumer: *consumer,
                hash: hash.clone(),
                password: password.to_vec(),
                key,
            }),
        })
    }

    /// `None`: the request carries no key where the route looks.
    fn api_key(
        &self,
        auth: &RouteAuth,
        src: &[u8],
        head: &RequestHead,
        headers: &[HeaderRef],
        cache: &mut AuthCache,
    ) -> Option<Result<(u32, Credential), AuthFailure>> {
        let from_header = headers
            .iter()
            .find(|h| {
                h.name
                    .get(src)
                    .eq_ignore_ascii_case(auth.key_header.as_bytes())
            })
            .map(|h| h.value.get(src));
        if let Some(key) = from_header {
            return Some(
                self.cached_key_owner(key, cache)
                    .map(|c| (c, Credential::Header)),
            );
        }
        let name = auth.key_query.as_deref()?;
        let (span, raw) = query_param(src, head, name.as_bytes())?;
        let mut decoded = [0u8; MAX_QUERY_KEY];
        let Some(key) = percent_decode(raw, &mut decoded) else {
            return Some(Err(AuthFailure::UnknownApiKey));
        };
        let owner = self.cached_key_owner(key, cache);
        Some(owner.map(|c| (c, Credential::Query(span))))
    }

    /// [`Identity::key_owner`], by way of the shard's cache of keys it found lately: a hot key
    /// costs a hash-map lookup and a constant-time comparison, not a SHA-256.
    fn cached_key_owner(&self, key: &[u8], cache: &mut AuthCache) -> Result<u32, AuthFailure> {
        if let Some(consumer) = cache.keys.get(key, self.epoch) {
            return Ok(consumer);
        }
        let consumer = self.key_owner(key)?;
        cache.keys.put(key, self.epoch, consumer);
        Ok(consumer)
    }

    /// The route's API key query parameter in the request, if any: its span (with the `?` or
    /// `&` before it) and raw value, which neither the upstream nor the access log may see,
    /// whichever credentials let the request in and whether that key was good or not.
    pub fn query_credential<'s>(
        &self,
        auth: &RouteAuth,
        src: &'s [u8],
        head: &RequestHead,
    ) -> Option<(Span, &'s [u8])> {
        let name = auth.key_query.as_deref()?;
        query_param(src, head, name.as_bytes())
    }

    fn key_owner(&self, key: &[u8]) -> Result<u32, AuthFailure> {
        let digest = KeyDigest::of(key);
        let candidates = self.keys.get(&prefix(&digest));
        // Every candidate is compared whole, whichever matches.
        let mut owner = None;
        for (stored, consumer) in candidates.into_iter().flatten() {
            if aws_lc_rs::constant_time::verify_slices_are_equal(&stored.0, &digest.0).is_ok() {
                owner = Some(*consumer);
            }
        }
        owner.ok_or(AuthFailure::UnknownApiKey)
    }

    /// Whether the route's `acl` lets `consumer` through.
    pub fn allows(&self, auth: &RouteAuth, consumer: u32) -> bool {
        let Some(acl) = &auth.acl else {
            return true;
        };
        let groups = &self.consumers[consumer as usize].groups;
        let in_groups = |list: &[u32]| list.iter().any(|g| groups.contains(g));
        if acl.deny_consumers.contains(&consumer) || in_groups(&acl.deny_groups) {
            return false;
        }
        !acl.allow_listed || acl.allow_consumers.contains(&consumer) || in_groups(&acl.allow_groups)
    }
}

/// The credentials of the request's first `Authorization` field when it is of `scheme`
/// (lower-case; matched in any case).
fn authorization<'v>(src: &'v [u8], headers: &[HeaderRef], scheme: &[u8]) -> Option<&'v [u8]> {
    let value = headers
        .iter()
        .find(|h| h.name.get(src).eq_ignore_ascii_case(b"authorization"))
        .map(|h| h.value.get(src))?;
    let (given, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_ascii())
}

/// What a shard remembers of credentials it checked: API keys it found, basic-auth
/// passwords and verified JWTs.
#[derive(Default)]
pub struct AuthCache {
    keys: KeyCache,
    pub basic: BasicCache,
    pub jwt: JwtCache,
}

/// API keys a shard found a consumer for, by a hash of the key (with the shard's own random
/// seed); the key itself is kept to be compared whole, in constant time, on a hit.
#[derive(Default)]
struct KeyCache {
    seeds: ahash::RandomState,
    entries: AHashMap<u64, (Box<[u8]>, u64, u32)>,
}

/// Keys each shard remembers.
const KEY_CACHE: usize = 4096;

impl KeyCache {
    fn get(&self, key: &[u8], epoch: u64) -> Option<u32> {
        let (stored, stored_epoch, consumer) = self.entries.get(&self.seeds.hash_one(key))?;
        let same = stored.len() == key.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(stored, key).is_ok();
        (same && *stored_epoch == epoch).then_some(*consumer)
    }

    fn put(&mut self, key: &[u8], epoch: u64, consumer: u32) {
        if self.entries.len() >= KEY_CACHE {
            self.entries.clear();
        }
        let hash = self.seeds.hash_one(key);
        self.entries.insert(hash, (key.into(), epoch, consumer));
    }
}

/// Verified tokens, by their whole text, with the provider and epoch that verified them.
#[derive(Default)]
pub struct JwtCache {
    entries: AHashMap<Box<[u8]>, JwtEntry>,
}

struct JwtEntry {
    provider: u32,
    epoch: u64,
    consumer: u32,
    /// Seconds since the Unix epoch.
    until: u64,
}

/// Tokens each shard remembers, and the longest it remembers (a longer one is verified each
/// time): at most 16 MiB per shard.
const JWT_CACHE: usize = 4096;
const JWT_CACHE_TOKEN: usize = 4096;

impl JwtCache {
    fn get(&self, token: &[u8], provider: u32, epoch: u64, now: u64) -> Option<u32> {
        let e = self.entries.get(token)?;
        (e.provider == provider && e.epoch == epoch && now <= e.until).then_some(e.consumer)
    }

    fn put(&mut self, token: &[u8], provider: u32, epoch: u64, consumer: u32, until: u64) {
        if token.len() > JWT_CACHE_TOKEN {
            return;
        }
        if self.entries.len() >= JWT_CACHE {
            let now = jwt::unix_now();
            self.entries.retain(|_, e| e.until >= now);
            if self.entries.len() >= JWT_CACHE {
                self.entries.clear();
            }
        }
        let entry = JwtEntry {
            provider,
            epoch,
            consumer,
            until,
        };
        self.entries.insert(token.into(), entry);
    }
}

/// The first `name=value` parameter of the request's query: the span of the parameter with
/// its leading `?` or `&`, and the raw value.
fn query_param<'a>(src: &'a [u8], head: &RequestHead, name: &[u8]) -> Option<(Span, &'a [u8])> {
    let path = head.path.get(src);
    let q = head.path_len_without_query.min(path.len());
    let mut at = q;
    while at < path.len() {
        // `at` is on the `?` or `&` before a parameter.
        let start = at + 1;
        let end = path[start..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(path.len(), |p| start + p);
        let param = &path[start..end];
        if let Some(value) = param
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(b"="))
        {
            let base = head.path.start as usize;
            return Some((Span::new(base + at, base + end), value));
        }
        at = end;
    }
    None
}

/// `raw` with its percent-encodings (and `+` as a space) decoded into `out`; `None` when it
/// does not fit or is malformed.
fn percent_decode<'o>(raw: &[u8], out: &'o mut [u8; MAX_QUERY_KEY]) -> Option<&'o [u8]> {
    let mut n = 0;
    let mut i = 0;
    while i < raw.len() {
        let b = match raw[i] {
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
                i += 2;
                (hi * 16 + lo) as u8
            }
            b'+' => b' ',
            b => b,
        };
        *out.get_mut(n)? = b;
        n += 1;
        i += 1;
    }
    Some(&out[..n])
}

#[cfg(test)]
#[path = "identity_tests.rs"]
mod tests;
