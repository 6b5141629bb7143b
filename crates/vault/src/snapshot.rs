//! The payload of a snapshot: the signed envelopes of a document's chunks,
//! bundled and compressed. Pure: bytes in, bytes out.
//!
//! Why not an Automerge `save()` signed by whoever compacted: that would put
//! every member's changes under the compactor's signature, so a runner
//! compacting could forge an admin's cancel or another runner's result.
//! Instead each chunk keeps its writer's own signed envelope (as it was
//! before encryption, see `bridge_crypto::Opened::signed_bytes`) and its
//! file name; a reader verifies every one exactly as it verifies a chunk
//! file. The snapshot file itself is then sealed like any other (signed by
//! the compactor, encrypted to the epoch's data key), so its content and
//! size per chunk stay hidden from the host.
//!
//! ```text
//! xz(
//!   b"BRIDGE-SNAPSHOT-1\n"
//!   u32 big-endian number of entries
//!   per entry: u16 name length, name (`<sha256>.chunk`),
//!              u32 length, signed envelope bytes
//! )
//! ```

use std::io::{Read, Write};

use liblzma::bufread::XzDecoder;
use liblzma::stream::{Check, Filters, IGNORE_CHECK, LzmaOptions, Stream};
use liblzma::write::XzEncoder;

const MAGIC: &[u8] = b"BRIDGE-SNAPSHOT-1\n";
/// The xz preset. Measured on a compacted 1000-task document (879 KB of
/// signed envelopes): deflate 125 KB, zstd -3 115 KB, zstd -19 101 KB in
/// 0.5 s, xz -6 94 KB in 0.3 s (decompressed in 5 ms). Signatures and
/// hashes do not compress; the rest repeats across the whole document,
/// beyond deflate's 32 KB window. Then on the 841 KB snapshot of a batch of
/// 1000 finished tasks (`xz -T1`, one core): xz -6 79.1 KB in 0.24 s, xz
/// -2 83.0 KB in 0.04 s, xz -1 84.7 KB in 0.03 s. A snapshot is made at the
/// end of a `bridge work` that ran many tasks, on the worker's time: 5 %
/// more bytes for a sixth of the time (issue 18, item 1).
const XZ_PRESET: u32 = 2;
/// The dictionary size of [`XZ_PRESET`] (xz's documentation of its presets).
const PRESET_DICT: u64 = 2 << 20;
/// The largest payload accepted once decompressed: a bound on what a
/// hostile file can make a reader allocate.
pub const MAX_PLAIN_LEN: u64 = 2 << 30;
/// The most memory the decompressor may use: a bound on the dictionary a
/// hostile file can declare (xz -9's 64 MiB needs 65 MiB; bridge writes
/// at most xz -6's 8 MiB).
const DECODER_MEMLIMIT: u64 = 128 << 20;

/// One bundled chunk: its file name and its signed envelope.
pub type Entry = (String, Vec<u8>);

/// Why a snapshot could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// A count or length over what the format holds.
    #[error("{0} too large for a snapshot")]
    TooLarge(&'static str),
    /// The compressor failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a snapshot's payload is refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not xz, or a broken xz stream.
    #[error("the snapshot does not decompress: {0}")]
    Decompress(std::io::Error),
    /// Over [`MAX_PLAIN_LEN`] once decompressed.
    #[error("the snapshot is larger than 2 GiB once decompressed")]
    TooLarge,
    /// It does not start with the format's magic line.
    #[error("the payload is not a bridge snapshot")]
    NotASnapshot,
    /// It ends inside an entry.
    #[error("the snapshot is truncated")]
    Truncated,
    /// An entry's name is not `<sha256>.chunk`.
    #[error("an entry's name is not a chunk file name")]
    BadEntryName,
    /// Bytes after the last entry.
    #[error("the snapshot has trailing bytes")]
    TrailingBytes,
}

/// Encodes `entries` (sorted by name by the caller, so that equal content
/// gives equal bytes).
pub fn encode(entries: &[Entry]) -> Result<Vec<u8>, EncodeError> {
    let plain_len = MAGIC.len() as u64
        + 4
        + entries
            .iter()
            .map(|(name, bytes)| 6 + name.len() as u64 + bytes.len() as u64)
            .sum::<u64>();
    let mut enc = XzEncoder::new_stream(Vec::with_capacity(1 << 16), encoder(plain_len)?);
    enc.write_all(MAGIC)?;
    let count = u32::try_from(entries.len()).map_err(|_| EncodeError::TooLarge("entries"))?;
    enc.write_all(&count.to_be_bytes())?;
    for (name, bytes) in entries {
        let name_len = u16::try_from(name.len()).map_err(|_| EncodeError::TooLarge("a name"))?;
        let len = u32::try_from(bytes.len()).map_err(|_| EncodeError::TooLarge("an entry"))?;
        enc.write_all(&name_len.to_be_bytes())?;
        enc.write_all(name.as_bytes())?;
        enc.write_all(&len.to_be_bytes())?;
        enc.write_all(bytes)?;
    }
    Ok(enc.finish()?)
}

/// The preset's encoder with its dictionary no larger than the payload
/// needs. The dictionary sizes the match finder's tables (each page zeroed
/// by the kernel on first touch: 94 MB for xz -6's 8 MiB), which for a
/// snapshot of a few hundred KB cost more than the compression itself. A
/// dictionary at least as large as the payload finds every match the larger
/// one would, so the compressed bytes are the same but for the dictionary
/// size in the header.
fn encoder(plain_len: u64) -> Result<Stream, EncodeError> {
    let mut options = LzmaOptions::new_preset(XZ_PRESET).map_err(std::io::Error::from)?;
    // liblzma's smallest dictionary is 4 KiB.
    let dict = plain_len.next_power_of_two().clamp(4096, PRESET_DICT);
    options.dict_size(u32::try_from(dict).unwrap_or(PRESET_DICT as u32));
    let mut filters = Filters::new();
    filters.lzma2(&options);
    // No check of its own: the sealed envelope authenticates the payload.
    Ok(Stream::new_stream_encoder(&filters, Check::None).map_err(std::io::Error::from)?)
}

/// Decodes a payload; an error says what is wrong with it.
pub fn decode(payload: &[u8]) -> Result<Vec<Entry>, DecodeError> {
    // The stream's own check (CRC64 in snapshots written before) is not
    // computed: the payload was authenticated before it is decompressed
    // (its envelope's AEAD and signature), and computing it was a sixth of
    // decompressing (issue 18, item 3). Read straight from the slice, with
    // no buffer between.
    let stream = Stream::new_stream_decoder(DECODER_MEMLIMIT, IGNORE_CHECK)
        .map_err(|e| DecodeError::Decompress(e.into()))?;
    let mut plain = Vec::new();
    XzDecoder::new_stream(payload, stream)
        .take(MAX_PLAIN_LEN + 1)
        .read_to_end(&mut plain)
        .map_err(DecodeError::Decompress)?;
    if plain.len() as u64 > MAX_PLAIN_LEN {
        return Err(DecodeError::TooLarge);
    }
    let mut rest = plain.strip_prefix(MAGIC).ok_or(DecodeError::NotASnapshot)?;
    let count = u32::from_be_bytes(take::<4>(&mut rest)?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let name_len = u16::from_be_bytes(take::<2>(&mut rest)?) as usize;
        let name = take_slice(&mut rest, name_len)?;
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|n| is_chunk_file_name(n))
            .ok_or(DecodeError::BadEntryName)?
            .to_owned();
        let len = u32::from_be_bytes(take::<4>(&mut rest)?) as usize;
        let bytes = take_slice(&mut rest, len)?.to_vec();
        entries.push((name, bytes));
    }
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(entries)
}

/// `<64 lowercase hex>.chunk`
fn is_chunk_file_name(name: &str) -> bool {
    bridge_store::DocFolder::Chunks.file_hash(name).is_some()
}

fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], DecodeError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or(DecodeError::Truncated)?;
    *rest = tail;
    Ok(*head)
}

fn take_slice<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    let (head, tail) = rest.split_at_checked(n).ok_or(DecodeError::Truncated)?;
    *rest = tail;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(i: u8) -> String {
        format!("{}.chunk", hex::encode([i; 32]))
    }

    #[test]
    fn round_trip() {
        let entries = vec![(name(1), b"one".to_vec()), (name(2), vec![0; 10_000])];
        let bytes = encode(&entries).unwrap();
        assert!(bytes.len() < 200, "compressed: {}", bytes.len());
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&encode(&[]).unwrap()).unwrap(), vec![]);
    }

    // Snapshots written before carry xz's CRC64 check (not computed on
    // reading since issue 18, item 3): they read as they did.
    #[test]
    fn a_snapshot_with_a_crc64_check_reads_the_same() {
        let entries = vec![(name(1), b"one".to_vec()), (name(2), vec![7; 5_000])];
        let new = encode(&entries).unwrap();
        // The same plain bytes, compressed again as snapshots were.
        let mut plain = Vec::new();
        liblzma::read::XzDecoder::new(&new[..])
            .read_to_end(&mut plain)
            .unwrap();
        let stream = Stream::new_easy_encoder(2, Check::Crc64).unwrap();
        let mut enc = XzEncoder::new_stream(Vec::new(), stream);
        enc.write_all(&plain).unwrap();
        let old = enc.finish().unwrap();
        assert_ne!(old, new, "written with another check");
        assert_eq!(decode(&old).unwrap(), entries);
        assert_eq!(decode(&new).unwrap(), entries);
    }

    /// The CRC-32 (IEEE) an xz block header ends with.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in bytes {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
            }
        }
        !crc
    }

    // A member's snapshot may declare any dictionary size in its block
    // header; the decompressor would allocate it before reading a byte of
    // data (4 GiB, on every device that loads the document). Over the
    // bound, the snapshot is refused instead.
    #[test]
    fn a_snapshot_declaring_a_huge_dictionary_is_refused() {
        let mut bytes = encode(&[(name(1), b"one".to_vec())]).unwrap();
        // After the 12-byte stream header: the block header's size, its
        // flags (no sizes here), then the LZMA2 filter: id 0x21, one byte
        // of properties, the dictionary size.
        let start = 12;
        let size = (usize::from(bytes[start]) + 1) * 4;
        assert_eq!(bytes[start + 1] & 0xc0, 0, "no optional sizes");
        assert_eq!(&bytes[start + 2..start + 4], &[0x21, 0x01], "LZMA2");
        // 32: 256 MiB, twice the bound.
        bytes[start + 4] = 32;
        let crc = crc32(&bytes[start..start + size - 4]);
        bytes[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
        let err = decode(&bytes).expect_err("over the memory bound");
        assert!(matches!(err, DecodeError::Decompress(_)), "{err}");
        // The same header with a dictionary under the bound still reads:
        // only the size was refused.
        bytes[start + 4] = 20;
        let crc = crc32(&bytes[start..start + size - 4]);
        bytes[start + size - 4..start + size].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&bytes).unwrap(), vec![(name(1), b"one".to_vec())]);
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        let good = encode(&[(name(1), b"one".to_vec())]).unwrap();
        assert!(decode(b"").is_err());
        assert!(matches!(
            decode(b"not xz at all"),
            Err(DecodeError::Decompress(_))
        ));
        let mut enc = XzEncoder::new(Vec::new(), 1);
        enc.write_all(b"BRIDGE-SNAPSHOT-1\n\0\0\0\x05").unwrap();
        assert!(matches!(
            decode(&enc.finish().unwrap()),
            Err(DecodeError::Truncated)
        ));
        let mut enc = XzEncoder::new(Vec::new(), 1);
        enc.write_all(b"BRIDGE-SNAPSHOT-1\n\0\0\0\x01\0\x03abc\0\0\0\0")
            .unwrap();
        assert!(matches!(
            decode(&enc.finish().unwrap()),
            Err(DecodeError::BadEntryName)
        ));
        for cut in 0..good.len() {
            let _ = decode(&good[..cut]);
        }
    }
}
