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
