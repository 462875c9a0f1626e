//! The TOML schema exactly as users write it.
//!
//! Every table rejects unknown keys. Values that a later check may reject keep their
//! position (`Spanned`) so that the error can name line and column; the checks themselves
//! live in `validate`, which turns these types into the ones in `model`.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// Deserialises a whole document. A syntax or type error stops here, with the key path of
/// the value that failed.
pub(crate) fn from_toml(
    src: &str,
) -> Result<RawConfig, serde_path_to_error::Error<toml::de::Error>> {
    serde_path_to_error::deserialize(toml::Deserializer::new(src))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a Ringway configuration")]
pub(crate) struct RawConfig {
    pub runtime: Option<RawRuntime>,
    pub control: Option<RawControl>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub listeners: Vec<Spanned<RawListener>>,
    #[serde(default)]
    pub upstreams: Vec<Spanned<RawUpstream>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table of runtime settings")]
pub(crate) struct RawRuntime {
    pub shards: Option<Spanned<RawShards>>,
    pub driver: Option<Spanned<String>>,
    pub pin: Option<bool>,
    pub uring_entries: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with the control socket path"
)]
pub(crate) struct RawControl {
    pub socket: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a table with the admin listen address"
)]
pub(crate) struct RawAdmin {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a listener table")]
pub(crate) struct RawListener {
    pub name: Spanned<String>,
    pub listen: Spanned<String>,
    pub max_connections: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub max_request_line: Option<Spanned<RawSize>>,
    pub max_header_bytes: Option<Spanned<RawSize>>,
    pub max_request_body: Option<Spanned<RawSize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "an upstream table")]
pub(crate) struct RawUpstream {
    pub name: Spanned<String>,
    pub endpoints: Vec<RawEndpoint>,
    pub connect_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
    pub pool_idle_timeout: Option<Spanned<String>>,
    pub max_idle_per_endpoint: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "an endpoint table such as { address = \"10.0.0.5:9000\" }"
)]
pub(crate) struct RawEndpoint {
    pub address: Spanned<String>,
    pub weight: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a route table")]
pub(crate) struct RawRoute {
    pub name: Spanned<String>,
    pub listeners: Option<Spanned<Vec<Spanned<String>>>>,
    pub host: Option<Spanned<String>>,
    pub path_exact: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub path_regex: Option<Spanned<String>>,
    pub methods: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    pub upstream: Option<Spanned<String>>,
    pub respond: Option<Spanned<RawRespond>>,
    pub redirect: Option<Spanned<RawRedirect>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a header match such as { name = \"x-env\", value = \"canary\" }"
)]
pub(crate) struct RawHeaderMatch {
    pub name: Spanned<String>,
    pub value: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a direct response such as { status = 200, body = \"hello\" }"
)]
pub(crate) struct RawRespond {
    pub status: Spanned<i64>,
    #[serde(default)]
    pub headers: RawHeaderMap,
    pub body: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a redirect such as { location = \"https://example.com/\" }"
)]
pub(crate) struct RawRedirect {
    pub location: Spanned<String>,
    pub status: Option<Spanned<i64>>,
    pub keep_path: Option<bool>,
}

/// `headers = { name = "value", ... }` in file order (a map type would sort it).
#[derive(Debug, Default)]
pub(crate) struct RawHeaderMap(pub Vec<(Spanned<String>, Spanned<String>)>);

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
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
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

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(IntOrTextVisitor(
                "a size: a number of bytes or a string such as \"64KiB\"",
            ))
            .map(RawSize)
    }
}
