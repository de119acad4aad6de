//! The web console: three static files compiled into the binary (`console/`), served at
//! `/console` beside the API, outside its base path. The page is a client of the public REST
//! API and nothing more: it holds no key of its own and this module reads none, so the console
//! adds no privilege. The only thing rendered here is the page's `<meta>` naming the API's base
//! path and the version.
//!
//! Every answer carries a Content-Security-Policy that lets the page load only these files and
//! talk only to its own origin (no inline script or style, no other host, no framing), with
//! `nosniff` and no referrer.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

const PAGE: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// What the page may load and where it may connect: its own files and its own origin only.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The console's routes, for the API's base path `base_path` (which the page's requests use).
pub(crate) fn router(base_path: &str) -> Router {
    let page = render_page(base_path, env!("CARGO_PKG_VERSION"));
    Router::new()
        .route(
            "/console",
            get({
                let page = page.clone();
                move || async move { asset("text/html; charset=utf-8", page) }
            }),
        )
        .route(
            "/console/",
            get(move || async move { asset("text/html; charset=utf-8", page) }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT.to_owned()) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE.to_owned()) }),
        )
}

/// The page with its two values filled in, escaped for an HTML attribute.
fn render_page(base_path: &str, version: &str) -> String {
    PAGE.replace("{{API_BASE}}", &escape_attribute(base_path))
        .replace("{{VERSION}}", &escape_attribute(version))
}

fn escape_attribute(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// One of the files, with the headers every console answer carries. `no-cache` makes the
/// browser revalidate, so an upgraded binary's files are used at once.
fn asset(content_type: &'static str, body: String) -> Response {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    (StatusCode::OK, headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_base_path_escaped() {
        let page = render_page("/a\"<b>", "1.2.3");
        assert!(page.contains(r#"content="/a&quot;&lt;b&gt;""#), "{page}");
        assert!(page.contains(r#"content="1.2.3""#), "{page}");
        assert!(!page.contains("{{"), "a placeholder is left: {page}");
    }

    /// The relative luminance of `#rrggbb`, as WCAG 2 defines it.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&hex[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    /// The value of the stylesheet's custom property `--name`.
    fn colour(name: &str) -> &'static str {
        let at = STYLE.find(&format!("--{name}: ")).unwrap() + name.len() + 4;
        &STYLE[at..at + 7]
    }

    #[test]
    fn text_colours_keep_a_contrast_of_at_least_4_5() {
        for (text, background) in [
            ("fg", "bg"),
            ("muted", "bg"),
            ("muted", "panel"),
            ("fg", "panel"),
            ("accent", "bg"),
            ("accent-fg", "accent"),
            ("ok", "ok-bg"),
            ("bad", "bad-bg"),
            ("warn", "warn-bg"),
            ("info", "info-bg"),
        ] {
            let (a, b) = (luminance(colour(text)), luminance(colour(background)));
            let ratio = (a.max(b) + 0.05) / (a.min(b) + 0.05);
            assert!(ratio >= 4.5, "--{text} on --{background}: {ratio:.2}");
        }
    }

    #[test]
    fn the_files_load_nothing_from_another_host_and_run_no_inline_code() {
        // The SVG namespace is a name, not an address the page loads.
        let script = SCRIPT.replace("'http://www.w3.org/2000/svg'", "");
        for (name, text) in [("index.html", PAGE), ("console.js", script.as_str())] {
            for needle in [
                "http://",
                "https://",
                "//cdn",
                "eval(",
                "innerHTML",
                "outerHTML",
            ] {
                assert!(!text.contains(needle), "{name} contains {needle:?}");
            }
        }
        // The one script is an external file: no inline <script> body, no inline handlers.
        assert_eq!(PAGE.matches("<script").count(), 1);
        assert!(PAGE.contains(r#"<script src="/console/console.js" defer></script>"#));
        let inline_handler = PAGE.split(" on").skip(1).any(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!inline_handler, "an inline event handler in index.html");
        assert!(!PAGE.contains("style="), "an inline style in index.html");
    }
}
