//! Identity: consumers found by API key (from a header or a query parameter), ACLs, the
//! headers the upstream receives, rate limits per consumer, and what the access log says.
//! Over HTTP/1.1 and HTTP/2, on both drivers.

use std::time::Duration;

use ringway_tests::{
    both_drivers, h2client, poll_until, upstream_toml, Client, Gateway, Received, Reply, TempPath,
    Upstream,
};

/// acme (group partners) by a key as written; bob by the SHA-256 of "bob-key-0002".
const CONSUMERS: &str = r#"
[[consumers]]
name = "acme"
groups = ["partners"]
api_keys = ["acme-key-0001"]

[[consumers]]
name = "bob"
api_keys = ["sha256:d54508c124109e1bbf7d7dffd3aa872b9364dc9f0232ca9b32d74a42b570cd7d"]
"#;

fn gateway(driver: ringway_tests::Driver, up: &Upstream, log: &TempPath) -> Gateway {
    let toml = format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n{}{CONSUMERS}\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"u\"\n\
         auth = [\"api_key\"]\napi_key = {{ query = \"apikey\" }}\n\n\
         [[routes]]\nname = \"partners\"\npath_prefix = \"/partners\"\nupstream = \"u\"\n\
         auth = [\"api_key\"]\nacl = {{ allow = [\"group:partners\"] }}\n\n\
         [[routes]]\nname = \"limited\"\npath_prefix = \"/limited\"\nupstream = \"u\"\n\
         auth = [\"api_key\"]\nrate_limit = {{ rate = 2, per = \"1h\", key = \"consumer\" }}\n\n\
         [[routes]]\nname = \"open\"\nupstream = \"u\"\n\n\
         [access_log]\npath = \"{}\"\n",
        upstream_toml("u", &[(up.addr(), 1)], ""),
        log.path().display(),
    );
    Gateway::start(driver, &toml)
}

fn echo() -> Upstream {
    Upstream::start(|req: &Received| Reply::ok(&format!("up {}", req.target)))
}

fn send(gw: &Gateway, path: &str, headers: &str) -> ringway_tests::Response {
    let req = format!("GET {path} HTTP/1.1\r\nHost: id.test\r\n{headers}\r\n");
    Client::connect(gw.addr()).request(&req)
}

/// The access log's lines once there are `n`, as JSON.
fn log_lines(log: &TempPath, n: usize) -> Vec<serde_json::Value> {
    poll_until("access log lines", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(log.path()).map_err(|e| e.to_string())?;
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(format!("{} lines", lines.len()))
        }
    })
}

both_drivers!(
    api_keys_name_the_consumer_and_never_reach_the_upstream,
    |driver| {
        let up = echo();
        let log = TempPath::new("log");
        let gw = gateway(driver, &up, &log);

        let missing = send(&gw, "/api/x", "");
        assert_eq!(missing.status, 401);
        assert_eq!(
            missing.header("www-authenticate"),
            Some("ApiKey realm=\"ringway\"")
        );
        assert_eq!(send(&gw, "/api/x?apikey=acme-key-0003", "").status, 401);
        assert_eq!(
            up.requests(),
            0,
            "refused requests never reach the upstream"
        );

        // From the header: the key stays behind, the consumer goes on.
        let ok = send(
            &gw,
            "/api/x",
            "X-Api-Key: acme-key-0001\r\nx-consumer: admin\r\nX_Consumer_Groups: root\r\n",
        );
        assert_eq!((ok.status, ok.text().as_str()), (200, "up /api/x"));
        // From the query (a hashed key): the parameter is taken out of what is forwarded.
        let q = send(&gw, "/api/y?apikey=bob%2Dkey-0002&z=1", "");
        assert_eq!((q.status, q.text().as_str()), (200, "up /api/y?z=1"));
        let q2 = send(&gw, "/api/y?a=1&apikey=bob-key-0002", "");
        assert_eq!(q2.text(), "up /api/y?a=1");
        // Let in by the header: a key in the query (here someone else's, twice) goes
        // nowhere either.
        let both = send(
            &gw,
            "/api/z?apikey=bob-key-0002&b=1&apikey=bob-key-0002",
            "x-api-key: acme-key-0001\r\n",
        );
        assert_eq!(both.text(), "up /api/z?b=1");

        let got = up.received();
        assert_eq!(got[0].header_all("x-consumer"), ["acme"]);
        assert_eq!(got[0].header_all("x-consumer-groups"), ["partners"]);
        assert!(got[0].header("x-api-key").is_none());
        assert!(got[0].header("x_consumer_groups").is_none());
        assert_eq!(got[1].header_all("x-consumer"), ["bob"]);
        assert!(got[1].header("x-consumer-groups").is_none());

        // A route without auth: what a client says about consumers never reaches the upstream.
        let open = send(
            &gw,
            "/",
            "x-consumer: acme\r\nx-consumer-groups: partners\r\n",
        );
        assert_eq!(open.status, 200);
        let got = up.received();
        let last = got.last().unwrap();
        assert!(last.header("x-consumer").is_none() && last.header("x-consumer-groups").is_none());

        let lines = log_lines(&log, 7);
        assert_eq!(lines[0]["status"], 401);
        assert_eq!(lines[0]["cause"], "unauthenticated");
        assert_eq!(lines[0]["auth"], "no_credentials");
        assert_eq!(lines[1]["auth"], "unknown_api_key");
        assert_eq!(lines[2]["consumer"], "acme");
        assert_eq!(lines[3]["consumer"], "bob");
        assert_eq!(
            lines[5]["path"],
            "/api/z?apikey=<redacted>&b=1&apikey=<redacted>"
        );
        assert_eq!(lines[6]["consumer"], serde_json::Value::Null);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert!(!text.contains("acme-key-0001"), "no key in the log");
        assert_eq!(
            lines[1]["path"], "/api/x?apikey=<redacted>",
            "nor a wrong one"
        );
        assert!(!text.contains("bob%2Dkey-0002") && !text.contains("bob-key-0002"));
        assert_eq!(lines[3]["path"], "/api/y?apikey=<redacted>&z=1");
    }
);

both_drivers!(acls_and_limits_per_consumer, |driver| {
    let up = echo();
    let log = TempPath::new("log");
    let gw = gateway(driver, &up, &log);
    let acme = "x-api-key: acme-key-0001\r\n";
    let bob = "x-api-key: bob-key-0002\r\n";
    assert_eq!(send(&gw, "/partners", acme).status, 200);
    let denied = send(&gw, "/partners", bob);
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "403 Forbidden\n");
    // Two an hour each, counted per consumer.
    for _ in 0..2 {
        assert_eq!(send(&gw, "/limited", acme).status, 200);
    }
    assert_eq!(send(&gw, "/limited", acme).status, 429);
    assert_eq!(send(&gw, "/limited", bob).status, 200);
    let lines = log_lines(&log, 6);
    assert_eq!(lines[1]["cause"], "forbidden");
    assert_eq!(lines[1]["consumer"], "bob");
    assert_eq!(lines[4]["cause"], "rate_limited");
});

both_drivers!(h2_requests_authenticate_alike, |driver| {
    let up = echo();
    let log = TempPath::new("log");
    let gw = gateway(driver, &up, &log);
    let statuses = h2client::block_on(Duration::from_secs(20), async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let mut out = Vec::new();
        for key in [None, Some("acme-key-0001"), Some("nobody-key-000")] {
            let mut req = h2client::request("GET", "/api/h2");
            if let Some(key) = key {
                req.headers_mut()
                    .insert("x-api-key", http::HeaderValue::from_static(key));
            }
            let (resp, _) = h2.send.send_request(req, true).expect("a stream");
            let resp = resp.await.expect("an answer");
            out.push(resp.status().as_u16());
        }
        out
    });
    assert_eq!(statuses, [401, 200, 401]);
    let got = up.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header_all("x-consumer"), ["acme"]);
    assert!(got[0].header("x-api-key").is_none());
});

both_drivers!(
    a_reload_changes_keys_and_acls_for_the_next_request,
    |driver| {
        let up = echo();
        let config = |key: &str, allow: &str| {
            format!(
                "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n{}\
             [[consumers]]\nname = \"acme\"\ngroups = [\"a\"]\napi_keys = [\"{key}\"]\n\n\
             [[consumers]]\nname = \"bob\"\ngroups = [\"b\"]\napi_keys = [\"bob-key-0002\"]\n\n\
             [[routes]]\nname = \"api\"\nupstream = \"u\"\nauth = [\"api_key\"]\n\
             acl = {{ allow = [\"{allow}\"] }}\n",
                upstream_toml("u", &[(up.addr(), 1)], ""),
            )
        };
        let gw = Gateway::start(driver, &config("acme-key-0001", "group:a"));
        // One connection across the reload: the next request on it runs on the new epoch.
        let mut c = Client::connect(gw.addr());
        let get = |key: &str| format!("GET / HTTP/1.1\r\nHost: h\r\nx-api-key: {key}\r\n\r\n");
        assert_eq!(c.request(&get("acme-key-0001")).status, 200);
        assert_eq!(c.request(&get("bob-key-0002")).status, 403);
        gw.write_config(&config("acme-key-0009", "group:b"));
        gw.ctl(&["reload"]).expect_ok("reload");
        assert_eq!(
            c.request(&get("acme-key-0001")).status,
            401,
            "the old key is gone"
        );
        assert_eq!(
            c.request(&get("acme-key-0009")).status,
            403,
            "acme is not in b"
        );
        assert_eq!(c.request(&get("bob-key-0002")).status, 200);
        let shown = gw.ctl(&["config"]).expect_ok("config").to_string();
        assert!(
            !shown.contains("acme-key-0009") && !shown.contains("bob-key-0002"),
            "{shown}"
        );
    }
);

both_drivers!(basic_auth_against_bcrypt_hashes, |driver| {
    let up = echo();
    let log = TempPath::new("log");
    let hash = bcrypt::hash("open-sesame", 6).unwrap();
    let toml = format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n{}\
         [[consumers]]\nname = \"acme\"\ngroups = [\"partners\"]\napi_keys = [\"acme-key-0001\"]\n\
         basic = {{ user = \"acme\", password_hash = \"{hash}\" }}\n\n\
         [[routes]]\nname = \"api\"\nupstream = \"u\"\nauth = [\"api_key\", \"basic\"]\n\n\
         [access_log]\npath = \"{}\"\n",
        upstream_toml("u", &[(up.addr(), 1)], ""),
        log.path().display(),
    );
    let gw = Gateway::start(driver, &toml);
    let basic = |user: &str, password: &str| {
        use base64::Engine;
        let pair = format!("{user}:{password}");
        format!(
            "authorization: Basic {}\r\n",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    };
    let none = send(&gw, "/", "");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header_all("www-authenticate"),
        [
            "ApiKey realm=\"ringway\"",
            "Basic realm=\"ringway\", charset=\"UTF-8\""
        ]
    );
    assert_eq!(send(&gw, "/", &basic("acme", "wrong")).status, 401);
    assert_eq!(send(&gw, "/", &basic("nobody", "open-sesame")).status, 401);
    assert_eq!(send(&gw, "/", "authorization: Basic !!!\r\n").status, 401);
    // Verified once, then from the shard's cache; a bearer token beside an API key passes on.
    for _ in 0..3 {
        assert_eq!(send(&gw, "/", &basic("acme", "open-sesame")).status, 200);
    }
    let bearer = send(
        &gw,
        "/",
        "x-api-key: acme-key-0001\r\nauthorization: Bearer t0k\r\n",
    );
    assert_eq!(bearer.status, 200);
    let got = up.received();
    assert_eq!(got.len(), 4);
    assert_eq!(got[0].header_all("x-consumer"), ["acme"]);
    assert!(
        got[0].header("authorization").is_none(),
        "basic credentials stay"
    );
    assert_eq!(got[3].header_all("authorization"), ["Bearer t0k"]);
    let lines = log_lines(&log, 8);
    let auth: Vec<&str> = lines[..4]
        .iter()
        .map(|l| l["auth"].as_str().unwrap())
        .collect();
    assert_eq!(
        auth,
        [
            "no_credentials",
            "bad_password",
            "unknown_user",
            "malformed_basic"
        ]
    );
    assert_eq!(lines[4]["consumer"], "acme");
    let text = std::fs::read_to_string(log.path()).unwrap();
    assert!(!text.contains("open-sesame") && !text.contains(&hash));
});

mod jwt {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use base64::Engine;

    pub fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A P-256 signing key and its JWKS entry.
    pub struct Signer {
        pair: EcdsaKeyPair,
        pub kid: String,
    }

    impl Signer {
        pub fn new(kid: &str) -> Signer {
            let rng = SystemRandom::new();
            let pkcs8 =
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            Signer {
                pair,
                kid: kid.into(),
            }
        }

        pub fn jwk(&self) -> String {
            let point = self.pair.public_key().as_ref();
            format!(
                r#"{{"kty":"EC","crv":"P-256","kid":"{}","use":"sig","x":"{}","y":"{}"}}"#,
                self.kid,
                b64(&point[1..33]),
                b64(&point[33..65])
            )
        }

        /// A token with these claims (JSON), signed ES256 under this key's kid.
        pub fn token(&self, claims: &str) -> String {
            let header = format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, self.kid);
            let signed = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
            let sig = self
                .pair
                .sign(&SystemRandom::new(), signed.as_bytes())
                .unwrap();
            format!("{signed}.{}", b64(sig.as_ref()))
        }
    }

    pub fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }
}

both_drivers!(jwts_from_a_jwks_file_name_their_consumer, |driver| {
    let up = echo();
    let log = TempPath::new("log");
    let dir = TempPath::new("jwks");
    std::fs::create_dir_all(dir.path()).unwrap();
    let jwks = dir.path().join("jwks.json");
    let (k1, k2) = (jwt::Signer::new("k1"), jwt::Signer::new("k2"));
    std::fs::write(&jwks, format!(r#"{{"keys":[{}]}}"#, k1.jwk())).unwrap();
    let toml = format!(
        "[[listeners]]\nname = \"main\"\nlisten = \"{{listen}}\"\n\n{}\
         [[jwt_providers]]\nname = \"idp\"\nissuer = \"https://idp.test\"\naudiences = [\"orders\"]\n\
         jwks_file = \"{}\"\n\n\
         [[consumers]]\nname = \"acme\"\ngroups = [\"partners\"]\njwt_subject = \"acme-service\"\n\n\
         [[routes]]\nname = \"api\"\nupstream = \"u\"\nauth = [\"jwt:idp\"]\n\n\
         [access_log]\npath = \"{}\"\n",
        upstream_toml("u", &[(up.addr(), 1)], ""),
        jwks.display(),
        log.path().display(),
    );
    let gw = Gateway::start(driver, &toml);
    let now = jwt::now();
    let claims = |sub: &str, aud: &str, exp: u64| {
        format!(r#"{{"iss":"https://idp.test","aud":"{aud}","sub":"{sub}","exp":{exp}}}"#)
    };
    let good = k1.token(&claims("acme-service", "orders", now + 300));
    let bearer = |t: &str| format!("authorization: Bearer {t}\r\n");

    let missing = send(&gw, "/", "");
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Bearer realm=\"ringway\"")
    );
    for _ in 0..2 {
        let ok = send(&gw, "/", &bearer(&good));
        assert_eq!(ok.status, 200);
    }
    let refused = [
        k1.token(&claims("acme-service", "orders", now - 120)),
        k1.token(&claims("acme-service", "billing", now + 300)),
        k1.token(&claims("someone-else", "orders", now + 300)),
        k2.token(&claims("acme-service", "orders", now + 300)),
        format!(
            "{}.{}.",
            jwt::b64(br#"{"alg":"none"}"#),
            jwt::b64(claims("acme-service", "orders", now + 300).as_bytes())
        ),
        "not-a-jwt".to_string(),
    ];
    for token in &refused {
        assert_eq!(send(&gw, "/", &bearer(token)).status, 401, "{token}");
    }
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header_all("x-consumer"), ["acme"]);
    assert_eq!(got[0].header_all("x-consumer-groups"), ["partners"]);
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {good}").as_str()),
        "tokens are forwarded"
    );
    let lines = log_lines(&log, 9);
    let reasons: Vec<&str> = lines[3..9]
        .iter()
        .map(|l| l["auth"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "expired_token",
            "token_claims",
            "unknown_subject",
            "invalid_token",
            "invalid_token",
            "malformed_token"
        ]
    );

    // Key rotation: the provider's keys are read again by a reload.
    std::fs::write(&jwks, format!(r#"{{"keys":[{}]}}"#, k2.jwk())).unwrap();
    gw.ctl(&["reload"]).expect_ok("reload");
    assert_eq!(
        send(&gw, "/", &bearer(&good)).status,
        401,
        "k1 was rotated out"
    );
    let rotated = k2.token(&claims("acme-service", "orders", now + 300));
    assert_eq!(send(&gw, "/", &bearer(&rotated)).status, 200);
});

both_drivers!(grpc_calls_refused_by_auth_get_grpc_statuses, |driver| {
    let up = echo();
    let log = TempPath::new("log");
    let gw = gateway(driver, &up, &log);
    let status = h2client::block_on(Duration::from_secs(20), async {
        let mut h2 = h2client::connect(gw.addr()).await;
        let mut req = h2client::request("POST", "/api/pkg.Svc/Call");
        req.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        let (resp, _) = h2.send.send_request(req, true).expect("a stream");
        let resp = resp.await.expect("an answer");
        (
            resp.status().as_u16(),
            resp.headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string()),
        )
    });
    assert_eq!(status, (200, Some("16".to_string())));
    assert_eq!(up.requests(), 0);
});
