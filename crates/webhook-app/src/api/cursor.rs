//! The delivery search's keyset cursor: the last row's place in the order (creation time and
//! id) and a digest that ties it to the search's filters, as 64 hex digits. Opaque to clients;
//! one that was edited, cut, or copied to a search with other filters is refused (400). The
//! digest is not a secret and protects nothing: a cursor only says where a page starts, and
//! the wallet's own rows are the only ones any search reads.

use sha2::{Digest, Sha256};
use webhook_domain::DeliveryId;
use webhook_ports::SearchPosition;

use super::problem::Problem;

/// What the digest starts with: a new meaning of the bytes gets a new word.
const DOMAIN: &[u8] = b"webhookd delivery search cursor v1\n";
/// Creation time (8 bytes), id (16), digest (8).
const LENGTH: usize = 32;

fn digest(filters: &str, place: &[u8]) -> [u8; 8] {
    let mut hash = Sha256::new();
    hash.update(DOMAIN);
    hash.update(filters.as_bytes());
    hash.update(b"\n");
    hash.update(place);
    let full = hash.finalize();
    let mut short = [0; 8];
    short.copy_from_slice(&full[..8]);
    short
}

/// The cursor of a page that ends at `last`, for the search whose filters are `filters` (its
/// query string without `limit` and `cursor`).
pub(super) fn encode(filters: &str, last: SearchPosition) -> String {
    let micros = i64::try_from(last.created_at.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
    let mut bytes = Vec::with_capacity(LENGTH);
    bytes.extend_from_slice(&micros.to_be_bytes());
    bytes.extend_from_slice(last.id.as_uuid().as_bytes());
    let check = digest(filters, &bytes);
    bytes.extend_from_slice(&check);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The place `cursor` stands for in the search whose filters are `filters`.
///
/// # Errors
/// A 400 problem when it is not one this search's pages gave out.
pub(super) fn decode(filters: &str, cursor: &str) -> Result<SearchPosition, Problem> {
    let refused = || {
        Problem::bad_request(
            "cursor: not a cursor of this search; copy `next` from the previous page as it is, \
             with the same filters",
        )
    };
    if cursor.len() != LENGTH * 2 || !cursor.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    let bytes: Vec<u8> = (0..LENGTH)
        .map(|i| u8::from_str_radix(&cursor[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| refused())?;
    let (place, check) = bytes.split_at(16 + 8);
    if digest(filters, place) != check {
        return Err(refused());
    }
    let mut micros = [0; 8];
    micros.copy_from_slice(&place[..8]);
    let micros = i64::from_be_bytes(micros);
    let created_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .map_err(|_| refused())?;
    let id = uuid::Uuid::from_slice(&place[8..]).map_err(|_| refused())?;
    Ok(SearchPosition {
        created_at,
        id: DeliveryId::from_uuid(id),
    })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn place() -> SearchPosition {
        SearchPosition {
            created_at: datetime!(2026-01-01 00:00:00.123456 UTC),
            id: DeliveryId::from_uuid(uuid::Uuid::from_u128(0x1234)),
        }
    }

    #[test]
    fn a_cursor_reads_back_as_its_place() {
        let cursor = encode("state=exhausted", place());
        assert_eq!(cursor.len(), 64);
        assert_eq!(decode("state=exhausted", &cursor).unwrap(), place());
    }

    #[test]
    fn an_edited_cut_or_moved_cursor_is_refused() {
        let cursor = encode("state=exhausted", place());
        let mut edited = cursor.clone().into_bytes();
        edited[10] = if edited[10] == b'0' { b'1' } else { b'0' };
        for bad in [
            String::from_utf8(edited).unwrap(),
            cursor[..62].to_owned(),
            format!("{cursor}00"),
            "zz".repeat(32),
            String::new(),
        ] {
            assert!(decode("state=exhausted", &bad).is_err(), "{bad}");
        }
        assert!(decode("state=delivered", &cursor).is_err());
    }
}
