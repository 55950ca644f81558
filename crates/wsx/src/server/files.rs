//! Static files for the plain HTTP requests a WebSocket server gets: the
//! page that opens the socket, its scripts and styles.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use std::path::{Component, Path, PathBuf};
use wsx_proto::handshake::Reject;

/// Serves the files under a directory: `GET` and `HEAD`, `/` and
/// directories as their `index.html`, a Content-Type from the extension,
/// `Cache-Control: no-cache`. Paths that leave the directory (`..`, an
/// encoded `..`, a backslash, a symbolic link that points outside) get 403,
/// missing files 404, other methods 405.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let files = wsx::server::StaticFiles::new("./public")?;
/// let request = http::Request::get("/index.html").body(())?;
/// let response = files.response(&request).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct StaticFiles {
    root: PathBuf,
}

impl StaticFiles {
    /// Serve `dir` (resolved now: it must exist and be a directory).
    pub fn new(dir: impl AsRef<Path>) -> std::io::Result<Self> {
        let root = std::fs::canonicalize(dir.as_ref())?;
        if !root.is_dir() {
            return Err(std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"));
        }
        Ok(Self { root })
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The response to `request`.
    pub async fn response(&self, request: &Request<()>) -> Response<Bytes> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return Reject::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
                .header("allow", "GET, HEAD")
                .into_response();
        }
        let Some(relative) = safe_relative_path(request.uri().path()) else {
            return Reject::new(StatusCode::FORBIDDEN, "forbidden\n").into_response();
        };
        let mut path = self.root.join(relative);
        if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
            path.push("index.html");
        }
        let not_found = || Reject::new(StatusCode::NOT_FOUND, "not found\n").into_response();
        // Symbolic links may point anywhere: serve only what resolves inside.
        let Ok(resolved) = tokio::fs::canonicalize(&path).await else { return not_found() };
        if !resolved.starts_with(&self.root) {
            return Reject::new(StatusCode::FORBIDDEN, "forbidden\n").into_response();
        }
        let Ok(body) = tokio::fs::read(&resolved).await else { return not_found() };
        let mut r = Response::new(Bytes::from(body));
        let len = r.body().len();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&resolved)));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        r
    }
}

/// The percent-decoded request path as a relative path of plain names;
/// `None` for `..`, backslashes, NUL, a malformed escape, or a path that
/// is not UTF-8.
fn safe_relative_path(path: &str) -> Option<PathBuf> {
    let decoded = crate::percent::decode(path)?;
    if decoded.contains('\\') || decoded.contains('\0') {
        return None;
    }
    let mut out = PathBuf::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => return None,
            s => {
                // One plain name: no drive prefix, no root.
                let mut c = Path::new(s).components();
                match (c.next(), c.next()) {
                    (Some(Component::Normal(n)), None) => out.push(n),
                    _ => return None,
                }
            }
        }
    }
    Some(out)
}

/// The Content-Type for a file, from its extension.
fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain; charset=utf-8",
        Some("ico") => "image/x-icon",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_directory_are_refused() {
        assert_eq!(safe_relative_path("/a/b.html"), Some(PathBuf::from("a/b.html")));
        assert_eq!(safe_relative_path("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative_path("/./a//b"), Some(PathBuf::from("a/b")));
        assert_eq!(safe_relative_path("/%61.txt"), Some(PathBuf::from("a.txt")));
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/a%2f..%2f..%2fx",
            "/a\\..\\x",
            "/%00",
            "/%ff",
            "/a%5c..%5cx",
        ] {
            assert_eq!(safe_relative_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(Path::new("a.HTML")), "text/html; charset=utf-8");
        assert_eq!(content_type(Path::new("a.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("a")), "application/octet-stream");
    }

    #[tokio::test]
    async fn files_inside_the_root_only() {
        let dir = std::env::temp_dir().join(format!("wsx-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::write(dir.join("sub/a.js"), "x").unwrap();
        let files = StaticFiles::new(&dir).unwrap();
        let get = |p: &str| http::Request::get(p).body(()).unwrap();
        let r = files.response(&get("/")).await;
        assert_eq!((r.status(), r.body().as_ref()), (StatusCode::OK, &b"<p>hi</p>"[..]));
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(files.response(&get("/sub/a.js")).await.status(), StatusCode::OK);
        assert_eq!(files.response(&get("/missing")).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(files.response(&get("/../x")).await.status(), StatusCode::FORBIDDEN);
        let post = http::Request::post("/").body(()).unwrap();
        assert_eq!(files.response(&post).await.status(), StatusCode::METHOD_NOT_ALLOWED);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
