//! Record framing: every stored value is `[version u8][crc32 LE u32][payload]`, checked
//! on every read, so a flipped byte is detected wherever it lands.

use super::StorageError;

/// Version of the framing and of the payload formats inside it.
pub const FORMAT_VERSION: u8 = 1;
const HEADER_BYTES: usize = 5;

/// Frames `payload` with the format version and its CRC-32.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn describe(key: &[u8]) -> String {
    if key.iter().all(|b| b.is_ascii_graphic()) {
        String::from_utf8_lossy(key).into_owned()
    } else {
        hex::encode(key)
    }
}

/// Checks a framed record and returns its payload.
pub fn decode<'a>(key: &[u8], record: &'a [u8]) -> Result<&'a [u8], StorageError> {
    let corrupt = |why: String| StorageError::Corrupt {
        key: describe(key),
        why,
    };
    if record.len() < HEADER_BYTES {
        return Err(corrupt(format!(
            "record of {} bytes is shorter than its {HEADER_BYTES}-byte header",
            record.len()
        )));
    }
    if record[0] != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            record[0]
        )));
    }
    let stored = u32::from_le_bytes([record[1], record[2], record[3], record[4]]);
    let payload = &record[HEADER_BYTES..];
    let actual = crc32fast::hash(payload);
    if stored != actual {
        return Err(corrupt(format!(
            "CRC-32 mismatch (stored {stored:08x}, computed {actual:08x})"
        )));
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_detected() {
        let payload = b"stratus record";
        let record = encode(payload);
        assert_eq!(decode(b"k", &record).unwrap(), payload);
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 0x01;
            assert!(decode(b"k", &bad).is_err(), "flip at byte {i} undetected");
        }
        assert!(decode(b"k", &record[..3]).is_err());
        assert_eq!(decode(b"k", &encode(b"")).unwrap(), b"");
    }
}
