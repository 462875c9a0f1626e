use super::*;
use crate::http::h1::{parse_request, RequestLimits};

const CONFIG: &str = r#"
[[listeners]]
name = "l"
listen = "127.0.0.1:1"

[[consumers]]
name = "acme"
groups = ["partners", "beta"]
api_keys = ["acme-key-0001"]

[[consumers]]
name = "bob"
groups = ["beta"]
api_keys = ["sha256:4c2e1d3e0c9b3a0a9f8b6e1c1c2b0a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c"]

[[consumers]]
name = "carol"
api_keys = ["carol-key-0003"]

[[routes]]
name = "partners"
path_prefix = "/p"
respond = { status = 200 }
auth = ["api_key"]
api_key = { header = "x-key", query = "apikey" }
acl = { allow = ["group:partners", "consumer:carol"], deny = ["consumer:bob"] }

[[routes]]
name = "deny"
path_prefix = "/d"
respond = { status = 200 }
auth = ["api_key"]
acl = { deny = ["group:beta"] }
"#;

struct Fixture {
    identity: Identity,
    partners: RouteAuth,
    deny: RouteAuth,
}

fn fixture() -> Fixture {
    let config = ringway_config::parse(CONFIG, "t.toml").unwrap();
    let identity = Identity::compile(&config, 1);
    let partners = identity.route(&config.routes[0]).unwrap();
    let deny = identity.route(&config.routes[1]).unwrap();
    Fixture {
        identity,
        partners,
        deny,
    }
}

fn auth(f: &Fixture, route: &RouteAuth, request: &str) -> Result<(u32, Credential), AuthFailure> {
    let limits = RequestLimits {
        max_request_line: 8192,
        max_head: 16384,
    };
    let mut headers = Vec::new();
    let head = parse_request(request.as_bytes(), &limits, &mut headers)
        .unwrap()
        .unwrap();
    match f.identity.authenticate(
        route,
        request.as_bytes(),
        &head,
        &headers,
        &mut AuthCache::default(),
    ) {
        Attempt::Done(result) => result,
        Attempt::Verify { .. } => panic!("no basic credentials here"),
    }
}

#[test]
fn keys_from_the_header_or_the_query() {
    let f = fixture();
    let ok = auth(
        &f,
        &f.partners,
        "GET /p HTTP/1.1\r\nhost: h\r\nX-Key: acme-key-0001\r\n\r\n",
    );
    assert_eq!(ok, Ok((0, Credential::Header)));
    let req = "GET /p?a=1&apikey=carol%2Dkey-0003&b=2 HTTP/1.1\r\nhost: h\r\n\r\n";
    let (consumer, cred) = auth(&f, &f.partners, req).unwrap();
    assert_eq!(consumer, 2);
    let Credential::Query(span) = cred else {
        panic!("{cred:?}")
    };
    assert_eq!(span.get(req.as_bytes()), b"&apikey=carol%2Dkey-0003");
    // The header wins over the query, and a wrong key is not made good by the other.
    let both = "GET /p?apikey=carol-key-0003 HTTP/1.1\r\nhost: h\r\nx-key: wrong-key-000\r\n\r\n";
    assert_eq!(auth(&f, &f.partners, both), Err(AuthFailure::UnknownApiKey));
    let none =
        "GET /p?apikeyx=carol-key-0003 HTTP/1.1\r\nhost: h\r\nx-api-key: acme-key-0001\r\n\r\n";
    assert_eq!(auth(&f, &f.partners, none), Err(AuthFailure::Missing));
    // The default header, on a route that did not rename it.
    let default = "GET /d HTTP/1.1\r\nhost: h\r\nx-api-key: carol-key-0003\r\n\r\n";
    assert_eq!(auth(&f, &f.deny, default), Ok((2, Credential::Header)));
}

#[test]
fn hashed_keys_match_the_key_they_hash() {
    let f = fixture();
    // The config above stores bob's key as a digest only; any other key is unknown.
    let req = "GET /d HTTP/1.1\r\nhost: h\r\nx-api-key: not-bobs-key\r\n\r\n";
    assert_eq!(auth(&f, &f.deny, req), Err(AuthFailure::UnknownApiKey));
    let mut config = ringway_config::parse(CONFIG, "t.toml").unwrap();
    config.consumers[1].api_keys = vec![KeyDigest::of(b"bob-key-0002")];
    let identity = Identity::compile(&config, 1);
    let route = identity.route(&config.routes[1]).unwrap();
    let limits = RequestLimits {
        max_request_line: 8192,
        max_head: 16384,
    };
    let req = "GET /d HTTP/1.1\r\nhost: h\r\nx-api-key: bob-key-0002\r\n\r\n";
    let mut headers = Vec::new();
    let head = parse_request(req.as_bytes(), &limits, &mut headers)
        .unwrap()
        .unwrap();
    let attempt = identity.authenticate(
        &route,
        req.as_bytes(),
        &head,
        &headers,
        &mut AuthCache::default(),
    );
    assert!(matches!(
        attempt,
        Attempt::Done(Ok((1, Credential::Header)))
    ));
}

#[test]
fn acls_deny_first_then_allow() {
    let f = fixture();
    let id = &f.identity;
    // partners: allow group:partners and consumer:carol, deny consumer:bob.
    assert!(id.allows(&f.partners, 0), "acme is a partner");
    assert!(!id.allows(&f.partners, 1), "bob is denied");
    assert!(id.allows(&f.partners, 2), "carol is allowed by name");
    // deny: group beta out, everyone else in.
    assert!(!id.allows(&f.deny, 0));
    assert!(!id.allows(&f.deny, 1));
    assert!(id.allows(&f.deny, 2));
    assert_eq!(&*id.consumers[0].groups_header, "partners, beta");
}

#[test]
fn query_values_decode_within_bounds() {
    let mut out = [0u8; MAX_QUERY_KEY];
    assert_eq!(percent_decode(b"a%41+b", &mut out), Some(&b"aA b"[..]));
    assert_eq!(percent_decode(b"a%4", &mut out), None);
    assert_eq!(percent_decode(&[b'x'; MAX_QUERY_KEY + 1], &mut out), None);
}

#[test]
fn remembered_keys_are_good_for_their_epoch_only() {
    let limits = RequestLimits {
        max_request_line: 8192,
        max_head: 16384,
    };
    let req = "GET /d HTTP/1.1\r\nhost: h\r\nx-api-key: carol-key-0003\r\n\r\n";
    let mut headers = Vec::new();
    let head = parse_request(req.as_bytes(), &limits, &mut headers)
        .unwrap()
        .unwrap();
    let mut cache = AuthCache::default();
    let mut config = ringway_config::parse(CONFIG, "t.toml").unwrap();
    let first = Identity::compile(&config, 1);
    let route = first.route(&config.routes[1]).unwrap();
    for _ in 0..2 {
        let attempt = first.authenticate(&route, req.as_bytes(), &head, &headers, &mut cache);
        assert!(matches!(attempt, Attempt::Done(Ok((2, _)))));
    }
    // A reload moves the key to another consumer: the shard's memory of it does not count.
    let carol = config.consumers[2].api_keys.pop().unwrap();
    config.consumers[0].api_keys.push(carol);
    let second = Identity::compile(&config, 2);
    let route = second.route(&config.routes[1]).unwrap();
    let attempt = second.authenticate(&route, req.as_bytes(), &head, &headers, &mut cache);
    assert!(matches!(attempt, Attempt::Done(Ok((0, _)))));
}
