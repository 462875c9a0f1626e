//! The response head parser on arbitrary bytes, as the answer to each kind of request that
//! changes its framing: it never panics, what it returns lies within the input, and every
//! prefix parses to "incomplete" or to the whole input's answer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_core::http::h1::{parse_response, Method, ResponseBody};

/// Small, so that 'head too large' is within the fuzzer's reach.
const MAX_HEAD: usize = 2048;

fuzz_target!(|data: &[u8]| {
    for method in [Method::Get, Method::Head, Method::Connect] {
        let mut headers = Vec::new();
        let whole = parse_response(data, MAX_HEAD, &mut headers, method);
        if let Ok(Some(head)) = &whole {
            assert!(head.head_len <= data.len().min(MAX_HEAD));
            assert!((100..=599).contains(&head.status));
            for span in
                std::iter::once(head.reason).chain(headers.iter().flat_map(|h| [h.name, h.value]))
            {
                assert!(span.start <= span.end && span.end as usize <= head.head_len);
            }
            if method == Method::Head {
                assert_eq!(head.body, ResponseBody::None);
            }
        }
        for cut in ringway_fuzz::prefixes(data.len()) {
            let part = parse_response(&data[..cut], MAX_HEAD, &mut Vec::new(), method);
            match (&part, &whole) {
                (Ok(None), Ok(Some(head))) => assert!(cut < head.head_len, "complete head unseen"),
                (Ok(None), _) => {}
                (Ok(Some(a)), Ok(Some(b))) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
                (Err(a), Err(b)) => assert_eq!(a, b, "prefix of {cut} bytes"),
                _ => panic!("prefix of {cut} bytes: {part:?}, whole: {whole:?}"),
            }
        }
    }
});
