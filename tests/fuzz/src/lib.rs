//! Helpers the fuzz targets share: where to cut an input to see it arrive in pieces.

/// Up to 15 prefix lengths spread over an input of `len` bytes, each shorter than it.
pub fn prefixes(len: usize) -> impl Iterator<Item = usize> {
    (1..16)
        .map(move |k| len * k / 16)
        .filter(move |&c| c > 0 && c < len)
}

/// The input cut into pieces of pseudo-random sizes (1 to 64 bytes), the same for the same
/// input: a reader's view of bytes that arrive in several reads.
pub fn pieces(data: &[u8]) -> Vec<&[u8]> {
    // FNV-1a of the input seeds an xorshift, so a crash reproduces from its input alone.
    let mut state = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let take = (1 + (state % 64) as usize).min(rest.len());
        let (piece, tail) = rest.split_at(take);
        out.push(piece);
        rest = tail;
    }
    out
}
