//! FNV-1a (64-bit): a tiny, stable, non-cryptographic hash for content digests (OpenAPI
//! `?hash=`, the race simulator's trace digest) and for hash maps whose keys come from the
//! server's own tables (metrics labels), where SipHash's protection against chosen collisions
//! buys nothing and its cost per short key shows.

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h = Fnv1a::default();
    std::hash::Hasher::write(&mut h, bytes);
    h.0
}

/// FNV-1a as a [`std::hash::Hasher`] (`HashMap<K, V, BuildHasherDefault<Fnv1a>>`).
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // The reference vectors of the FNV specification.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
