//! Mattermost-style 26-character identifiers (spec §0.2), as rtcd's `random.NewID` makes them.
//!
//! Owns: the encoding only. The 16 random bytes are an argument, so callers choose the
//! randomness source (the crate does no I/O and has no RNG).

/// Length of an ID in characters.
pub const ID_LEN: usize = 26;

/// rtcd/Mattermost's base32 alphabet (RFC 4648 bit order, different symbols).
pub const ID_ALPHABET: &[u8; 32] = b"ybndrfg8ejkmcpqxot1uwisza345h769";

/// Encodes 16 random bytes as a UUIDv4 in the 26-char ID form.
///
/// The version and variant bits are set first (`b[6] = 0x4?`, `b[8] = 0b10??_????`), then the
/// 128 bits are base32-encoded most significant bit first; the 26th symbol carries the last
/// 3 bits followed by two zero bits, and the padding that would follow is dropped.
pub fn new_id(random: [u8; 16]) -> String {
    let mut b = random;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    // 130 bits = 26 symbols of 5 bits: the 128-bit value shifted left by 2.
    let v = u128::from_be_bytes(b);
    let mut id = String::with_capacity(ID_LEN);
    for i in 0..ID_LEN {
        let symbol = if i < ID_LEN - 1 {
            (v >> (123 - 5 * i)) & 0x1f
        } else {
            (v & 0x07) << 2
        };
        id.push(char::from(ID_ALPHABET[symbol as usize]));
    }
    id
}

/// `true` for exactly 26 characters, all from [`ID_ALPHABET`].
///
/// Stricter than Mattermost's `IsValidId` (any 26 alphanumerics); every ID that rtcd or
/// Mattermost generates passes. Such IDs never contain `_`, which track IDs rely on.
pub fn is_valid_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|c| ID_ALPHABET.contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors computed independently with Python:
    //   b[6]=(b[6]&0x0f)|0x40; b[8]=(b[8]&0x3f)|0x80
    //   base64.b32encode(b).translate(std→"ybndrfg8ejkmcpqxot1uwisza345h769")[:26]
    #[test]
    fn new_id_matches_independently_computed_vectors() {
        let cases: [([u8; 16], &str); 4] = [
            ([0x00; 16], "yyyyyyyyybyybyyyyyyyyyyyyy"),
            ([0xff; 16], "9999999997899x99999999999h"),
            (
                [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                "yyyoryaryidyxnyjbefoadeqbh",
            ),
            (
                [
                    0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, 0x01, 0x23, 0x45, 0x67, 0x89,
                    0xab, 0xcd, 0xef,
                ],
                "54s5756k93fm7yjdeiuauk6p7h",
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(new_id(bytes), want);
        }
    }

    #[test]
    fn new_ids_are_valid_ids() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..256 {
            let mut b = [0u8; 16];
            for chunk in b.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                chunk.copy_from_slice(&seed.to_le_bytes());
            }
            let id = new_id(b);
            assert!(is_valid_id(&id), "{id}");
            assert!(!id.contains('_'));
        }
    }

    #[test]
    fn is_valid_id_rejects_wrong_length_and_foreign_characters() {
        assert!(is_valid_id("yyyoryaryidyxnyjbefoadeqbh"));
        assert!(!is_valid_id("yyyoryaryidyxnyjbefoadeqb"));
        assert!(!is_valid_id("yyyoryaryidyxnyjbefoadeqbhy"));
        // 'l', 'v', '0', '2' and upper case are not in the alphabet.
        assert!(!is_valid_id("lyyoryaryidyxnyjbefoadeqbh"));
        assert!(!is_valid_id("0yyoryaryidyxnyjbefoadeqbh"));
        assert!(!is_valid_id("Yyyoryaryidyxnyjbefoadeqbh"));
        assert!(!is_valid_id("yyyoryaryidyxnyjbefoadeq_h"));
        assert!(!is_valid_id(""));
        // 26 bytes but not 26 characters.
        assert!(!is_valid_id("éyyoryaryidyxnyjbefoadeqb"));
    }
}
