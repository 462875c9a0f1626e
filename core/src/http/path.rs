//! Request paths as routing and the upstream see them: one spelling per resource, so that no
//! encoding of a path can reach a route (or skip one, with its auth and ACL) that its plain
//! spelling would not.
//!
//! [`normalize`] applies, in place and in this order:
//! 1. Percent-encodings of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, and the
//!    hex digits of the others upper-cased (RFC 3986 sections 6.2.2.1 and 6.2.2.2). `%00` is
//!    refused; so are `%2F` and `%5C` (an encoded `/` or `\`, which a server behind the gateway
//!    may decode into a separator the router never saw) unless the listener keeps them, and
//!    then they stay encoded, never separators. A `%` without two hex digits is refused.
//! 2. Runs of `/` become one.
//! 3. Dot segments are removed (RFC 3986 section 5.2.4): `/a/./b/../c` is `/a/c`, and `..`
//!    never climbs above the root. A path that ended in a dot segment keeps its final `/`.
//!
//! The query is not touched. The result is what routing matches and what the upstream
//! receives.

/// What to do with `%2F` and `%5C` in a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodedSlashes {
    /// 400: the request is refused.
    Reject,
    /// Passed on encoded, as part of a segment.
    Keep,
}

/// Normalises `path` (the part before `?`, starting with `/`) in place; returns its new
/// length, never more than the old. An error names why the path is refused (400).
pub fn normalize(path: &mut [u8], slashes: EncodedSlashes) -> Result<usize, &'static str> {
    if !needs_work(path) {
        return Ok(path.len());
    }
    let len = decode_unreserved(path, slashes)?;
    Ok(remove_dot_segments(&mut path[..len]))
}

/// Whether any step could change `path`: most paths pass with one scan.
#[inline]
fn needs_work(path: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in path {
        if b == b'%' || (prev == b'/' && (b == b'/' || b == b'.')) {
            return true;
        }
        prev = b;
    }
    false
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Step 1; returns the decoded length.
fn decode_unreserved(path: &mut [u8], slashes: EncodedSlashes) -> Result<usize, &'static str> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let (mut r, mut w) = (0, 0);
    while r < path.len() {
        let b = path[r];
        if b != b'%' {
            path[w] = b;
            r += 1;
            w += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            path.get(r + 1).copied().and_then(hex),
            path.get(r + 2).copied().and_then(hex),
        ) else {
            return Err("malformed percent-encoding in path");
        };
        let v = hi << 4 | lo;
        match v {
            0 => return Err("encoded NUL in path"),
            b'/' | b'\\' if slashes == EncodedSlashes::Reject => {
                return Err("encoded slash or backslash in path")
            }
            v if is_unreserved(v) => {
                path[w] = v;
                w += 1;
            }
            v => {
                path[w] = b'%';
                path[w + 1] = HEX[usize::from(v >> 4)];
                path[w + 2] = HEX[usize::from(v & 15)];
                w += 3;
            }
        }
        r += 3;
    }
    Ok(w)
}

/// Steps 2 and 3 on a path that starts with `/`; returns the new length. Segments are copied
/// forward (the write position never passes the read position), and a `..` moves the write
/// position back to the start of the segment before it.
fn remove_dot_segments(path: &mut [u8]) -> usize {
    if path.first() != Some(&b'/') {
        return path.len();
    }
    let len = path.len();
    // `w`: end of the output, which always starts with `/` and ends without one until the
    // end, where a final `/` is put back where the input had one (or ended in a dot segment).
    let mut w = 0;
    let mut r = 0;
    let mut trailing = false;
    while r < len {
        // At a `/`: skip the run of them.
        while r < len && path[r] == b'/' {
            r += 1;
        }
        let start = r;
        while r < len && path[r] != b'/' {
            r += 1;
        }
        let segment = start..r;
        let last = r >= len;
        match &path[segment.clone()] {
            b"" => trailing = true,
            b"." => trailing = last,
            b".." => {
                // Back to the start of the previous segment (its `/`), or stay at the root.
                while w > 0 && path[w - 1] != b'/' {
                    w -= 1;
                }
                w = w.saturating_sub(1);
                trailing = last;
            }
            _ => {
                path[w] = b'/';
                path.copy_within(segment.clone(), w + 1);
                w += 1 + segment.len();
                trailing = false;
            }
        }
    }
    if trailing || w == 0 {
        path[w] = b'/';
        w += 1;
    }
    w
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
