//! Listings in pages: the offset and limit a client asks for (`PageQuery`) and Identus's page
//! shape of the answer (`Paged`), with its links to the next and previous pages.

use super::problem::Problem;

/// Offset and limit of a listing, from the query string.
#[derive(Debug, Clone, Copy, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Rows to skip (default 0), at most 2^63 - 1.
    #[serde(default)]
    #[param(maximum = 9_223_372_036_854_775_807_u64)]
    pub(super) offset: Option<u64>,
    /// Rows to return, 1 to 1000 (default 100).
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub(super) limit: Option<u32>,
}

const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;
/// The largest offset: both databases count rows with signed 64-bit integers, and the
/// document promises no more.
const MAX_OFFSET: u64 = i64::MAX.unsigned_abs();

impl PageQuery {
    pub(super) fn page(self) -> Result<webhook_ports::Page, Problem> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Problem::bad_request(format!(
                "limit: must be between 1 and {MAX_PAGE_SIZE}, got {limit}"
            )));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > MAX_OFFSET {
            return Err(Problem::bad_request(format!(
                "offset: must be between 0 and {MAX_OFFSET}, got {offset}"
            )));
        }
        Ok(webhook_ports::Page { offset, limit })
    }
}

/// Identus's page shape: `{self, kind, pageOf, next?, previous?, contents}`. One more row than
/// asked tells whether a next page exists.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Paged<T> {
    #[serde(rename = "self")]
    self_: String,
    kind: &'static str,
    page_of: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<String>,
    contents: Vec<T>,
}

impl<T> Paged<T> {
    /// `found` was fetched with `limit + 1`; `extra` is appended to the links' query strings.
    pub(super) fn new(
        kind: &'static str,
        path: &str,
        extra: &str,
        page: webhook_ports::Page,
        mut found: Vec<T>,
    ) -> Self {
        let has_next = found.len() > page.limit as usize;
        found.truncate(page.limit as usize);
        Self::of_page(kind, path, extra, page, found, has_next)
    }

    /// A page of `contents`, at most `limit`, with a `next` link when `has_next`.
    pub(super) fn of_page(
        kind: &'static str,
        path: &str,
        extra: &str,
        page: webhook_ports::Page,
        contents: Vec<T>,
        has_next: bool,
    ) -> Self {
        let limit = page.limit;
        let link = |offset: u64| format!("{path}?offset={offset}&limit={limit}{extra}");
        Self {
            self_: link(page.offset),
            kind,
            page_of: path.to_owned(),
            next: has_next.then(|| link(page.offset + u64::from(limit))),
            previous: (page.offset > 0).then(|| link(page.offset.saturating_sub(u64::from(limit)))),
            contents,
        }
    }
}

/// The page with one more row than asked, to learn whether a next one exists.
pub(super) fn probe(page: webhook_ports::Page) -> webhook_ports::Page {
    webhook_ports::Page {
        offset: page.offset,
        limit: page.limit + 1,
    }
}
