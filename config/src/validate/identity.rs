//! `[[consumers]]`, and what a route asks of them: `auth`, `api_key` and `acl`.

use std::collections::{HashMap, HashSet};

use super::Ctx;
use crate::model::{
    Acl, ApiKeyFrom, AuthMethod, BasicCredential, Consumer, KeyDigest, Principal, RouteAuth,
};
use crate::raw::{
    At, List, RawAcl, RawApiKeyFrom, RawBasic, RawConfig, RawConsumer, RawRoute, Typed,
};

/// The default header of `api_key`.
const API_KEY_HEADER: &str = "x-api-key";

pub(super) fn consumers(ctx: &mut Ctx<'_>, raw: &List<At<RawConsumer>>) -> Vec<Consumer> {
    let Some(raw) = ctx.list(raw, "consumers") else {
        return Vec::new();
    };
    let names = ctx.table_names(raw, "consumers", "consumer", |t| t.name.as_ref());
    // Which consumer holds each key and each basic user: one naming two consumers is an error.
    let mut holders: HashMap<KeyDigest, String> = HashMap::new();
    let mut users: HashMap<String, String> = HashMap::new();
    let mut subjects: HashMap<String, String> = HashMap::new();
    let mut valid = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let c = spanned.get_ref();
        let prefix = format!("consumers[{i}]");
        let name = names[i].and_then(|name| ctx.name(name, format!("{prefix}.name")));
        let groups = groups(ctx, &prefix, c.groups.as_ref());
        let api_keys = api_keys(
            ctx,
            &prefix,
            c.api_keys.as_ref(),
            name.as_deref(),
            &mut holders,
        );
        let basic = match c.basic.as_ref() {
            None => Some(None),
            Some(raw) => basic(ctx, &prefix, raw, name.as_deref(), &mut users).map(Some),
        };
        let key = format!("{prefix}.jwt_subject");
        let jwt_subject = ctx
            .optional(c.jwt_subject.as_ref(), &key)
            .and_then(|s| match s {
                None => Some(None),
                Some(s) if s.get_ref().is_empty() => ctx.fail(s, key.clone(), "must not be empty"),
                Some(s) => match (subjects.get(s.get_ref()), &name) {
                    (Some(other), _) => {
                        let message = format!(
                            "subject \"{}\" is already consumer \"{other}\"'s",
                            s.get_ref()
                        );
                        ctx.fail(s, key.clone(), message)
                    }
                    (None, Some(name)) => {
                        subjects.insert(s.get_ref().clone(), name.clone());
                        Some(Some(s.get_ref().clone()))
                    }
                    (None, None) => Some(Some(s.get_ref().clone())),
                },
            });
        if let (Some(name), Some(groups), Some(api_keys), Some(basic), Some(jwt_subject)) =
            (name, groups, api_keys, basic, jwt_subject)
        {
            valid.push(Consumer {
                name,
                groups,
                api_keys,
                basic,
                jwt_subject,
            });
        }
    }
    valid
}

fn groups(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&List<Typed<String>>>,
) -> Option<Vec<String>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let items = ctx.list(raw, &format!("{prefix}.groups"))?;
    let mut groups: Vec<String> = Vec::new();
    let mut all_valid = true;
    for (i, group) in items.iter().enumerate() {
        let key = format!("{prefix}.groups[{i}]");
        match ctx.typed(group, &key).and_then(|g| ctx.name(g, key)) {
            Some(g) if !groups.contains(&g) => groups.push(g),
            Some(_) => {}
            None => all_valid = false,
        }
    }
    all_valid.then_some(groups)
}

/// `api_keys`: each a key as clients send it, or `sha256:` and its digest in 64 hex digits.
fn api_keys(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&List<Typed<String>>>,
    consumer: Option<&str>,
    holders: &mut HashMap<KeyDigest, String>,
) -> Option<Vec<KeyDigest>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let items = ctx.list(raw, &format!("{prefix}.api_keys"))?;
    let mut keys = Vec::new();
    let mut all_valid = true;
    for (i, key) in items.iter().enumerate() {
        let path = format!("{prefix}.api_keys[{i}]");
        let Some(raw_key) = ctx.typed(key, &path) else {
            all_valid = false;
            continue;
        };
        // Error messages never quote a key.
        let text = raw_key.get_ref();
        let digest = match text.strip_prefix("sha256:") {
            Some(hex) => match parse_hex32(hex) {
                Some(d) => KeyDigest(d),
                None => {
                    let message = "a hashed key is \"sha256:\" and 64 hex digits";
                    ctx.error(raw_key, path, message);
                    all_valid = false;
                    continue;
                }
            },
            None => {
                if text.len() < 8 || !text.bytes().all(|b| b.is_ascii_graphic()) {
                    let message = "an API key is at least 8 visible ASCII characters \
                                   (no spaces or control characters)";
                    ctx.error(raw_key, path, message);
                    all_valid = false;
                    continue;
                }
                KeyDigest::of(text.as_bytes())
            }
        };
        match (holders.get(&digest), consumer) {
            (Some(other), _) => {
                let message = format!("the same API key is already consumer \"{other}\"'s");
                ctx.error(raw_key, path, message);
                all_valid = false;
            }
            (None, Some(consumer)) => {
                holders.insert(digest, consumer.to_owned());
                keys.push(digest);
            }
            (None, None) => keys.push(digest),
        }
    }
    all_valid.then_some(keys)
}

/// `basic = { user, password_hash }`.
fn basic(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: &At<RawBasic>,
    consumer: Option<&str>,
    users: &mut HashMap<String, String>,
) -> Option<BasicCredential> {
    let table_key = format!("{prefix}.basic");
    let table = (raw, table_key.as_str());
    let r = raw.get_ref();
    let user = ctx.required(r.user.as_ref(), table, "user");
    let hash = ctx.required(r.password_hash.as_ref(), table, "password_hash");
    let user = user.and_then(|user| {
        let key = format!("{table_key}.user");
        let text = user.get_ref();
        if text.is_empty() || text.contains(':') || !text.bytes().all(|b| b.is_ascii_graphic()) {
            let message = "a user name is visible ASCII characters without ':'";
            return ctx.fail(user, key, message);
        }
        if let Some(other) = users.get(text) {
            let message = format!("user \"{text}\" is already consumer \"{other}\"'s");
            return ctx.fail(user, key, message);
        }
        if let Some(consumer) = consumer {
            users.insert(text.clone(), consumer.to_owned());
        }
        Some(text.clone())
    });
    let hash = hash.and_then(|hash| {
        if is_bcrypt(hash.get_ref()) {
            return Some(hash.get_ref().clone());
        }
        let message = "expected a bcrypt hash ($2y$, $2b$ or $2a$, a cost of 04 to 31, then 53 \
                       characters), as `htpasswd -nB USER` writes it";
        ctx.fail(hash, format!("{table_key}.password_hash"), message)
    });
    Some(BasicCredential {
        user: user?,
        password_hash: hash?,
    })
}

/// `$2y$10$` and 53 characters of bcrypt's base64 (22 of salt, 31 of hash).
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    let version = b
        .get(..4)
        .is_some_and(|v| matches!(v, b"$2a$" | b"$2b$" | b"$2y$"));
    let cost = std::str::from_utf8(b.get(4..6).unwrap_or_default())
        .ok()
        .and_then(|c| c.parse::<u32>().ok())
        .is_some_and(|c| (4..=31).contains(&c));
    version
        && cost
        && b.get(6) == Some(&b'$')
        && b.len() == 60
        && b[7..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'.' || c == b'/')
}

fn parse_hex32(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// The consumer names and groups routes may refer to, from the raw tables (so that a consumer
/// with an error elsewhere in its table is not also reported as unknown where it is named);
/// `None` when a name or group could not be read (references are then not checked).
pub(super) struct Known<'r> {
    consumers: HashSet<&'r str>,
    groups: HashSet<&'r str>,
    /// JWT provider names, in file order (their index is the provider's).
    providers: Vec<&'r str>,
}

pub(super) fn known(config: &RawConfig) -> Option<Known<'_>> {
    let mut known = Known {
        consumers: HashSet::new(),
        groups: HashSet::new(),
        providers: Vec::new(),
    };
    for p in config.jwt_providers.items().ok()? {
        match p.get_ref().name.as_ref()? {
            Typed::Ok(name) => known.providers.push(name.get_ref()),
            Typed::Wrong { .. } => return None,
        }
    }
    for c in config.consumers.items().ok()? {
        let c = c.get_ref();
        match c.name.as_ref()? {
            Typed::Ok(name) => known.consumers.insert(name.get_ref()),
            Typed::Wrong { .. } => return None,
        };
        if let Some(groups) = &c.groups {
            for g in groups.items().ok()? {
                match g {
                    Typed::Ok(g) => known.groups.insert(g.get_ref()),
                    Typed::Wrong { .. } => return None,
                };
            }
        }
    }
    Some(known)
}

/// `auth`, `api_key` and `acl` of a route.
pub(super) fn route_auth(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    r: &RawRoute,
    known: Option<&Known<'_>>,
) -> Option<(Option<RouteAuth>, Option<Acl>)> {
    let methods = match r.auth.as_ref() {
        None => Some(None),
        Some(raw) => auth_methods(ctx, prefix, raw, known).map(Some),
    };
    let api_key = api_key_from(ctx, prefix, r.api_key.as_ref(), methods.as_ref());
    let acl = match r.acl.as_ref() {
        None => Some(None),
        Some(raw) => {
            let key = format!("{prefix}.acl");
            if r.auth.is_none() {
                ctx.error_near(
                    raw.span(),
                    key,
                    "an acl needs auth on the route: without it no request has a consumer",
                );
                None
            } else {
                acl(ctx, &key, raw, known).map(Some)
            }
        }
    };
    let auth = match (methods?, api_key?) {
        (Some(methods), api_key) => Some(RouteAuth { methods, api_key }),
        (None, _) => None,
    };
    Some((auth, acl?))
}

fn auth_methods(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: &List<Typed<String>>,
    known: Option<&Known<'_>>,
) -> Option<Vec<AuthMethod>> {
    let key = format!("{prefix}.auth");
    let items = ctx.list(raw, &key)?;
    if items.is_empty() {
        let message = "must list at least one method; leave the key out for a route open to anyone";
        ctx.error_near(raw.span(), key, message);
        return None;
    }
    let mut methods = Vec::new();
    let mut all_valid = true;
    for (i, method) in items.iter().enumerate() {
        let key = format!("{prefix}.auth[{i}]");
        let Some(method) = ctx.typed(method, &key) else {
            all_valid = false;
            continue;
        };
        let parsed = match method.get_ref().as_str() {
            "api_key" => AuthMethod::ApiKey,
            "basic" => AuthMethod::Basic,
            other if other.starts_with("jwt:") => {
                let name = &other[4..];
                match known.map(|k| k.providers.iter().position(|p| *p == name)) {
                    Some(Some(index)) => AuthMethod::Jwt(index),
                    // A provider name could not be read: reported there.
                    None => AuthMethod::Jwt(0),
                    Some(None) => {
                        let message = format!("no JWT provider named \"{name}\"");
                        ctx.error(method, key, message);
                        all_valid = false;
                        continue;
                    }
                }
            }
            other => {
                let message = format!(
                    "unknown auth method \"{other}\"; expected \"api_key\", \"basic\" or \"jwt:PROVIDER\""
                );
                ctx.error(method, key, message);
                all_valid = false;
                continue;
            }
        };
        if methods.contains(&parsed) {
            ctx.error(method, key, "listed twice");
            all_valid = false;
            continue;
        }
        methods.push(parsed);
    }
    all_valid.then_some(methods)
}

/// `api_key = { header, query }`, which only a route with `auth = [.., "api_key", ..]` may set.
fn api_key_from(
    ctx: &mut Ctx<'_>,
    prefix: &str,
    raw: Option<&At<RawApiKeyFrom>>,
    methods: Option<&Option<Vec<AuthMethod>>>,
) -> Option<ApiKeyFrom> {
    let default = ApiKeyFrom {
        header: API_KEY_HEADER.to_owned(),
        query: None,
    };
    let Some(raw) = raw else {
        return Some(default);
    };
    let table_key = format!("{prefix}.api_key");
    // Only said when the methods could be read: they may be what is wrong.
    if let Some(methods) = methods {
        if !methods
            .as_ref()
            .is_some_and(|m| m.contains(&AuthMethod::ApiKey))
        {
            let message = "applies only to a route whose auth lists \"api_key\"";
            ctx.error_near(raw.span(), table_key, message);
            return None;
        }
    }
    let r = raw.get_ref();
    let header = match ctx.optional(r.header.as_ref(), &format!("{table_key}.header"))? {
        None => default.header,
        Some(h) => ctx
            .token(h, format!("{table_key}.header"), "header name")?
            .to_ascii_lowercase(),
    };
    let query = match ctx.optional(r.query.as_ref(), &format!("{table_key}.query"))? {
        None => None,
        Some(q) => {
            let name = q.get_ref();
            let valid = !name.is_empty()
                && name.bytes().all(|b| {
                    b.is_ascii_graphic() && !matches!(b, b'&' | b'=' | b'#' | b'%' | b'+')
                });
            if !valid {
                let message = format!(
                    "\"{name}\" is not a query parameter name (visible ASCII without & = # % +)"
                );
                return ctx.fail(q, format!("{table_key}.query"), message);
            }
            Some(name.clone())
        }
    };
    Some(ApiKeyFrom { header, query })
}

fn acl(ctx: &mut Ctx<'_>, key: &str, raw: &At<RawAcl>, known: Option<&Known<'_>>) -> Option<Acl> {
    let r = raw.get_ref();
    let allow = principals(ctx, &format!("{key}.allow"), r.allow.as_ref(), known);
    let deny = principals(ctx, &format!("{key}.deny"), r.deny.as_ref(), known);
    let (allow, deny) = (allow?, deny?);
    if allow.is_empty() && deny.is_empty() {
        ctx.error_near(
            raw.span(),
            key.to_owned(),
            "needs a non-empty allow or deny list",
        );
        return None;
    }
    Some(Acl { allow, deny })
}

fn principals(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: Option<&List<Typed<String>>>,
    known: Option<&Known<'_>>,
) -> Option<Vec<Principal>> {
    let Some(raw) = raw else {
        return Some(Vec::new());
    };
    let items = ctx.list(raw, key)?;
    let mut out = Vec::new();
    let mut all_valid = true;
    for (i, item) in items.iter().enumerate() {
        let key = format!("{key}[{i}]");
        let Some(item) = ctx.typed(item, &key) else {
            all_valid = false;
            continue;
        };
        let text = item.get_ref();
        let principal = if let Some(name) = text.strip_prefix("consumer:") {
            if known.is_some_and(|k| !k.consumers.contains(name)) {
                ctx.error(item, key, format!("no consumer named \"{name}\""));
                all_valid = false;
                continue;
            }
            Principal::Consumer(name.to_owned())
        } else if let Some(name) = text.strip_prefix("group:") {
            if known.is_some_and(|k| !k.groups.contains(name)) {
                ctx.error(
                    item,
                    key,
                    format!("no consumer is in a group named \"{name}\""),
                );
                all_valid = false;
                continue;
            }
            Principal::Group(name.to_owned())
        } else {
            let message = format!("\"{text}\" is neither \"consumer:NAME\" nor \"group:NAME\"");
            ctx.error(item, key, message);
            all_valid = false;
            continue;
        };
        if !out.contains(&principal) {
            out.push(principal);
        }
    }
    all_valid.then_some(out)
}

#[cfg(test)]
mod tests {
    use crate::model::{Acl, ApiKeyFrom, AuthMethod, KeyDigest, Principal, RateLimitKey};
    use crate::validate::test_util::{errors, one_error, parse_ok, BASE};

    const CONSUMERS: &str = "
[[consumers]]
name = \"acme\"
groups = [\"partners\", \"partners\", \"beta\"]
api_keys = [\"acme-key-0001\", \"sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\"]

[[consumers]]
name = \"bob\"
";

    fn route(lines: &str) -> String {
        format!(
            "{BASE}{CONSUMERS}\n[[routes]]\nname = \"r\"\nrespond = {{ status = 200 }}\n{lines}\n"
        )
    }

    #[test]
    fn consumers_keep_only_digests_of_their_keys() {
        let cfg = parse_ok(&route(""));
        let acme = &cfg.consumers[0];
        assert_eq!(acme.groups, ["partners", "beta"]);
        assert_eq!(acme.api_keys[0], KeyDigest::of(b"acme-key-0001"));
        // sha256("test"), given in upper case.
        assert_eq!(acme.api_keys[1], KeyDigest::of(b"test"));
        assert!(cfg.consumers[1].api_keys.is_empty());
        assert!(!format!("{:?}", cfg.consumers).contains("acme-key-0001"));
    }

    #[test]
    fn bad_consumers() {
        let dup = format!(
            "{BASE}{CONSUMERS}[[consumers]]\nname = \"carol\"\napi_keys = [\"acme-key-0001\"]\n"
        );
        let err = one_error(&dup);
        assert!(
            err.ends_with(
                "consumers[2].api_keys[0]: the same API key is already consumer \"acme\"'s"
            ),
            "{err}"
        );
        assert!(!err.contains("acme-key-0001"));
        let short = format!("{BASE}[[consumers]]\nname = \"c\"\napi_keys = [\"short\"]\n");
        assert!(one_error(&short).contains("at least 8 visible ASCII characters"));
        let hex = format!("{BASE}[[consumers]]\nname = \"c\"\napi_keys = [\"sha256:abc\"]\n");
        assert!(one_error(&hex).contains("64 hex digits"));
        let twice = format!("{BASE}[[consumers]]\nname = \"c\"\n[[consumers]]\nname = \"c\"\n");
        assert!(one_error(&twice).contains("duplicate consumer name \"c\""));
        let hash = "$2y$05$CCCCCCCCCCCCCCCCCCCCC.LLjdUSrT2gH5Gk1XO8hAk2dKs4gk8R6";
        let users = format!(
            "{BASE}[[consumers]]\nname = \"c\"\nbasic = {{ user = \"u\", password_hash = \"{hash}\" }}\n\
             [[consumers]]\nname = \"d\"\nbasic = {{ user = \"u\", password_hash = \"{hash}\" }}\n"
        );
        let err = one_error(&users);
        assert!(
            err.ends_with("consumers[1].basic.user: user \"u\" is already consumer \"c\"'s"),
            "{err}"
        );
        let md5 = format!(
            "{BASE}[[consumers]]\nname = \"c\"\nbasic = {{ user = \"u\", password_hash = \"$apr1$x$y\" }}\n"
        );
        assert!(one_error(&md5).contains("expected a bcrypt hash"));
        let colon = format!(
            "{BASE}[[consumers]]\nname = \"c\"\nbasic = {{ user = \"a:b\", password_hash = \"{hash}\" }}\n"
        );
        assert!(one_error(&colon).contains("without ':'"));
        let ok = format!(
            "{BASE}[[consumers]]\nname = \"c\"\nbasic = {{ user = \"u\", password_hash = \"{hash}\" }}\n"
        );
        let cfg = parse_ok(&ok);
        assert_eq!(cfg.consumers[0].basic.as_ref().unwrap().user, "u");
        assert!(!format!("{:?}", cfg.consumers).contains("LLjdU"));
        let unknown = format!("{BASE}[[consumers]]\nname = \"c\"\nbasic_auth = 1\n");
        assert!(one_error(&unknown).contains("unknown field `basic_auth`"));
    }

    #[test]
    fn route_auth_and_acl() {
        let cfg = parse_ok(&route(
            "auth = [\"api_key\"]\napi_key = { header = \"X-Key\", query = \"apikey\" }\n\
             acl = { allow = [\"group:partners\", \"consumer:bob\"], deny = [\"consumer:acme\"] }\n\
             rate_limit = { rate = 5, key = \"consumer\" }",
        ));
        let r = &cfg.routes[0];
        let auth = r.auth.as_ref().unwrap();
        assert_eq!(auth.methods, [AuthMethod::ApiKey]);
        assert_eq!(
            auth.api_key,
            ApiKeyFrom {
                header: "x-key".into(),
                query: Some("apikey".into())
            }
        );
        assert_eq!(
            r.acl,
            Some(Acl {
                allow: vec![
                    Principal::Group("partners".into()),
                    Principal::Consumer("bob".into())
                ],
                deny: vec![Principal::Consumer("acme".into())],
            })
        );
        assert_eq!(r.rate_limit.as_ref().unwrap().key, RateLimitKey::Consumer);
        let open = parse_ok(&route("auth = [\"api_key\"]"));
        assert_eq!(
            open.routes[0].auth.as_ref().unwrap().api_key.header,
            "x-api-key"
        );
        assert!(parse_ok(&route("")).routes[0].auth.is_none());
    }

    #[test]
    fn bad_route_auth() {
        for (lines, want) in [
            ("auth = []", "routes[0].auth: must list at least one method"),
            (
                "auth = [\"jwt\"]",
                "routes[0].auth[0]: unknown auth method \"jwt\"; expected \"api_key\", \"basic\" or \"jwt:PROVIDER\"",
            ),
            (
                "auth = [\"api_key\", \"api_key\"]",
                "routes[0].auth[1]: listed twice",
            ),
            (
                "acl = { allow = [\"consumer:bob\"] }",
                "routes[0].acl: an acl needs auth on the route",
            ),
            (
                "auth = [\"api_key\"]\nacl = { allow = [\"consumer:eve\"] }",
                "routes[0].acl.allow[0]: no consumer named \"eve\"",
            ),
            (
                "auth = [\"api_key\"]\nacl = { deny = [\"group:nobody\"] }",
                "routes[0].acl.deny[0]: no consumer is in a group named \"nobody\"",
            ),
            (
                "auth = [\"api_key\"]\nacl = { allow = [\"bob\"] }",
                "is neither \"consumer:NAME\" nor \"group:NAME\"",
            ),
            (
                "auth = [\"api_key\"]\nacl = {}",
                "routes[0].acl: needs a non-empty allow or deny list",
            ),
            (
                "api_key = { header = \"x-k\" }",
                "routes[0].api_key: applies only to a route whose auth lists \"api_key\"",
            ),
            (
                "auth = [\"api_key\"]\napi_key = { query = \"a=b\" }",
                "routes[0].api_key.query: \"a=b\" is not a query parameter name",
            ),
            (
                "rate_limit = { rate = 5, key = \"consumer\" }",
                "routes[0].rate_limit.key: key \"consumer\" needs auth on the route",
            ),
        ] {
            let all = errors(&route(lines));
            assert_eq!(all.len(), 1, "{lines}: {all:?}");
            assert!(all[0].contains(want), "{lines}: {}", all[0]);
        }
    }
}
