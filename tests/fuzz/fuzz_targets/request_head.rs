//! The request head parser on arbitrary bytes: it never panics, what it returns lies within
//! the input, and the answer does not depend on how the head arrives (every prefix parses to
//! "incomplete" or to the whole input's answer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_core::http::h1::{parse_request, RequestLimits};

/// Small limits, so that 414 and 431 are within the fuzzer's reach.
const LIMITS: RequestLimits = RequestLimits {
    max_request_line: 512,
    max_head: 2048,
};

fuzz_target!(|data: &[u8]| {
    let mut headers = Vec::new();
    let whole = parse_request(data, &LIMITS, &mut headers);
    if let Ok(Some(head)) = &whole {
        assert!(head.head_len <= data.len().min(LIMITS.max_head));
        for span in [head.method_span, head.target, head.path]
            .into_iter()
            .chain(head.host)
            .chain(headers.iter().flat_map(|h| [h.name, h.value]))
        {
            assert!(span.start <= span.end && span.end as usize <= head.head_len);
        }
        let path = head.path.get(data);
        assert!(head.path_len_without_query <= path.len());
        assert!(!path[..head.path_len_without_query].contains(&b'?'));
        assert!(path.iter().all(u8::is_ascii_graphic) && !path.contains(&b'#'));
    }
    for cut in ringway_fuzz::prefixes(data.len()) {
        let part = parse_request(&data[..cut], &LIMITS, &mut Vec::new());
        match (&part, &whole) {
            (Ok(None), Ok(Some(head))) => assert!(cut < head.head_len, "complete head unseen"),
            (Ok(None), _) => {}
            (Ok(Some(a)), Ok(Some(b))) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (Err(a), Err(b)) => assert_eq!(a, b, "prefix of {cut} bytes"),
            _ => panic!("prefix of {cut} bytes: {part:?}, whole: {whole:?}"),
        }
    }
});
