//! `tls` of listeners and upstreams, with certificates rcgen makes in a temporary folder.

use std::path::PathBuf;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};

use crate::model::{ClientAuth, KeyFormat, TlsVersion};
use crate::validate::test_util::{errors, parse_ok, TempDir, BASE};

/// 2030-01-02T00:00:00Z, the notAfter of `a.pem`.
const A_NOT_AFTER: i64 = 1_893_542_400;

/// A private key of a kind rustls cannot sign with (X25519, in PKCS #8).
const X25519_KEY: &str = "-----BEGIN PRIVATE KEY-----\n\
    MC4CAQAwBQYDK2VuBCIEIAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g\n\
    -----END PRIVATE KEY-----\n";

/// The files the tests name, in a folder of their own:
/// - `a.pem`, `a.key`: self-signed for `a.example` and `*.A.example`, until 2030-01-02;
/// - `b.pem`, `b.key`: for `b.example`, issued by `ca.pem`, the CA after the leaf;
/// - `ca.pem`: that CA;
/// - `old.pem`, `old.key`: expired in 2001;
/// - `junk.txt`: no PEM at all; `two.key`: two keys; `x25519.key`: an unsupported key;
///   `garbage.pem`: a PEM certificate that is not one; `chain-garbage.pem`: `a.pem` and that.
struct Files {
    dir: TempDir,
    ca_der: Vec<u8>,
}

impl Files {
    fn new(test: &str) -> Files {
        let dir = TempDir::new(test);
        let names = vec!["a.example".to_owned(), "*.A.example".to_owned()];
        let mut params = CertificateParams::new(names).unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        let a_key = KeyPair::generate().unwrap();
        let a = params.self_signed(&a_key).unwrap();
        dir.write("a.pem", &a.pem());
        dir.write("a.key", &a_key.serialize_pem());

        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        dir.write("ca.pem", &ca.pem());
        let b_key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["b.example".to_owned()]).unwrap();
        let b = params.signed_by(&b_key, &ca, &ca_key).unwrap();
        dir.write("b.pem", &format!("{}{}", b.pem(), ca.pem()));
        dir.write("b.key", &b_key.serialize_pem());

        let mut params = CertificateParams::new(vec!["old.example".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let old_key = KeyPair::generate().unwrap();
        dir.write("old.pem", &params.self_signed(&old_key).unwrap().pem());
        dir.write("old.key", &old_key.serialize_pem());

        dir.write("junk.txt", "not a certificate\n");
        let two = format!("{}{}", a_key.serialize_pem(), b_key.serialize_pem());
        dir.write("two.key", &two);
        dir.write("x25519.key", X25519_KEY);
        let garbage = "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n";
        dir.write("garbage.pem", garbage);
        dir.write("chain-garbage.pem", &format!("{}{garbage}", a.pem()));
        Files {
            dir,
            ca_der: ca.der().to_vec(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name`, as TOML text.
    fn at(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A listener on line 1 with its `[listeners.tls]` table on line 4 and `lines` after it.
fn listener(lines: &str) -> String {
    format!("{BASE}[listeners.tls]\n{lines}\n")
}

/// The 1-based column of the value after `key = ` on 1-based line `line` of `src`.
fn column(src: &str, line: usize, key: &str) -> usize {
    let text = src.lines().nth(line - 1).unwrap();
    text.find(&format!("{key} = ")).unwrap() + key.len() + 4
}

#[test]
fn a_listener_with_two_certificates() {
    let f = Files::new("tls-two");
    let src = listener(&format!(
        "certificates = [\n  {{ cert = \"{}\", key = \"{}\" }},\n  {{ cert = \"{}\", key = \"{}\" }},\n]",
        f.at("a.pem"),
        f.at("a.key"),
        f.at("b.pem"),
        f.at("b.key"),
    ));
    let config = parse_ok(&src);
    let tls = config.listeners[0].tls.as_ref().unwrap();
    let [a, b] = tls.certificates.as_slice() else {
        panic!("two certificates expected: {tls:?}");
    };
    assert_eq!(a.cert_file, f.path("a.pem"));
    assert_eq!(a.key_file, f.path("a.key"));
    assert_eq!(a.names, ["a.example", "*.a.example"]);
    assert_eq!(a.not_after, A_NOT_AFTER);
    assert_eq!(a.subject, "CN=rcgen self signed cert");
    assert_eq!(a.chain.len(), 1);
    assert_eq!(a.key.format, KeyFormat::Pkcs8);
    assert_eq!(b.names, ["b.example"]);
    assert_eq!(b.chain.len(), 2);
    assert_eq!(b.chain[1], f.ca_der);
    assert!(b.not_after > A_NOT_AFTER);
    // The defaults.
    assert_eq!(tls.client_ca, None);
    assert_eq!(tls.client_auth, ClientAuth::Required);
    assert_eq!(tls.min_version, TlsVersion::V1_2);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(10));
    assert!(tls.session_tickets);
    assert_eq!(tls.session_cache, 20_000);
    assert_eq!(tls.client_cert_header, None);
    assert_eq!(config.listeners[0].tls, config.clone().listeners[0].tls);
}

#[test]
fn every_listener_setting() {
    let f = Files::new("tls-settings");
    let src = listener(&format!(
        "certificates = [{{ cert = \"{}\", key = \"{}\" }}]\nclient_ca = \"{}\"\n\
         client_auth = \"optional\"\nmin_version = \"1.3\"\nhandshake_timeout = \"3s\"\n\
         session_tickets = false\nsession_cache = 0\nclient_cert_header = \"X-Client-Cert\"",
        f.at("old.pem"),
        f.at("old.key"),
        f.at("ca.pem"),
    ));
    let config = parse_ok(&src);
    let tls = config.listeners[0].tls.as_ref().unwrap();
    // An expired certificate is served (and shown) until a reload replaces it.
    assert_eq!(tls.certificates[0].not_after, 978_307_200);
    let ca = tls.client_ca.as_ref().unwrap();
    assert_eq!(
        (ca.file.as_path(), ca.certs.as_slice()),
        (f.path("ca.pem").as_path(), [f.ca_der.clone()].as_slice())
    );
    assert_eq!(tls.client_auth, ClientAuth::Optional);
    assert_eq!(tls.min_version, TlsVersion::V1_3);
    assert_eq!(tls.handshake_timeout, Duration::from_secs(3));
    assert!(!tls.session_tickets);
    assert_eq!(tls.session_cache, 0);
    assert_eq!(tls.client_cert_header.as_deref(), Some("x-client-cert"));
    let required = src.replace("\"optional\"", "\"required\"");
    let tls = parse_ok(&required).listeners.remove(0).tls.unwrap();
    assert_eq!(tls.client_auth, ClientAuth::Required);
}

#[test]
fn listeners_may_share_certificate_files() {
    let f = Files::new("tls-shared");
    let tls = format!(
        "[listeners.tls]\ncertificates = [{{ cert = \"{}\", key = \"{}\" }}]\n",
        f.at("a.pem"),
        f.at("a.key"),
    );
    let src = format!(
        "{BASE}{tls}[[listeners]]\nname = \"m\"\nlisten = \"127.0.0.1:8081\"\n{tls}\
         [[listeners]]\nname = \"plain\"\nlisten = \"127.0.0.1:8082\"\n"
    );
    let config = parse_ok(&src);
    assert_eq!(config.listeners[0].tls, config.listeners[1].tls);
    assert!(config.listeners[0].tls.is_some());
    assert_eq!(config.listeners[2].tls, None);
}

#[test]
fn each_unusable_file_is_an_error_at_the_key_that_names_it() {
    let f = Files::new("tls-files");
    let entries = [
        ("missing.pem", "a.key"),
        ("junk.txt", "a.key"),
        ("a.pem", "junk.txt"),
        ("a.pem", "two.key"),
        ("a.pem", "b.key"),
        ("a.pem", "x25519.key"),
        ("garbage.pem", "a.key"),
        ("chain-garbage.pem", "a.key"),
        ("missing.pem", "missing.key"),
    ];
    let lines: Vec<String> = entries
        .iter()
        .map(|(cert, key)| {
            format!(
                "  {{ cert = \"{}\", key = \"{}\" }},",
                f.at(cert),
                f.at(key)
            )
        })
        .collect();
    let src = listener(&format!("certificates = [\n{}\n]", lines.join("\n")));
    // Entry i is on line 6 + i.
    let at = |i: usize, field: &str, reason: &str| {
        let file = if field == "cert" {
            entries[i].0
        } else {
            entries[i].1
        };
        format!(
            "t.toml:{}:{}: listeners[0].tls.certificates[{i}].{field}: \"{}\": {reason}",
            6 + i,
            column(&src, 6 + i, field),
            f.at(file),
        )
    };
    let errors = errors(&src);
    let not_found = "cannot read it: No such file or directory (os error 2)";
    let expected = [
        at(0, "cert", not_found),
        at(1, "cert", "no PEM certificate in it"),
        at(2, "key", "no private key in it (expected a PEM \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")"),
        at(3, "key", "2 private keys in it; it must hold exactly one"),
        at(4, "key", &format!("the private key does not match the certificate in \"{}\"", f.at("a.pem"))),
        at(5, "key", "unsupported private key type; use RSA, ECDSA (P-256, P-384 or P-521) or Ed25519"),
        at(6, "cert", "certificate 1 does not parse: "),
        at(7, "cert", "certificate 2 does not parse: "),
        at(8, "cert", not_found),
        at(8, "key", not_found),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, want) in errors.iter().zip(&expected) {
        // The parser's own reason follows "does not parse: ".
        assert!(error.starts_with(want.as_str()), "{error}\n  wanted {want}");
    }
}

#[test]
fn an_encrypted_key_says_so() {
    let f = Files::new("tls-encrypted");
    f.dir.write(
        "enc.key",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAECAwQ=\n-----END ENCRYPTED PRIVATE KEY-----\n",
    );
    let src = listener(&format!(
        "certificates = [{{ cert = \"{}\", key = \"{}\" }}]",
        f.at("a.pem"),
        f.at("enc.key")
    ));
    assert_eq!(
        errors(&src),
        [format!(
            "t.toml:5:{}: listeners[0].tls.certificates[0].key: \"{}\": the private key is encrypted; Ringway needs it unencrypted",
            column(&src, 5, "key"),
            f.at("enc.key")
        )]
    );
}

#[test]
fn listener_rules() {
    let f = Files::new("tls-rules");
    let cert = format!(
        "certificates = [{{ cert = \"{}\", key = \"{}\" }}]",
        f.at("a.pem"),
        f.at("a.key")
    );
    let cases = [
        ("certificates = []", "t.toml:5:16: listeners[0].tls.certificates: at least one certificate is required".to_owned()),
        ("min_version = \"1.2\"", "t.toml:4:1: listeners[0].tls: missing field `certificates`".to_owned()),
        ("certificates = [{ cert = \"a.pem\" }]", "t.toml:5:17: listeners[0].tls.certificates[0]: missing field `key`".to_owned()),
        (&format!("{cert}\nclient_auth = \"optional\""), "t.toml:6:15: listeners[0].tls.client_auth: client_auth needs client_ca (the CAs that client certificates are verified against)".to_owned()),
        (&format!("{cert}\nclient_cert_header = \"x-client\""), "t.toml:6:22: listeners[0].tls.client_cert_header: client_cert_header needs client_ca (the CAs that client certificates are verified against)".to_owned()),
        (&format!("{cert}\nclient_ca = \"{}\"\nclient_auth = \"maybe\"", f.at("ca.pem")), "t.toml:7:15: listeners[0].tls.client_auth: unknown client_auth \"maybe\"; expected \"required\" or \"optional\"".to_owned()),
        (&format!("{cert}\nclient_ca = \"{}\"\nclient_cert_header = \"x client\"", f.at("ca.pem")), "t.toml:7:22: listeners[0].tls.client_cert_header: \"x client\" is not a valid header name (an HTTP token)".to_owned()),
        (&format!("{cert}\nclient_ca = \"{}\"\nclient_cert_header = \"Transfer_Encoding\"", f.at("ca.pem")), "t.toml:7:22: listeners[0].tls.client_cert_header: \"transfer_encoding\" is a header the gateway frames or writes itself; choose another name, such as \"x-client-cert\"".to_owned()),
        (&format!("{cert}\nmin_version = \"1.1\""), "t.toml:6:15: listeners[0].tls.min_version: TLS 1.0 and 1.1 are not supported (\"1.1\"); expected \"1.2\" or \"1.3\"".to_owned()),
        (&format!("{cert}\nmin_version = \"TLSv1.3\""), "t.toml:6:15: listeners[0].tls.min_version: unknown TLS version (\"TLSv1.3\"); expected \"1.2\" or \"1.3\"".to_owned()),
        (&format!("{cert}\nmin_version = 1.3"), "t.toml:6:15: listeners[0].tls.min_version: invalid type: floating point `1.3`, expected a string".to_owned()),
        (&format!("{cert}\nsession_cache = -1"), "t.toml:6:17: listeners[0].tls.session_cache: must be between 0 and 1000000, got -1".to_owned()),
        (&format!("{cert}\nhandshake_timeout = \"0s\""), "t.toml:6:21: listeners[0].tls.handshake_timeout: must be greater than zero".to_owned()),
        (&format!("{cert}\nsession_tickets = \"yes\""), "t.toml:6:19: listeners[0].tls.session_tickets: invalid type: string \"yes\", expected a boolean".to_owned()),
        (&format!("{cert}\ncertificate = \"a.pem\""), "t.toml:6:1: listeners[0].tls.certificate: unknown field `certificate`, expected one of `certificates`, `client_ca`, `client_auth`, `min_version`, `handshake_timeout`, `session_tickets`, `session_cache`, `client_cert_header`".to_owned()),
    ];
    for (lines, want) in cases {
        assert_eq!(errors(&listener(lines)), [want], "{lines}");
    }
    // A missing client_ca is its own error, without knock-on ones about client_auth.
    let src = listener(&format!(
        "{cert}\nclient_ca = \"{}\"\nclient_auth = \"optional\"",
        f.at("nope.pem")
    ));
    assert_eq!(
        errors(&src),
        [format!(
            "t.toml:6:13: listeners[0].tls.client_ca: \"{}\": cannot read it: No such file or directory (os error 2)",
            f.at("nope.pem")
        )]
    );
}

#[test]
fn unknown_keys_in_a_certificate_entry() {
    let src = listener(
        "certificates = [{ cert = \"/nonexistent/a.pem\", key = \"/nonexistent/a.key\", chain = \"c.pem\" }]",
    );
    let not_found = "cannot read it: No such file or directory (os error 2)";
    assert_eq!(
        errors(&src),
        [
            format!("t.toml:5:26: listeners[0].tls.certificates[0].cert: \"/nonexistent/a.pem\": {not_found}"),
            format!("t.toml:5:54: listeners[0].tls.certificates[0].key: \"/nonexistent/a.key\": {not_found}"),
            "t.toml:5:76: listeners[0].tls.certificates[0].chain: unknown field `chain`, expected `cert` or `key`".to_owned(),
        ]
    );
}

#[test]
fn relative_paths_resolve_from_the_config_files_folder() {
    let f = Files::new("tls-relative");
    let conf = f.dir.path().join("conf");
    std::fs::create_dir_all(conf.join("certs")).unwrap();
    std::fs::copy(f.path("a.pem"), conf.join("certs/a.pem")).unwrap();
    std::fs::copy(f.path("a.key"), conf.join("certs/a.key")).unwrap();
    let src = format!(
        "{BASE}[listeners.tls]\ncertificates = [{{ cert = \"certs/a.pem\", key = \"./certs/a.key\" }}]\n\
         client_ca = \"../ca.pem\"\n"
    );
    let file = f.dir.write("conf/gw.toml", &src);
    let config = crate::load(&file).unwrap();
    let tls = config.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates[0].cert_file, conf.join("certs/a.pem"));
    assert_eq!(tls.certificates[0].key_file, conf.join("./certs/a.key"));
    assert_eq!(tls.client_ca.as_ref().unwrap().file, conf.join("../ca.pem"));
    assert_eq!(tls.certificates[0].names, ["a.example", "*.a.example"]);

    // A name that is no path (or has no folder) resolves from the current folder.
    let current = std::env::current_dir().unwrap();
    for name in ["<default>", "t.toml"] {
        let src = listener("certificates = [{ cert = \"no/such.pem\", key = \"no/such.key\" }]");
        let errors = crate::parse(&src, name).unwrap_err();
        let cert = current.join("no/such.pem");
        assert!(
            errors.0[0]
                .message
                .starts_with(&format!("\"{}\": cannot read it", cert.display())),
            "{errors}"
        );
    }
}

#[test]
fn upstream_tls_with_every_key() {
    let f = Files::new("tls-upstream");
    let src = format!(
        "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = [{{ address = \"127.0.0.1:9443\" }}]\n\
         [upstreams.tls]\nca = \"{}\"\nsni = \"Orders.Internal\"\ncert = \"{}\"\nkey = \"{}\"\n\
         [[upstreams]]\nname = \"v\"\nendpoints = []\n[upstreams.tls]\n\
         [[upstreams]]\nname = \"w\"\nendpoints = []\ntls = {{ sni = \"::1\" }}\n",
        f.at("ca.pem"),
        f.at("b.pem"),
        f.at("b.key"),
    );
    let config = parse_ok(&src);
    let tls = config.upstreams[0].tls.as_ref().unwrap();
    let ca = tls.ca.as_ref().unwrap();
    assert_eq!(ca.file, f.path("ca.pem"));
    assert_eq!(ca.certs, std::slice::from_ref(&f.ca_der));
    assert_eq!(tls.sni.as_deref(), Some("orders.internal"));
    let client = tls.client_cert.as_ref().unwrap();
    assert_eq!(client.cert_file, f.path("b.pem"));
    assert_eq!(client.names, ["b.example"]);
    assert_eq!(client.chain.len(), 2);
    // An empty table: TLS, verified against the system's roots, without a client certificate.
    let tls = config.upstreams[1].tls.as_ref().unwrap();
    assert_eq!((&tls.ca, &tls.sni, &tls.client_cert), (&None, &None, &None));
    let tls = config.upstreams[2].tls.as_ref().unwrap();
    assert_eq!(tls.sni.as_deref(), Some("::1"));
    assert_eq!(
        config.upstreams.iter().filter(|u| u.tls.is_none()).count(),
        0
    );
}

#[test]
fn upstream_tls_rules() {
    let f = Files::new("tls-upstream-rules");
    let upstream = |lines: &str| {
        format!("{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\n[upstreams.tls]\n{lines}\n")
    };
    let cases = [
        (format!("cert = \"{}\"", f.at("a.pem")), "t.toml:8:8: upstreams[0].tls.key: cert needs key: the private key of the client certificate".to_owned()),
        (format!("key = \"{}\"", f.at("a.key")), "t.toml:8:7: upstreams[0].tls.cert: key needs cert: the client certificate of this private key".to_owned()),
        ("sni = \"a_b.example\"".to_owned(), "t.toml:8:7: upstreams[0].tls.sni: invalid sni \"a_b.example\": labels may hold only letters, digits and '-'; expected a DNS name or an IP address".to_owned()),
        ("sni = \"*.example.com\"".to_owned(), "t.toml:8:7: upstreams[0].tls.sni: invalid sni \"*.example.com\": labels may hold only letters, digits and '-'; expected a DNS name or an IP address".to_owned()),
        ("sni = \"orders.internal:443\"".to_owned(), "t.toml:8:7: upstreams[0].tls.sni: invalid sni \"orders.internal:443\": labels may hold only letters, digits and '-'; expected a DNS name or an IP address".to_owned()),
        (format!("ca = \"{}\"", f.at("junk.txt")), format!("t.toml:8:6: upstreams[0].tls.ca: \"{}\": no PEM certificate in it", f.at("junk.txt"))),
        (format!("cert = \"{}\"\nkey = \"{}\"", f.at("b.pem"), f.at("a.key")), format!("t.toml:9:7: upstreams[0].tls.key: \"{}\": the private key does not match the certificate in \"{}\"", f.at("a.key"), f.at("b.pem"))),
        ("verify = false".to_owned(), "t.toml:8:1: upstreams[0].tls.verify: unknown field `verify`, expected one of `ca`, `sni`, `cert`, `key`".to_owned()),
        ("ca = \"\"".to_owned(), "t.toml:8:6: upstreams[0].tls.ca: must not be empty".to_owned()),
    ];
    for (lines, want) in cases {
        assert_eq!(errors(&upstream(&lines)), [want], "{lines}");
    }
}

#[test]
fn garbage_in_a_ca_bundle() {
    let f = Files::new("tls-ca-garbage");
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(f.path("ca.pem")).unwrap(),
        std::fs::read_to_string(f.path("garbage.pem")).unwrap()
    );
    let file = f.dir.write("mixed.pem", &bundle);
    let src = format!(
        "{BASE}[[upstreams]]\nname = \"u\"\nendpoints = []\ntls = {{ ca = \"{}\" }}\n",
        file.display()
    );
    let errors = errors(&src);
    let want = format!(
        "t.toml:7:14: upstreams[0].tls.ca: \"{}\": certificate 2 does not parse: ",
        file.display()
    );
    assert!(
        errors.len() == 1 && errors[0].starts_with(&want),
        "{errors:#?}"
    );
}
