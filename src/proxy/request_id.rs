//! Request ids: a well-formed incoming `x-request-id` is kept, anything else is replaced by a new
//! UUID. Well-formed means 1–128 characters of `A-Z a-z 0-9 - _ . : /` — safe in logs and headers.

use std::cell::RefCell;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const MAX_LEN: usize = 128;

/// The id to use for this request: the client's if it is well-formed, otherwise a fresh one.
pub fn resolve(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&X_REQUEST_ID) {
        Some(value) if is_well_formed(value.as_bytes()) => value.clone(),
        _ => generate(),
    }
}

/// Bytes of the per-thread block that new ids are written into (about 450 ids).
const BLOCK_BYTES: usize = 16 * 1024;

thread_local! {
    /// The rest of this thread's current block of id text.
    static BLOCK: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// A random (version 4) UUID.
///
/// The text is cut from a per-thread block shared by the ids made from it, so that making an
/// id, and each of the clones it goes through (the log record, the upstream request, the
/// response), allocates nothing: a copy of a standalone `HeaderValue` allocates on its first
/// clone. A block is freed when the last id cut from it is dropped.
pub fn generate() -> HeaderValue {
    let mut buffer = uuid::Uuid::encode_buffer();
    let text = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    let bytes = BLOCK.with(|block| {
        let mut block = block.borrow_mut();
        if block.capacity() < text.len() {
            *block = BytesMut::with_capacity(BLOCK_BYTES);
        }
        block.extend_from_slice(text.as_bytes());
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(bytes).expect("a UUID is a valid header value")
}

pub fn is_well_formed(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_good_ids_and_replaces_bad_ones() {
        let mut headers = HeaderMap::new();
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-123_x.y"));
        assert_eq!(resolve(&headers), "abc-123_x.y");
        headers.insert(
            &X_REQUEST_ID,
            HeaderValue::from_static("bad id with spaces"),
        );
        assert_ne!(resolve(&headers), "bad id with spaces");
        let long = "a".repeat(129);
        headers.insert(&X_REQUEST_ID, HeaderValue::from_str(&long).unwrap());
        assert_eq!(resolve(&headers).len(), 36);
        headers.insert(&X_REQUEST_ID, HeaderValue::from_static("<script>"));
        assert!(is_well_formed(resolve(&headers).as_bytes()));
    }

    #[test]
    fn generated_ids_are_version_4_uuids_and_differ() {
        let first = generate();
        let parsed = uuid::Uuid::parse_str(first.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(generate(), first);
    }

    #[test]
    fn ids_cut_from_one_block_stay_intact_across_blocks() {
        // More ids than a block holds: each keeps its own text after the next ones are cut.
        let ids: Vec<HeaderValue> = (0..2 * BLOCK_BYTES / 36 + 3).map(|_| generate()).collect();
        let mut seen = std::collections::HashSet::new();
        for id in &ids {
            let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
            assert_eq!(parsed.get_version_num(), 4);
            assert!(seen.insert(id.clone()), "{id:?} repeated");
        }
    }
}
