//! Asset identity: `jupyter-mcp://assets/<notebook-hash>/<sha256>.<ext>`.
//!
//! The notebook hash is the first 16 hex digits of the SHA-256 of the notebook's root-relative
//! path; the sha256 is that of the stored bytes (content addressing: the same content gives the
//! same file, so writing is idempotent). Parsing is strict: anything that is not exactly this
//! shape (other schemes, `..`, absolute paths, escapes, wrong hash lengths, unknown extensions)
//! is refused, so a parsed id can only name a file directly inside `DATA_DIR/assets/<hash>/`.

use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::AssetError;

/// URI scheme and authority of every asset.
pub const URI_PREFIX: &str = "jupyter-mcp://assets/";

/// Length of a notebook hash in hex digits.
const NOTEBOOK_HASH_LEN: usize = 16;

/// File extensions assets may have, with the mime type a file of that extension is served as
/// when the index does not know better.
const EXTENSIONS: &[(&str, &str)] = &[
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("gif", "image/gif"),
    ("svg", "image/svg+xml"),
    ("pdf", "application/pdf"),
    ("html", "text/html"),
    ("json", "application/json"),
    ("txt", "text/plain"),
    ("md", "text/markdown"),
    ("tex", "text/latex"),
    ("js", "application/javascript"),
    ("bin", "application/octet-stream"),
];

/// One asset: which notebook's folder, which content, which extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AssetId {
    /// [`notebook_hash`] of the notebook the asset was extracted from.
    pub notebook_hash: String,
    /// SHA-256 of the content, 64 lowercase hex digits.
    pub sha256: String,
    /// One of the known extensions (`png`, `txt`, ...).
    pub ext: String,
}

impl AssetId {
    /// The id of content with this digest from this notebook.
    pub fn new(notebook: &str, sha256: &str, ext: &str) -> AssetId {
        AssetId {
            notebook_hash: notebook_hash(notebook),
            sha256: sha256.to_owned(),
            ext: ext.to_owned(),
        }
    }

    /// `jupyter-mcp://assets/<notebook-hash>/<sha256>.<ext>`.
    pub fn uri(&self) -> String {
        format!(
            "{URI_PREFIX}{}/{}.{}",
            self.notebook_hash, self.sha256, self.ext
        )
    }

    /// `<notebook-hash>/<sha256>.<ext>`, relative to the assets directory.
    pub fn rel_path(&self) -> PathBuf {
        PathBuf::from(&self.notebook_hash).join(format!("{}.{}", self.sha256, self.ext))
    }

    /// The mime type implied by the extension.
    pub fn default_mime(&self) -> &'static str {
        mime_for_ext(&self.ext)
    }

    /// Parses an asset reference: the URI as given in outputs, or the same path without the
    /// scheme (`assets/<hash>/<sha>.<ext>` or `<hash>/<sha>.<ext>`). Everything else is refused
    /// with an error that says what an asset reference looks like.
    pub fn parse(reference: &str) -> Result<AssetId, AssetError> {
        let bad = |why: &str| AssetError::BadReference {
            reference: reference.chars().take(200).collect(),
            why: why.to_owned(),
        };
        let s = reference.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        let rest = if let Some(r) = s.strip_prefix(URI_PREFIX) {
            r
        } else if s.contains("://") || s.contains(':') {
            return Err(bad("only jupyter-mcp://assets/ URIs name assets"));
        } else if s.starts_with('/') || s.starts_with('\\') || s.starts_with('~') {
            return Err(bad("absolute paths are not accepted"));
        } else {
            s.strip_prefix("assets/").unwrap_or(s)
        };
        if rest.contains("..") {
            return Err(bad("'..' may not appear in an asset reference"));
        }
        if rest.contains(['\\', '%', '?', '#', '\0']) {
            return Err(bad("escapes, queries and fragments are not accepted"));
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let [hash, file] = parts.as_slice() else {
            return Err(bad("expected exactly <notebook-hash>/<sha256>.<ext>"));
        };
        if hash.len() != NOTEBOOK_HASH_LEN || !is_lower_hex(hash) {
            return Err(bad("the notebook hash must be 16 lowercase hex digits"));
        }
        let Some((sha, ext)) = file.split_once('.') else {
            return Err(bad("the file name must be <sha256>.<ext>"));
        };
        if sha.len() != 64 || !is_lower_hex(sha) {
            return Err(bad("the content hash must be 64 lowercase hex digits"));
        }
        if !EXTENSIONS.iter().any(|(e, _)| *e == ext) {
            return Err(bad("unknown file extension"));
        }
        Ok(AssetId {
            notebook_hash: (*hash).to_owned(),
            sha256: sha.to_owned(),
            ext: ext.to_owned(),
        })
    }
}

/// First 16 hex digits of the SHA-256 of a root-relative notebook path.
pub fn notebook_hash(notebook: &str) -> String {
    let mut h = sha256_hex(notebook.as_bytes());
    h.truncate(NOTEBOOK_HASH_LEN);
    h
}

/// SHA-256 as 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The extension content of this mime type is stored under.
pub fn ext_for_mime(mime: &str) -> &'static str {
    match mime {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "text/html" => "html",
        "text/markdown" => "md",
        "text/latex" => "tex",
        "application/javascript" | "text/javascript" => "js",
        m if m == "application/json" || m.ends_with("+json") => "json",
        m if m.starts_with("text/") => "txt",
        _ => "bin",
    }
}

/// The mime type a file of this extension is served as by default.
pub fn mime_for_ext(ext: &str) -> &'static str {
    EXTENSIONS
        .iter()
        .find(|(e, _)| *e == ext)
        .map_or("application/octet-stream", |(_, m)| m)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn uris_round_trip() {
        let id = AssetId::new("analysis/q3.ipynb", SHA, "png");
        assert_eq!(id.notebook_hash.len(), 16);
        let uri = id.uri();
        assert!(uri.starts_with("jupyter-mcp://assets/"));
        assert!(uri.ends_with(&format!("/{SHA}.png")));
        assert_eq!(AssetId::parse(&uri).ok(), Some(id.clone()));
        // Path forms without the scheme name the same asset.
        let rel = format!("{}/{SHA}.png", id.notebook_hash);
        assert_eq!(AssetId::parse(&rel).ok(), Some(id.clone()));
        assert_eq!(
            AssetId::parse(&format!("assets/{rel}")).ok(),
            Some(id.clone())
        );
        assert_eq!(AssetId::parse(&format!("  {uri}\n")).ok(), Some(id.clone()));
        assert_eq!(id.rel_path(), PathBuf::from(rel));
        assert_eq!(id.default_mime(), "image/png");
    }

    #[test]
    fn notebook_hashes_differ_by_path() {
        assert_ne!(notebook_hash("a.ipynb"), notebook_hash("b.ipynb"));
        assert_eq!(notebook_hash("a.ipynb"), notebook_hash("a.ipynb"));
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn refused(reference: &str, why: &str) {
        match AssetId::parse(reference) {
            Ok(id) => panic!("{reference:?} must be refused, parsed as {id:?}"),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(why), "{reference:?}: {msg}");
                assert!(msg.contains("jupyter-mcp://assets/"), "{msg}");
            }
        }
    }

    #[test]
    fn escapes_and_bad_references_are_refused() {
        let nb = "0123456789abcdef";
        refused("", "empty");
        refused(&format!("jupyter-mcp://assets/../{nb}/{SHA}.png"), "'..'");
        refused(
            &format!("jupyter-mcp://assets/{nb}/../../secret.key"),
            "'..'",
        );
        refused(&format!("{nb}/../../../etc/passwd"), "'..'");
        refused("/etc/passwd", "absolute");
        refused(&format!("/{nb}/{SHA}.png"), "absolute");
        refused("~/x.png", "absolute");
        refused(
            &format!("file:///{nb}/{SHA}.png"),
            "only jupyter-mcp://assets/",
        );
        refused(&format!("https://example.com/{nb}/{SHA}.png"), "only");
        refused(&format!("jupyter-mcp://checkpoints/{nb}/{SHA}.png"), "only");
        refused(&format!("C:{nb}/{SHA}.png"), "only");
        refused(
            &format!("jupyter-mcp://assets/{nb}/{SHA}.png?x=1"),
            "queries",
        );
        refused(
            &format!("jupyter-mcp://assets/{nb}%2F%2E%2E/{SHA}.png"),
            "escapes",
        );
        refused(&format!("jupyter-mcp://assets/{nb}\\{SHA}.png"), "escapes");
        refused(&format!("jupyter-mcp://assets/{nb}/x/{SHA}.png"), "exactly");
        refused(&format!("jupyter-mcp://assets/{SHA}.png"), "exactly");
        refused(
            &format!("jupyter-mcp://assets/ABCDEF0123456789/{SHA}.png"),
            "16 lowercase",
        );
        refused(
            &format!("jupyter-mcp://assets/{nb}0/{SHA}.png"),
            "16 lowercase",
        );
        refused(
            &format!("jupyter-mcp://assets/{nb}/{}.png", &SHA[1..]),
            "64 lowercase",
        );
        refused(
            &format!("jupyter-mcp://assets/{nb}/{}.png", SHA.to_uppercase()),
            "64",
        );
        refused(
            &format!("jupyter-mcp://assets/{nb}/{SHA}"),
            "<sha256>.<ext>",
        );
        refused(&format!("jupyter-mcp://assets/{nb}/{SHA}.exe"), "extension");
        refused(
            &format!("jupyter-mcp://assets/{nb}/{SHA}.png.txt"),
            "extension",
        );
    }

    #[test]
    fn mime_extensions() {
        for (mime, ext) in [
            ("image/png", "png"),
            ("image/jpeg", "jpg"),
            ("image/svg+xml", "svg"),
            ("application/pdf", "pdf"),
            ("text/html", "html"),
            ("application/vnd.plotly.v1+json", "json"),
            ("application/json", "json"),
            ("text/plain", "txt"),
            ("text/csv", "txt"),
            ("application/x-whatever", "bin"),
        ] {
            assert_eq!(ext_for_mime(mime), ext, "{mime}");
            assert!(EXTENSIONS.iter().any(|(e, _)| *e == ext));
        }
        assert_eq!(mime_for_ext("svg"), "image/svg+xml");
        assert_eq!(mime_for_ext("nope"), "application/octet-stream");
    }
}
