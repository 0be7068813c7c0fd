//! The console at `/`: one page to subscribe, publish and watch the hub,
//! built into the binary (`console/` beside this file: plain HTML, CSS and
//! JavaScript, no build step).
//!
//! Every URL in the page is relative (`console/console.js`, `v1/events`), so
//! it works under a path prefix behind a proxy. The page runs under a
//! Content-Security-Policy that allows only its own script and style sheet
//! and requests to its own origin: no inline script, no `unsafe-inline`. The
//! script treats event data as untrusted text (never markup).
//!
//! Three small files are embedded with `include_bytes!` and served from a
//! table, with an ETag so a browser revalidates instead of downloading them
//! again. (rust-embed, poem's `embed` feature, reads the files from disk in
//! debug builds; the console must be in the binary in every build.)

use poem::http::{HeaderMap, HeaderValue, StatusCode, header};
use poem::web::{Data, Path};
use poem::{IntoResponse, Request, Response, handler};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::{ApiResponse, OpenApi};

use super::ApiTags;
use super::error::{ApiError, PROBLEM_JSON, Problem};

/// Whether the console is served (`console.enabled`).
#[derive(Debug, Clone, Copy)]
pub struct ConsoleEnabled(pub bool);

/// The page may run its own script and style sheet, and talk to its own
/// origin (the API, the stream); nothing else, and it can't be framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    /// The name under `/console/`, or `""` for the page itself at `/`.
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    /// A hash of `bytes`, sent as the ETag.
    hash: u64,
}

macro_rules! asset {
    ($name:literal, $file:literal, $content_type:literal) => {{
        const BYTES: &[u8] = include_bytes!(concat!("console/", $file));
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: BYTES,
            hash: fnv1a(BYTES),
        }
    }};
}

static PAGE: Asset = asset!("", "index.html", "text/html; charset=utf-8");
static FILES: [Asset; 3] = [
    asset!("console.js", "console.js", "text/javascript; charset=utf-8"),
    asset!("console.css", "console.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "icon.svg", "image/svg+xml"),
];

/// FNV-1a, 64 bits: enough to tell two versions of a file apart, and
/// computable at compile time.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        index += 1;
    }
    hash
}

impl Asset {
    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }

    /// 304 when the browser's copy is current, else the file.
    fn respond(&'static self, request_headers: &HeaderMap) -> AssetResponse {
        let etag = self.etag();
        let current = request_headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == etag || tag == "*");
        AssetResponse {
            asset: self,
            etag,
            not_modified: current,
        }
    }
}

/// An embedded file with the console's security and caching headers.
pub struct AssetResponse {
    asset: &'static Asset,
    etag: String,
    not_modified: bool,
}

impl Payload for AssetResponse {
    const CONTENT_TYPE: &'static str = "text/html";

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some("The console page (HTML)"),
            ..MetaSchema::new("string")
        }))
    }
}

impl IntoResponse for AssetResponse {
    fn into_response(self) -> Response {
        let builder = Response::builder()
            // Revalidate every time (cheap with the ETag): a new ssehub
            // version must never run with last version's script.
            .header(header::CACHE_CONTROL, "no-cache")
            .header(header::ETAG, self.etag)
            .header(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            )
            .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
            .header(header::REFERRER_POLICY, "no-referrer");
        if self.not_modified {
            builder.status(StatusCode::NOT_MODIFIED).finish()
        } else {
            builder
                .header(header::CONTENT_TYPE, self.asset.content_type)
                .body(self.asset.bytes)
        }
    }
}

/// The problem document of a turned-off console, so the spec lists `404`
/// alone rather than every status of the publish routes.
pub struct ConsoleDisabled(ApiError);

impl Payload for ConsoleDisabled {
    const CONTENT_TYPE: &'static str = PROBLEM_JSON;

    fn schema_ref() -> MetaSchemaRef {
        <Problem as poem_openapi::types::Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Problem as poem_openapi::types::Type>::register(registry);
    }
}

impl IntoResponse for ConsoleDisabled {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

#[derive(ApiResponse)]
pub enum ConsoleResponse {
    /// The console. Its script, style sheet and icon are under `/console/`.
    #[oai(status = 200)]
    Page(AssetResponse),
    /// The browser's copy (`If-None-Match`) is current.
    #[oai(status = 304)]
    NotModified(AssetResponse),
    /// `console.enabled` is false.
    #[oai(status = 404)]
    Disabled(ConsoleDisabled),
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "console-disabled",
        "the console is turned off (console.enabled = false); the API is described at /docs",
    )
}

pub struct ConsoleApi;

#[OpenApi(tag = "ApiTags::Console")]
impl ConsoleApi {
    /// The console (HTML)
    ///
    /// Subscribe, publish and watch the hub from a browser: a page built into
    /// the binary. 404 when `console.enabled` is false.
    #[oai(path = "/", method = "get")]
    async fn page(&self, request: &Request, enabled: Data<&ConsoleEnabled>) -> ConsoleResponse {
        if !enabled.0.0 {
            return ConsoleResponse::Disabled(ConsoleDisabled(disabled()));
        }
        let page = PAGE.respond(request.headers());
        if page.not_modified {
            ConsoleResponse::NotModified(page)
        } else {
            ConsoleResponse::Page(page)
        }
    }
}

/// `GET /console/{name}`: the page's script, style sheet and icon.
#[handler]
pub fn asset(
    request: &Request,
    Path(name): Path<String>,
    enabled: Data<&ConsoleEnabled>,
) -> poem::Result<AssetResponse> {
    if !enabled.0.0 {
        return Err(disabled().into());
    }
    FILES
        .iter()
        .find(|file| file.name == name)
        .map(|file| file.respond(request.headers()))
        .ok_or_else(|| poem::Error::from(poem::error::NotFoundError))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(if_none_match: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, if_none_match.parse().unwrap());
        headers
    }

    #[test]
    fn a_current_etag_gets_304_and_a_stale_one_the_file() {
        let script = &FILES[0];
        let etag = script.etag();
        assert!(script.respond(&headers(&etag)).not_modified);
        assert!(
            script
                .respond(&headers(&format!("\"stale\", W/{etag}")))
                .not_modified
        );
        assert!(script.respond(&headers("*")).not_modified);
        assert!(!script.respond(&headers("\"stale\"")).not_modified);
        assert!(!script.respond(&HeaderMap::new()).not_modified);
    }

    #[test]
    fn every_file_the_page_names_is_served() {
        let page = std::str::from_utf8(PAGE.bytes).unwrap();
        let mut named = 0;
        for (start, _) in page.match_indices("\"console/") {
            let rest = &page[start + "\"console/".len()..];
            let name = &rest[..rest.find('"').unwrap()];
            assert!(
                FILES.iter().any(|file| file.name == name),
                "the page links console/{name}, which is not served"
            );
            named += 1;
        }
        assert_eq!(named, 4, "script, style sheet, icon twice");
    }

    #[test]
    fn the_page_uses_only_relative_urls_for_the_hub() {
        // An absolute path (`/v1/...`) would break under a path prefix.
        let sources = [PAGE.bytes, FILES[0].bytes, FILES[1].bytes];
        for source in sources {
            let text = std::str::from_utf8(source).unwrap();
            for quote in ["\"/", "'/", "`/"] {
                assert!(
                    !text.contains(quote),
                    "an absolute URL ({quote}…) in a console file"
                );
            }
        }
    }
}
