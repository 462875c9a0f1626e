//! From TOML text to the raw schema: parse once, deserialise, and collect every unknown key.
//!
//! A syntax error stops here, alone. So does a value of the wrong shape where the schema
//! needs a table (`respond = "hello"`), with the unknown keys met before it. Everything else
//! goes on to validation: unknown keys come back as errors alongside the raw config.

use std::ops::Range;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use toml::Spanned;
use toml_edit::{ImDocument, Item, Table, TableLike, Value};

use crate::error::{ConfigError, ConfigErrors, Lines};
use crate::raw::{
    RawAccessLog, RawAdmin, RawConfig, RawControl, RawEndpoint, RawHeaderMatch, RawListener,
    RawMetrics, RawRateLimit, RawRedirect, RawRespond, RawRoute, RawRuntime, RawUpstream,
};

use crate::raw::{RawCertKey, RawCircuitBreaker, RawHealthCheck, RawOutlierDetection};
use crate::raw::{RawListenerTls, RawResolver, RawUpstreamTls};

/// A document read as far as validation.
pub(crate) struct Read<'s> {
    pub raw: RawConfig,
    /// The parsed document, for the positions of tables that have none of their own: parsed
    /// again only when such a position is needed (an error, header names), since the first
    /// parse went into deserialisation whole rather than being copied.
    pub doc: Doc<'s>,
    /// Where the source's lines start, for every error's position.
    pub lines: Lines<'s>,
    /// One error per unknown key.
    pub unknown_keys: Vec<ConfigError>,
}

/// Reads `src` as far as validation, or gives the errors that stopped reading.
pub(crate) fn read<'s>(src: &'s str, file: &str) -> Result<Read<'s>, ConfigErrors> {
    let parsed = ImDocument::parse(src).map_err(|e| ConfigError::syntax(file, src, &e))?;
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let mut on_ignored = |path: serde_ignored::Path<'_>| unknown.push(segments(&path));
    let deserializer = toml_edit::de::Deserializer::from(parsed);
    let result = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(
        deserializer,
        &mut on_ignored,
    ));
    let lines = Lines::new(src);
    let doc = Doc::new(src);
    let mut errors: Vec<ConfigError> = unknown
        .iter()
        .map(|path| unknown_key(file, &lines, &doc, path))
        .collect();
    match result {
        Ok(mut raw) => {
            locate_header_names(&mut raw, &doc);
            Ok(Read {
                raw,
                doc,
                lines,
                unknown_keys: errors,
            })
        }
        Err(error) => {
            errors.push(ConfigError::from_serde(file, src, &error));
            errors.sort_by_key(|e| (e.line, e.column));
            Err(ConfigErrors(errors))
        }
    }
}

/// The parsed document, parsed on first use.
pub(crate) struct Doc<'s> {
    src: &'s str,
    /// Owning its copy of the source keeps `Doc` covariant in `'s`.
    parsed: std::cell::OnceCell<Option<ImDocument<String>>>,
}

impl<'s> Doc<'s> {
    fn new(src: &'s str) -> Doc<'s> {
        Doc {
            src,
            parsed: std::cell::OnceCell::new(),
        }
    }

    /// The document; `None` only if the source no longer parses, which cannot happen to a
    /// source that parsed once (positions then fall back to the file's start).
    pub(crate) fn get(&self) -> Option<&ImDocument<String>> {
        self.parsed
            .get_or_init(|| ImDocument::parse(self.src.to_owned()).ok())
            .as_ref()
    }
}

/// Points each `respond.headers` name at itself rather than at its value (see `RawHeaderMap`).
fn locate_header_names(raw: &mut RawConfig, doc: &Doc<'_>) {
    for (i, route) in raw.routes.items_mut().iter_mut().enumerate() {
        let Some(respond) = route.get_mut().respond.as_mut() else {
            continue;
        };
        if respond.get_ref().headers.0.is_empty() {
            continue;
        }
        let Some(doc) = doc.get() else {
            return;
        };
        for (name, _) in &mut respond.get_mut().headers.0 {
            let path = [
                Segment::Key("routes".into()),
                Segment::Index(i),
                Segment::Key("respond".into()),
                Segment::Key("headers".into()),
                Segment::Key(name.get_ref().clone()),
            ];
            if let Some(span) = key_span(doc, &path) {
                *name = Spanned::new(span, std::mem::take(name.get_mut()));
            }
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// The path serde_ignored reports, without the steps that are not in the file: `Option`s,
/// newtypes and the private field through which `toml::Spanned` deserialises.
fn segments(path: &serde_ignored::Path<'_>) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut at = path;
    loop {
        match at {
            serde_ignored::Path::Root => break,
            serde_ignored::Path::Seq { parent, index } => {
                out.push(Segment::Index(*index));
                at = parent;
            }
            serde_ignored::Path::Map { parent, key } => {
                if !key.starts_with("$__serde_spanned_private") {
                    out.push(Segment::Key(key.clone()));
                }
                at = parent;
            }
            serde_ignored::Path::Some { parent }
            | serde_ignored::Path::NewtypeStruct { parent }
            | serde_ignored::Path::NewtypeVariant { parent } => at = parent,
        }
    }
    out.reverse();
    out
}

/// The steps of a key path as validation writes it (`routes[2].respond`). Only header names
/// could hold `.` or `[`, and their positions are never looked up this way.
fn parse_key(key: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|name| !name.is_empty()) {
            out.push(Segment::Key(name.to_owned()));
        }
        for index in pieces {
            if let Some(Ok(index)) = index.strip_suffix(']').map(str::parse) {
                out.push(Segment::Index(index));
            }
        }
    }
    out
}

/// Byte offset of the key path `key` (as validation writes it) in the source: the start of
/// the array element for an index, else of the key; the deepest one found, else 0.
pub(crate) fn locate(doc: &Doc<'_>, key: &str) -> usize {
    let Some(doc) = doc.get() else {
        return 0;
    };
    locate_in(doc, key)
}

fn locate_in<S>(doc: &ImDocument<S>, key: &str) -> usize {
    let mut node = Node::Item(doc.as_item());
    let mut offset = 0;
    for segment in parse_key(key) {
        match segment {
            Segment::Key(name) => {
                let Some((key, item)) = node.table().and_then(|t| t.get_key_value(&name)) else {
                    break;
                };
                offset = key.span().map_or(offset, |span| span.start);
                node = Node::Item(item);
            }
            Segment::Index(index) => {
                let Some(element) = node.element(index) else {
                    break;
                };
                offset = element.span().map_or(offset, |span| span.start);
                node = element;
            }
        }
    }
    offset
}

/// `routes[2].respond.bdy`.
fn dotted(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    out
}

/// The error for one unknown key, at the key itself, listing the keys that are allowed there.
fn unknown_key(file: &str, lines: &Lines<'_>, doc: &Doc<'_>, path: &[Segment]) -> ConfigError {
    let (parent, name) = match path.split_last() {
        Some((Segment::Key(name), parent)) => (parent, name.as_str()),
        // Not produced by the schema (only table keys are ignored); still report it.
        _ => (path, ""),
    };
    let offset = doc
        .get()
        .and_then(|doc| key_span(doc, path))
        .map_or(0, |span| span.start);
    let message = format!(
        "unknown field `{name}`, {}",
        expected(known_keys(parent).unwrap_or(&[]))
    );
    ConfigError::at(file, lines, offset, dotted(path), message)
}

/// The end of serde's own message for an unknown field.
fn expected(keys: &[&str]) -> String {
    match keys {
        [] => "there are no fields".to_owned(),
        [one] => format!("expected `{one}`"),
        [one, two] => format!("expected `{one}` or `{two}`"),
        many => {
            let quoted: Vec<String> = many.iter().map(|k| format!("`{k}`")).collect();
            format!("expected one of {}", quoted.join(", "))
        }
    }
}

/// The keys of the table at `parent` (indices ignored), from the schema's own field lists.
fn known_keys(parent: &[Segment]) -> Option<&'static [&'static str]> {
    let names: Vec<&str> = parent
        .iter()
        .filter_map(|s| match s {
            Segment::Key(key) => Some(key.as_str()),
            Segment::Index(_) => None,
        })
        .collect();
    let fields = match names.as_slice() {
        [] => fields::<RawConfig>(),
        ["runtime"] => fields::<RawRuntime>(),
        ["control"] => fields::<RawControl>(),
        ["admin"] => fields::<RawAdmin>(),
        ["metrics"] => fields::<RawMetrics>(),
        ["access_log"] => fields::<RawAccessLog>(),
        ["resolver"] => fields::<RawResolver>(),
        ["listeners"] => fields::<RawListener>(),
        ["listeners", "tls"] => fields::<RawListenerTls>(),
        ["listeners", "tls", "certificates"] => fields::<RawCertKey>(),
        ["upstreams"] => fields::<RawUpstream>(),
        ["upstreams", "endpoints"] => fields::<RawEndpoint>(),
        ["upstreams", "circuit_breaker"] => fields::<RawCircuitBreaker>(),
        ["upstreams", "health_check"] => fields::<RawHealthCheck>(),
        ["upstreams", "outlier_detection"] => fields::<RawOutlierDetection>(),
        ["upstreams", "tls"] => fields::<RawUpstreamTls>(),
        ["routes"] => fields::<RawRoute>(),
        ["routes", "headers"] => fields::<RawHeaderMatch>(),
        ["routes", "respond"] => fields::<RawRespond>(),
        ["routes", "redirect"] => fields::<RawRedirect>(),
        ["routes", "rate_limit"] => fields::<RawRateLimit>(),
        _ => return None,
    };
    Some(fields)
}

/// The field names serde derived for `T`, in declaration order: `T` is asked to deserialise
/// from a deserializer that only records the list it is handed.
fn fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("probe"))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("probe"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    // It fails by design; only the recorded list matters.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A place in the parsed document that may hold keys or elements.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

impl<'a> Node<'a> {
    fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Table(table) => Some(table),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
        }
    }

    fn element(self, index: usize) -> Option<Node<'a>> {
        match self {
            Node::Item(Item::ArrayOfTables(array)) => array.get(index).map(Node::Table),
            Node::Item(Item::Value(value)) | Node::Value(value) => {
                value.as_array()?.get(index).map(Node::Value)
            }
            Node::Item(_) | Node::Table(_) => None,
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Table(table) => table.span(),
            Node::Value(value) => value.span(),
        }
    }
}

/// Where the last key of `path` is in the source.
fn key_span<S>(doc: &ImDocument<S>, path: &[Segment]) -> Option<Range<usize>> {
    let mut node = Node::Item(doc.as_item());
    let mut span = None;
    for segment in path {
        match segment {
            Segment::Key(name) => {
                let (key, item) = node.table()?.get_key_value(name)?;
                span = key.span();
                node = Node::Item(item);
            }
            Segment::Index(index) => node = node.element(*index)?,
        }
    }
    span
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lists_come_from_the_schema() {
        assert_eq!(fields::<RawEndpoint>(), ["address", "weight"].as_slice());
        assert_eq!(
            known_keys(&[Segment::Key("routes".into()), Segment::Index(3)]),
            Some(fields::<RawRoute>())
        );
        assert_eq!(known_keys(&[Segment::Key("nowhere".into())]), None);
    }

    #[test]
    fn expected_lists_read_like_serde() {
        assert_eq!(expected(&[]), "there are no fields");
        assert_eq!(expected(&["a"]), "expected `a`");
        assert_eq!(expected(&["a", "b"]), "expected `a` or `b`");
        assert_eq!(expected(&["a", "b", "c"]), "expected one of `a`, `b`, `c`");
    }

    #[test]
    fn keys_are_found_in_every_kind_of_table() {
        let src = "[a]\nx = 1\n[[b]]\ny = 2\n[[b]]\nz = { w = [{ v = 1 }] }\nd.e = 1\n";
        let doc = ImDocument::parse(src).unwrap();
        let at = |path: &[Segment]| key_span(&doc, path).map(|span| &src[span]);
        let key = |k: &str| Segment::Key(k.into());
        assert_eq!(at(&[key("a"), key("x")]), Some("x"));
        assert_eq!(at(&[key("b"), Segment::Index(0), key("y")]), Some("y"));
        assert_eq!(
            at(&[
                key("b"),
                Segment::Index(1),
                key("z"),
                key("w"),
                Segment::Index(0),
                key("v")
            ]),
            Some("v")
        );
        assert_eq!(
            at(&[key("b"), Segment::Index(1), key("d"), key("e")]),
            Some("e")
        );
        assert_eq!(at(&[key("b"), Segment::Index(2)]), None);
        assert_eq!(at(&[key("nope")]), None);
    }

    #[test]
    fn key_paths_are_located_as_deep_as_they_exist() {
        let src = "[[b]]\ny = 2\n[[b]]\nd.e = 1\nz = [1, { v = 2 }]\n";
        let doc = ImDocument::parse(src).unwrap();
        let at = |key: &str| &src[locate_in(&doc, key)..][..3];
        assert_eq!(at("b[1].d"), "d.e");
        assert_eq!(at("b[1].d.e"), "e =");
        assert_eq!(at("b[1]"), "[[b");
        assert_eq!(at("b[1].z[1]"), "{ v");
        assert_eq!(at("b[1].z[1].v"), "v =");
        assert_eq!(at("b[1].nope"), "[[b");
        assert_eq!(at("nope"), "[[b");
        assert_eq!(
            parse_key("routes[2].respond.headers[0][1]"),
            [
                Segment::Key("routes".into()),
                Segment::Index(2),
                Segment::Key("respond".into()),
                Segment::Key("headers".into()),
                Segment::Index(0),
                Segment::Index(1),
            ]
        );
    }
}
