//! The config loader on arbitrary text: never a panic, and every error names a position
//! inside the text, a key and a one-line message, in file order.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if reaches_outside(src) {
        return;
    }
    let Err(errors) = ringway_config::parse(src, "fuzz.toml") else {
        return;
    };
    assert!(!errors.0.is_empty());
    let lines: Vec<&str> = src.split('\n').collect();
    let mut previous = (0, 0);
    for e in &errors.0 {
        assert_eq!(e.file, "fuzz.toml");
        assert!(e.line >= 1 && e.line <= lines.len(), "{e}");
        let chars = lines[e.line - 1].chars().count();
        assert!(e.column >= 1 && e.column <= chars + 1, "{e}");
        assert!(!e.key.is_empty() && !e.message.is_empty(), "{e}");
        assert!(!e.message.contains('\n'), "{e}");
        assert!(
            (e.line, e.column) >= previous,
            "not in file order: {errors}"
        );
        previous = (e.line, e.column);
    }
});

/// Validation reads the files a config names (certificates, keys, CA bundles) and resolves
/// host names: a document that names a file outside the working directory (`/dev/zero` reads
/// forever) or a host to look up is skipped, so that a run depends on nothing but its input.
fn reaches_outside(src: &str) -> bool {
    const FILE_KEYS: [&str; 4] = ["cert", "key", "ca", "client_ca"];
    fn any_string(key: &str, value: &toml::Value, f: &dyn Fn(&str, &str) -> bool) -> bool {
        match value {
            toml::Value::String(s) => f(key, s),
            toml::Value::Array(items) => items.iter().any(|v| any_string(key, v, f)),
            toml::Value::Table(table) => table.iter().any(|(k, v)| any_string(k, v, f)),
            _ => false,
        }
    }
    let Ok(doc) = src.parse::<toml::Value>() else {
        // Not TOML: the loader stops at the syntax error.
        return false;
    };
    any_string("", &doc, &|key, s| {
        let file_outside = FILE_KEYS.contains(&key) && (s.starts_with('/') || s.contains(".."));
        let host_to_resolve = s.parse::<std::net::SocketAddr>().is_err()
            && s.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && !host.contains(':') && port.parse::<u16>().is_ok()
            });
        file_outside || host_to_resolve
    })
}
