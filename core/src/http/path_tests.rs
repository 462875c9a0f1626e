use proptest::prelude::*;

use super::*;

fn norm(path: &str) -> Result<String, &'static str> {
    norm_with(path, EncodedSlashes::Reject)
}

fn norm_with(path: &str, slashes: EncodedSlashes) -> Result<String, &'static str> {
    let mut bytes = path.as_bytes().to_vec();
    let n = normalize(&mut bytes, slashes)?;
    bytes.truncate(n);
    Ok(String::from_utf8(bytes).unwrap())
}

#[test]
fn plain_paths_pass_unchanged() {
    for p in ["/", "/a", "/a/b/", "/a.b/c..d/.e", "/a-b_c~d", "/x;y=1/z"] {
        assert_eq!(norm(p).unwrap(), p);
    }
}

#[test]
fn rfc_3986_dot_segment_examples() {
    // Section 5.4's results, seen as paths.
    assert_eq!(norm("/a/b/c/./../../g").unwrap(), "/a/g");
    assert_eq!(norm("/b/c/./g").unwrap(), "/b/c/g");
    assert_eq!(norm("/b/c/.").unwrap(), "/b/c/");
    assert_eq!(norm("/b/c/./").unwrap(), "/b/c/");
    assert_eq!(norm("/b/c/..").unwrap(), "/b/");
    assert_eq!(norm("/b/c/../").unwrap(), "/b/");
    assert_eq!(norm("/b/c/../g").unwrap(), "/b/g");
    assert_eq!(norm("/b/c/../..").unwrap(), "/");
    assert_eq!(norm("/b/c/../../g").unwrap(), "/g");
    assert_eq!(norm("/b/c/../../../g").unwrap(), "/g");
    assert_eq!(norm("/b/c/g.").unwrap(), "/b/c/g.");
    assert_eq!(norm("/b/c/..g").unwrap(), "/b/c/..g");
    assert_eq!(norm("/b/c/g..").unwrap(), "/b/c/g..");
    assert_eq!(norm("/b/c/./../g").unwrap(), "/b/g");
    assert_eq!(norm("/..").unwrap(), "/");
    assert_eq!(norm("/.").unwrap(), "/");
}

#[test]
fn slashes_merge() {
    assert_eq!(norm("//a///b//").unwrap(), "/a/b/");
    assert_eq!(norm("//").unwrap(), "/");
    assert_eq!(norm("/a//../b").unwrap(), "/b");
}

#[test]
fn unreserved_escapes_decode_and_others_upper_case() {
    assert_eq!(norm("/%61dmin").unwrap(), "/admin");
    assert_eq!(norm("/%2e%2E/admin").unwrap(), "/admin");
    assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
    assert_eq!(norm("/a%7eb%2D").unwrap(), "/a~b-");
    assert_eq!(norm("/a%20b%3fc%c3%a9").unwrap(), "/a%20b%3Fc%C3%A9");
    // `%25` is `%` itself: it stays encoded, and is never decoded twice.
    assert_eq!(norm("/%2561dmin").unwrap(), "/%2561dmin");
}

#[test]
fn refused_encodings() {
    assert!(norm("/a%00b").is_err());
    assert!(norm("/a%2Fb").is_err());
    assert!(norm("/a%2fb").is_err());
    assert!(norm("/a%5Cb").is_err());
    assert!(norm("/a%").is_err());
    assert!(norm("/a%4").is_err());
    assert!(norm("/a%zz").is_err());
    assert_eq!(
        norm_with("/a%2fb/%5c/..", EncodedSlashes::Keep).unwrap(),
        "/a%2Fb/"
    );
    assert!(norm_with("/a%00", EncodedSlashes::Keep).is_err());
}

fn path_strategy() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%41".to_string()),
        Just("%2F".to_string()),
        Just("%3a".to_string()),
        "[a-z.~%]{1,4}",
    ];
    proptest::collection::vec(segment, 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

proptest! {
    #[test]
    fn normal_forms_are_fixed_points(path in path_strategy()) {
        for slashes in [EncodedSlashes::Reject, EncodedSlashes::Keep] {
            let Ok(once) = norm_with(&path, slashes) else { continue };
            prop_assert!(once.len() <= path.len());
            prop_assert!(once.starts_with('/'));
            prop_assert_eq!(norm_with(&once, slashes).unwrap(), once.clone());
            prop_assert!(!once.contains("//"), "{}", once);
            for seg in once.split('/') {
                prop_assert!(seg != "." && seg != "..", "{}", once);
            }
            // No escape of an unreserved character, and none in lower case, is left.
            let b = once.as_bytes();
            for (i, _) in once.match_indices('%') {
                let v = u8::from_str_radix(&once[i + 1..i + 3], 16).unwrap();
                prop_assert!(!is_unreserved(v), "{}", once);
                prop_assert!(!b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase());
            }
        }
    }

    #[test]
    fn any_bytes_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut path = vec![b'/'];
        path.extend_from_slice(&bytes);
        let before = path.len();
        if let Ok(n) = normalize(&mut path, EncodedSlashes::Keep) {
            prop_assert!(n <= before);
        }
    }
}
