//! The asset store (SPEC §2, §4): outputs an agent should not get inline — images, HTML, SVG,
//! PDF, JSON bundles, texts beyond the inline bound — as content-addressed files
//! `DATA_DIR/assets/<notebook-hash>/<sha256>.<ext>`, named by URIs
//! `jupyter-mcp://assets/<notebook-hash>/<sha256>.<ext>` ([`uri`]).
//!
//! - Files are written atomically (temp file in the same folder, fsync, rename, fsync folder);
//!   the same content gives the same name, so writing again is a no-op.
//! - Every asset has a row in `state.db` ([`leases`]) with a lease (default 24 h) taken when it
//!   is created and renewed whenever an output referencing it is rendered (a notebook or an
//!   execution is read) or the asset itself is read; `asset_refs` links it to the execution
//!   that produced it.
//! - [`Assets::prune`] is the only deleter ([`gc`]): lease expired AND no notebook under the
//!   root AND no stored execution references it. It never touches any other file.
//! - Rendering for the agent stores through [`AgentSink`] (the `jmcp_outputs::AssetSink` of
//!   `render_with`); images shown are downscaled by [`preview`].
//!
//! The MCP layer's result rendering has no engine handle, so the server installs one process-wide
//! store at start ([`install`], [`current`]); without one, outputs render without assets.

pub mod extract;
pub mod gc;
pub mod leases;
mod offload;
pub mod page;
pub mod preview;
pub mod spill;
pub mod uri;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use jmcp_outputs::{AssetLink, AssetSink, ImageContent};
use serde_json::Value;

use crate::config::Config;
use crate::store::{Store, StoreError};
use extract::{rich_payload, Payload};
use gc::{Action, References, Verdict};
use leases::{stamp, AssetRow};
pub use offload::offload_for_file;
use preview::{ImageLimits, PreviewCache};
pub use uri::AssetId;

/// Errors of the asset store; each says what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// Not an asset reference (other scheme, `..`, absolute path, bad hash, ...).
    #[error("'{reference}' is not an asset reference ({why}): pass the `asset` URI of an output as given, e.g. jupyter-mcp://assets/<16 hex digits>/<64 hex digits>.png (list_assets shows them)")]
    BadReference { reference: String, why: String },
    /// No such asset file.
    #[error("asset {uri} does not exist (it may have been pruned): read the notebook or the execution again to extract its outputs anew")]
    NotFound { uri: String },
    /// The asset's path resolves outside the assets directory (a symlink).
    #[error("asset {uri} resolves outside the assets directory {dir}; refused")]
    Outside { uri: String, dir: PathBuf },
    /// A file operation failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data dir did not answer in time, or its breaker is open (SPEC §8).
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageUnavailable),
}

/// Settings from the command line (`--asset-lease-hours`, `--image-max-*`,
/// `--offload-outputs-over`).
#[derive(Debug, Clone, Copy)]
pub struct AssetSettings {
    /// How long an asset is kept after it was last produced or read.
    pub lease: chrono::Duration,
    /// Images shown to agents are downscaled past these.
    pub image: ImageLimits,
    /// Outputs larger than this (JSON bytes) are written into notebook files as links.
    pub offload_over: Option<usize>,
}

impl AssetSettings {
    /// The settings in `config`.
    pub fn from_config(config: &Config) -> AssetSettings {
        let a = &config.assets;
        AssetSettings {
            lease: chrono::Duration::milliseconds((a.lease_hours * 3_600_000.0) as i64),
            image: ImageLimits {
                max_bytes: a.image_max_bytes,
                max_dim: a.image_max_dim,
            },
            offload_over: a.offload_outputs_over,
        }
    }
}

impl Default for AssetSettings {
    fn default() -> Self {
        AssetSettings {
            lease: chrono::Duration::hours(24),
            image: ImageLimits {
                max_bytes: 512 * 1024,
                max_dim: 1024,
            },
            offload_over: None,
        }
    }
}

/// Handle to the asset store; cheap to clone.
#[derive(Clone)]
pub struct Assets {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    root: PathBuf,
    store: Store,
    settings: AssetSettings,
    /// Held while a file is written and its lease recorded, and while a file is deleted, so
    /// collection never deletes a file that is being (re)produced.
    write_lock: Mutex<()>,
    previews: PreviewCache,
}

/// Executions whose outputs `prune` reads per store call.
const PRUNE_BATCH: usize = 200;

static CURRENT: RwLock<Option<Assets>> = RwLock::new(None);

/// Makes `assets` the store used when rendering outputs for agents, unless a store of the same
/// data dir is installed already (then that one stays, so there is one write lock per data dir
/// however many MCP sessions start). Returns the installed store.
pub fn install(assets: Assets) -> Assets {
    let Ok(mut c) = CURRENT.write() else {
        return assets;
    };
    match &*c {
        Some(existing) if existing.dir() == assets.dir() => existing.clone(),
        _ => {
            *c = Some(assets.clone());
            assets
        }
    }
}

/// The installed store, if any.
pub fn current() -> Option<Assets> {
    CURRENT.read().ok().and_then(|c| c.clone())
}

/// Runs blocking work (file and database I/O) from async code without stalling the runtime's
/// other tasks: on a multi-threaded runtime the worker thread is handed over first.
pub fn blocking<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What [`Assets::read`] returns.
#[derive(Debug, Clone)]
pub struct AssetContent {
    /// The asset.
    pub id: AssetId,
    /// Its URI.
    pub uri: String,
    /// Mime type (from the index, else from the extension).
    pub mime_type: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

impl AssetContent {
    /// True for content served as text.
    pub fn is_text(&self) -> bool {
        extract::is_text_mime(&self.mime_type)
    }
}

/// What [`Assets::prune`] did or would do.
#[derive(Debug, Clone)]
pub struct PruneReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// The time leases were compared with.
    pub now: String,
    /// One verdict per asset considered.
    pub verdicts: Vec<Verdict>,
    /// Bytes freed (or that would be).
    pub freed_bytes: i64,
}

impl Assets {
    /// A store under `data_dir/assets` for notebooks under `root`.
    pub fn new(data_dir: &Path, root: &Path, store: Store, settings: AssetSettings) -> Assets {
        Assets {
            inner: Arc::new(Inner {
                dir: data_dir.join("assets"),
                root: root.to_path_buf(),
                store,
                settings,
                write_lock: Mutex::new(()),
                previews: PreviewCache::default(),
            }),
        }
    }

    /// `DATA_DIR/assets`.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings.
    pub fn settings(&self) -> &AssetSettings {
        &self.inner.settings
    }

    fn lease_from(&self, now: DateTime<Utc>) -> String {
        stamp(now + self.inner.settings.lease)
    }

    /// Stores `payload` as an asset of `notebook` (idempotent), takes or renews its lease and
    /// links it to `execution_id`. Blocking.
    pub fn put(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        payload: &Payload,
    ) -> Result<AssetId, AssetError> {
        self.put_at(notebook, execution_id, payload, Utc::now())
    }

    /// [`Assets::put`] at a given time (tests). Bounded by `--storage-timeout` (SPEC §8):
    /// the write runs on a thread of its own that is abandoned if the data dir hangs.
    pub fn put_at(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        payload: &Payload,
        now: DateTime<Utc>,
    ) -> Result<AssetId, AssetError> {
        let (me, nb, exec, payload) = (
            self.clone(),
            notebook.to_owned(),
            execution_id.map(str::to_owned),
            payload.clone(),
        );
        crate::storage::run_sync_bounded(
            crate::storage::Place::DataDir,
            &self.inner.dir,
            "writing an asset",
            move || me.put_unbounded(&nb, exec.as_deref(), &payload, now),
        )?
    }

    fn put_unbounded(
        &self,
        notebook: &str,
        execution_id: Option<&str>,
        payload: &Payload,
        now: DateTime<Utc>,
    ) -> Result<AssetId, AssetError> {
        let id = AssetId::new(notebook, &payload.sha256, payload.ext);
        let row = AssetRow {
            uri: id.uri(),
            notebook: notebook.to_owned(),
            sha256: payload.sha256.clone(),
            ext: payload.ext.to_owned(),
            mime_type: payload.mime_type.clone(),
            bytes: payload.bytes.len() as i64,
            created_at: stamp(now),
            lease_until: self.lease_from(now),
        };
        let _guard = self
            .inner
            .write_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let path = self.inner.dir.join(id.rel_path());
        if !path.is_file() {
            write_atomic(&path, &payload.bytes)?;
        }
        let exec = execution_id.map(str::to_owned);
        self.inner
            .store
            .call_blocking(move |c| leases::upsert(c, &row, exec.as_deref()))?;
        Ok(id)
    }

    /// The file of an asset, refusing anything that resolves outside the assets directory.
    pub fn path_of(&self, id: &AssetId) -> Result<PathBuf, AssetError> {
        let path = self.inner.dir.join(id.rel_path());
        let not_found = || AssetError::NotFound { uri: id.uri() };
        let real = path.canonicalize().map_err(|_| not_found())?;
        let dir = self.inner.dir.canonicalize().map_err(|_| not_found())?;
        if !real.starts_with(&dir) || !real.is_file() {
            return Err(AssetError::Outside {
                uri: id.uri(),
                dir: self.inner.dir.clone(),
            });
        }
        Ok(real)
    }

    /// Reads an asset by reference (URI or path form) and renews its lease. Blocking, bounded
    /// by `--storage-timeout` (SPEC §8).
    pub fn read(&self, reference: &str) -> Result<AssetContent, AssetError> {
        let (me, r) = (self.clone(), reference.to_owned());
        crate::storage::run_sync_bounded(
            crate::storage::Place::DataDir,
            &self.inner.dir,
            "reading an asset",
            move || me.read_unbounded(&r),
        )?
    }

    fn read_unbounded(&self, reference: &str) -> Result<AssetContent, AssetError> {
        let id = AssetId::parse(reference)?;
        let path = self.path_of(&id)?;
        let bytes = std::fs::read(&path).map_err(|source| AssetError::Io {
            what: "read",
            path: path.clone(),
            source,
        })?;
        let uri = id.uri();
        let until = self.lease_from(Utc::now());
        let (u, t) = (uri.clone(), until);
        let row = self.inner.store.call_blocking(move |c| {
            leases::renew(c, &u, &t)?;
            leases::get(c, &u)
        })?;
        Ok(AssetContent {
            mime_type: row
                .map(|r| r.mime_type)
                .unwrap_or_else(|| id.default_mime().to_owned()),
            id,
            uri,
            bytes,
        })
    }

    /// Indexed assets of one notebook (or all), `limit` from `offset`, and the total count.
    pub fn list(
        &self,
        notebook: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<AssetRow>, usize), AssetError> {
        let nb = notebook.map(str::to_owned);
        Ok(self.inner.store.call_blocking(move |c| {
            Ok((
                leases::list(c, nb.as_deref(), offset, limit)?,
                leases::count(c, nb.as_deref())?,
            ))
        })?)
    }

    /// Garbage collection at time `now` of the assets of one notebook (or all): see [`gc`].
    /// With `dry_run`, only reports. Blocking.
    pub fn prune(
        &self,
        notebook: Option<&str>,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<PruneReport, AssetError> {
        let nb = notebook.map(str::to_owned);
        let (rows, links) = self.inner.store.call_blocking(move |c| {
            let total = leases::count(c, nb.as_deref())?;
            let rows = leases::list(c, nb.as_deref(), 0, total.max(1))?;
            Ok((rows, leases::all_refs(c)?))
        })?;
        // Outputs of every stored execution, a batch per store call (bounded memory, and the
        // connection is free between batches).
        let mut refs = References::default();
        let mut after = 0i64;
        loop {
            let batch = self
                .inner
                .store
                .call_blocking(move |c| leases::execution_batch(c, after, PRUNE_BATCH))?;
            let Some((last, _)) = batch.last() else { break };
            after = *last;
            let full = batch.len() == PRUNE_BATCH;
            refs.add_executions(batch.into_iter().map(|(_, e)| e), &links);
            if !full {
                break;
            }
        }
        refs.add_notebooks(&self.inner.root);
        let dir = &self.inner.dir;
        let file_of = |uri: &str| AssetId::parse(uri).ok().map(|id| dir.join(id.rel_path()));
        let mut verdicts = gc::judge(&rows, &refs, now, |r| {
            file_of(&r.uri).is_some_and(|p| p.is_file())
        });
        let mut freed = 0;
        let now_s = stamp(now);
        for v in verdicts.iter_mut() {
            match v.action {
                Action::Keep => {}
                Action::Delete if dry_run => freed += v.bytes,
                Action::Forget if dry_run => {}
                Action::Forget => {
                    let u = v.uri.clone();
                    self.inner
                        .store
                        .call_blocking(move |c| leases::forget(c, &u))?;
                }
                Action::Delete => {
                    let _guard = self
                        .inner
                        .write_lock
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    let (u, n) = (v.uri.clone(), now_s.clone());
                    // Renewed since it was judged (read, or produced again): keep it.
                    if !self
                        .inner
                        .store
                        .call_blocking(move |c| leases::remove_if_expired(c, &u, &n))?
                    {
                        v.action = Action::Keep;
                        v.reason = "its lease was renewed while collecting".into();
                        continue;
                    }
                    if let Some(path) = file_of(&v.uri) {
                        match std::fs::remove_file(&path) {
                            Ok(()) => freed += v.bytes,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(source) => {
                                return Err(AssetError::Io {
                                    what: "delete",
                                    path,
                                    source,
                                })
                            }
                        }
                    }
                }
            }
        }
        Ok(PruneReport {
            dry_run,
            now: now_s,
            verdicts,
            freed_bytes: freed,
        })
    }

    /// A sink for `jmcp_outputs::render_with` that stores the outputs of `notebook` (produced
    /// by `execution_id` when known).
    pub fn sink<'a>(&'a self, notebook: &'a str, execution_id: Option<&'a str>) -> AgentSink<'a> {
        AgentSink {
            assets: self,
            notebook,
            execution_id,
        }
    }

    /// The image to show for an image payload: `Some` only when it differs from the original
    /// (downscaled), with a detail line either way.
    fn shown_image(&self, payload: &Payload) -> (Option<ImageContent>, Option<String>) {
        if payload.mime_type != "image/png" && payload.mime_type != "image/jpeg" {
            return (None, None);
        }
        match self.inner.previews.get_or_make(
            &payload.sha256,
            &payload.mime_type,
            &payload.bytes,
            self.inner.settings.image,
        ) {
            Ok(p) => {
                let detail = Some(p.detail());
                let shown = p.downscaled().then(|| ImageContent {
                    mime_type: p.mime_type.clone(),
                    data_base64: base64::engine::general_purpose::STANDARD.encode(&p.bytes),
                });
                (shown, detail)
            }
            Err(e) => (None, Some(e)),
        }
    }

    /// The image content to show for an image asset's bytes (downscaled past the limits).
    pub fn image_for_agent(&self, content: &AssetContent) -> Option<(ImageContent, String)> {
        let p = self
            .inner
            .previews
            .get_or_make(
                &content.id.sha256,
                &content.mime_type,
                &content.bytes,
                self.inner.settings.image,
            )
            .ok()?;
        Some((
            ImageContent {
                mime_type: p.mime_type.clone(),
                data_base64: base64::engine::general_purpose::STANDARD.encode(&p.bytes),
            },
            p.detail(),
        ))
    }
}

/// Stores rendered outputs (see [`Assets::sink`]). A failure to store is logged and the output
/// is rendered without that link.
pub struct AgentSink<'a> {
    assets: &'a Assets,
    notebook: &'a str,
    execution_id: Option<&'a str>,
}

impl AgentSink<'_> {
    fn link(&self, payload: &Payload) -> Option<AssetLink> {
        match self.assets.put(self.notebook, self.execution_id, payload) {
            Ok(id) => {
                let (preview, detail) = self.assets.shown_image(payload);
                Some(AssetLink {
                    uri: id.uri(),
                    bytes: payload.bytes.len(),
                    preview,
                    detail,
                })
            }
            Err(e) => {
                tracing::warn!(notebook = self.notebook, "could not store an asset: {e}");
                None
            }
        }
    }
}

impl AssetSink for AgentSink<'_> {
    fn rich(&mut self, _index: usize, mime: &str, value: &Value) -> Option<AssetLink> {
        self.link(&rich_payload(mime, value)?)
    }

    fn text(&mut self, _index: usize, text: &str) -> Option<AssetLink> {
        self.link(&Payload::text(text))
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same folder, fsync, rename, fsync
/// folder. Creates the folder.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AssetError> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| AssetError::Io {
            what,
            path: p,
            source,
        }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests;
