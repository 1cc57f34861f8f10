//! Lock tokens: 160 random bits from the operating system, hex-encoded.

use rand::rngs::OsRng;
use rand::TryRngCore;

/// Number of random bytes in a token (160 bits, above the 128 the distlock
/// page asks for).
pub const TOKEN_BYTES: usize = 20;

/// A fresh token from the OS CSPRNG, as 40 lowercase hex characters.
///
/// Falls back to the thread-local generator (itself seeded from the OS) only
/// if the OS source fails, which it does not on supported platforms.
pub fn new_token() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    if OsRng.try_fill_bytes(&mut bytes).is_err() {
        rand::fill(&mut bytes);
    }
    let mut out = String::with_capacity(TOKEN_BYTES * 2);
    for b in bytes {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_hex_and_distinct() {
        let a = new_token();
        let b = new_token();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
