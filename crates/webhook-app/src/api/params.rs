//! Request parameters in the path and the query string, parsed into what the handlers need;
//! a malformed one is a 400 problem naming the parameter. Bodies are `json`'s.

use super::problem::Problem;

/// Parses an id from a path segment: a malformed one is a 400 that names the parameter.
pub(super) fn path_id<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, Problem> {
    text.parse()
        .map_err(|_| Problem::bad_request(format!("{name}: must be a UUID, got {text:?}")))
}

/// A query string of type `T`; a malformed one is a 400 problem.
pub(super) fn query<T: serde::de::DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, Problem> {
    axum::extract::Query::<T>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| Problem::bad_request(e.body_text()))
}

/// Parses an RFC 3339 time from the query string: a malformed one is a 400 that names the
/// parameter.
pub(super) fn timestamp(text: &str, name: &str) -> Result<webhook_domain::Timestamp, Problem> {
    webhook_domain::Timestamp::parse(text).map_err(|e| {
        Problem::bad_request(format!(
            "{name}: must be an RFC 3339 time such as 2026-01-01T00:00:00Z ({e}); got {text:?}"
        ))
    })
}
