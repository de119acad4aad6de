//! Request bodies: content type, size, nesting depth and shape are checked before a handler
//! runs, and each refusal is a problem body that says what was wrong and where.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use super::problem::Problem;
use super::state::ApiState;

/// A JSON body of type `T`, refused with 415, 413, 400 or 422 problem bodies.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<ApiState> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Problem> {
        if !is_json(req.headers()) {
            return Err(unsupported_media_type());
        }
        let bytes = read_body(req, state).await?;
        parse(&bytes, state.limits.max_json_depth).map(JsonBody)
    }
}

/// A body that may be absent: an empty body is `None`, anything else must be JSON of type `T`.
#[derive(Debug)]
pub(crate) struct OptionalJsonBody<T>(pub(crate) Option<T>);

impl<T: DeserializeOwned> FromRequest<ApiState> for OptionalJsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, Problem> {
        let json = is_json(req.headers());
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(OptionalJsonBody(None));
        }
        if !json {
            return Err(unsupported_media_type());
        }
        parse(&bytes, state.limits.max_json_depth).map(|v| OptionalJsonBody(Some(v)))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.len() > "application/+json".len()
            && essence[..12].eq_ignore_ascii_case("application/")
            && essence.to_ascii_lowercase().ends_with("+json"))
}

fn unsupported_media_type() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported-media-type",
        "The body must be JSON",
    )
    .detail("Content-Type: must be application/json")
}

async fn read_body(req: Request, state: &ApiState) -> Result<Bytes, Problem> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "The body is too large",
            )
            .detail(format!(
                "the body must be at most {} bytes",
                state.limits.max_body_bytes
            ))
        } else {
            Problem::bad_request(format!("the body could not be read: {}", e.body_text()))
        }
    })
}

/// Parses `bytes` as a `T` (an object): 400 when it is not JSON (or nests deeper than
/// `max_depth`), 422 when it is JSON of the wrong shape, naming the field.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8], max_depth: usize) -> Result<T, Problem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::bad_request(
            "the body is empty; send a JSON object",
        ));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(Problem::bad_request("the body is not valid UTF-8"));
    }
    if webhook_domain::json_nesting_depth(bytes) > max_depth {
        return Err(Problem::bad_request(format!(
            "the body nests objects and arrays deeper than {max_depth} levels"
        )));
    }
    // Every body of this API is an object; serde would read an array positionally.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(
        first,
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    ) {
        return Err(Problem::unprocessable("the body must be a JSON object"));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                if path == "." {
                    Problem::unprocessable(inner.to_string())
                } else {
                    Problem::unprocessable(format!("{path}: {inner}"))
                }
            }
            _ => Problem::bad_request(format!("the body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::bad_request(format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[allow(dead_code)]
        name: String,
    }

    #[test]
    fn errors_tell_malformed_from_misshapen() {
        let malformed = parse::<Shape>(b"{\"name\": ", 8).unwrap_err();
        assert_eq!(malformed.status, 400);
        let trailing = parse::<Shape>(br#"{"name": "a"} x"#, 8).unwrap_err();
        assert_eq!(trailing.status, 400);
        let unknown = parse::<Shape>(br#"{"name": "a", "nmae": 1}"#, 8).unwrap_err();
        assert_eq!(unknown.status, 422);
        assert!(unknown.detail.unwrap().contains("nmae"));
        let wrong_type = parse::<Shape>(br#"{"name": 5}"#, 8).unwrap_err();
        assert_eq!(wrong_type.status, 422);
        assert!(wrong_type.detail.unwrap().starts_with("name: "));
        let deep = parse::<serde_json::Value>(&[b'['; 9], 8).unwrap_err();
        assert_eq!(deep.status, 400);
        let array = parse::<Shape>(br#"["a"]"#, 8).unwrap_err();
        assert_eq!(array.status, 422);
        assert!(array.detail.unwrap().contains("object"));
        assert!(parse::<Shape>(br#"{"name": "a"}"#, 8).is_ok());
        assert_eq!(parse::<Shape>(b"  ", 8).unwrap_err().status, 400);
        assert_eq!(parse::<Shape>(b"\xff\xfe", 8).unwrap_err().status, 400);
    }
}
