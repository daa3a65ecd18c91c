//! Unsigned LEB128 varints (`docs/hpks.md` §1.2).

use bytes::BufMut;

/// The longest encoding of a `u64`: ceil(64 / 7) bytes.
pub(crate) const MAX_VARINT_LEN: usize = 10;

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended inside the varint; more bytes may complete it.
    Incomplete,
    /// The value does not fit in 64 bits (§1.2).
    Overflow,
    /// The value was encoded with more bytes than needed (§1.2).
    NonCanonical,
}

/// Appends `value` in its shortest encoding.
pub(crate) fn put(dst: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        // Truncation keeps the low seven bits, which is the point.
        dst.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// How many bytes [`put`] writes for `value`.
pub(crate) fn len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Reads one varint from the start of `src`: its value and its length in bytes.
pub(crate) fn get(src: &[u8]) -> Result<(u64, usize), VarintError> {
    let mut value = 0u64;
    for (i, &byte) in src.iter().take(MAX_VARINT_LEN).enumerate() {
        let bits = u64::from(byte & 0x7f);
        // The tenth byte carries bit 63 only; anything more is past u64.
        if i == MAX_VARINT_LEN - 1 && byte > 1 {
            return Err(VarintError::Overflow);
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            // §1.2: a zero last byte after the first means a padded encoding,
            // which would give one value two spellings.
            if i > 0 && byte == 0 {
                return Err(VarintError::NonCanonical);
            }
            return Ok((value, i + 1));
        }
    }
    if src.len() >= MAX_VARINT_LEN {
        Err(VarintError::Overflow)
    } else {
        Err(VarintError::Incomplete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, value);
        out
    }

    #[test]
    fn known_encodings() {
        assert_eq!(encoded(0), [0x00]);
        assert_eq!(encoded(127), [0x7f]);
        assert_eq!(encoded(128), [0x80, 0x01]);
        assert_eq!(encoded(300), [0xac, 0x02]);
        assert_eq!(encoded(u64::MAX).len(), MAX_VARINT_LEN);
    }

    #[test]
    fn round_trip_at_every_width() {
        for shift in 0..64 {
            for value in [(1u64 << shift) - 1, 1u64 << shift, (1u64 << shift) + 1] {
                let bytes = encoded(value);
                assert_eq!(bytes.len(), len(value), "len of {value}");
                assert_eq!(get(&bytes), Ok((value, bytes.len())), "value {value}");
            }
        }
        let max = encoded(u64::MAX);
        assert_eq!(get(&max), Ok((u64::MAX, MAX_VARINT_LEN)));
    }

    #[test]
    fn rejects_what_does_not_fit() {
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(get(&too_big), Err(VarintError::Overflow));
        assert_eq!(get(&[0x80; 11]), Err(VarintError::Overflow));
    }

    #[test]
    fn rejects_padding_and_reports_incomplete() {
        assert_eq!(get(&[0x80, 0x00]), Err(VarintError::NonCanonical));
        assert_eq!(get(&[0x81, 0x80, 0x00]), Err(VarintError::NonCanonical));
        assert_eq!(get(&[]), Err(VarintError::Incomplete));
        assert_eq!(get(&[0x80, 0x80]), Err(VarintError::Incomplete));
    }
}
