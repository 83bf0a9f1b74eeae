//! Small helpers for secrets: comparing without a timing leak, and random
//! identifiers and passwords from the system's source.

use ring::rand::SecureRandom;

/// Whether `a` equals `b`, comparing every byte (no early exit on the
/// first difference, so timing tells nothing about where they differ).
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `bytes` random bytes as lower-case hex, or `None` if the system's
/// random source fails.
pub fn random_hex(bytes: usize) -> Option<String> {
    let mut b = vec![0u8; bytes];
    ring::rand::SystemRandom::new().fill(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn equal_needs_every_byte_and_the_length() {
        assert!(super::equal(b"secret", b"secret"));
        assert!(!super::equal(b"secret", b"secreT"));
        assert!(!super::equal(b"secret", b"secret2"));
        assert!(super::equal(b"", b""));
    }

    #[test]
    fn random_hex_has_the_length_and_varies() {
        let (a, b) = (super::random_hex(16).unwrap(), super::random_hex(16).unwrap());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
