//! A small deterministic generator (xorshift) for the unit tests' random operations.

/// Draws in `0..n` from a xorshift sequence started at `seed` (not zero).
pub fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}
