//! Kernelspec discovery, following `jupyter_client.kernelspec` (`jupyter_path("kernels")`):
//! `JUPYTER_PATH` entries, the user data dir (`JUPYTER_DATA_DIR` or `~/.local/share/jupyter`),
//! the environment prefixes (`$VIRTUAL_ENV/share/jupyter`, the `share/jupyter` of the
//! environment this binary is installed in (`<prefix>/bin/jupyter-mcp`), then that of the
//! `python3` found on `PATH`), then the system dirs. The first directory that holds a name wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{KernelError, Result};

/// One installed kernelspec (`<dir>/kernels/<name>/kernel.json`).
#[derive(Debug, Clone, Serialize)]
pub struct KernelSpec {
    /// Directory name, e.g. `python3`; what notebooks store in `metadata.kernelspec.name`.
    pub name: String,
    /// Human-readable name from `kernel.json`.
    pub display_name: String,
    /// Language, e.g. `python`.
    pub language: String,
    /// Command line; `{connection_file}` is replaced at launch. A bare `python`/`python3`
    /// in `argv[0]` has already been resolved to the interpreter of the spec's environment.
    pub argv: Vec<String>,
    /// Extra environment variables for the kernel process.
    pub env: HashMap<String, String>,
    /// `signal` (SIGINT to the process group) or `message` (`interrupt_request` on control).
    pub interrupt_mode: InterruptMode,
    /// The kernelspec's directory (holds `kernel.json` and logos).
    pub resource_dir: PathBuf,
    /// `metadata` from `kernel.json`, if any.
    pub metadata: serde_json::Value,
}

/// How to interrupt a kernel (kernelspec `interrupt_mode`, default `signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InterruptMode {
    /// Send SIGINT.
    Signal,
    /// Send `interrupt_request` on the control channel.
    Message,
}

#[derive(Deserialize)]
struct KernelJson {
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    language: String,
    #[serde(default)]
    interrupt_mode: Option<String>,
    #[serde(default)]
    env: HashMap<String, String>,
    #[serde(default)]
    metadata: serde_json::Value,
}

impl KernelSpec {
    /// The IPython kernel needs `--HistoryManager.hist_file=:memory:` as nbclient passes it.
    pub fn is_ipykernel(&self) -> bool {
        self.argv.iter().any(|a| a.contains("ipykernel"))
    }
}

/// The `share/jupyter` data directories searched, in priority order.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Ok(paths) = std::env::var("JUPYTER_PATH") {
        dirs.extend(std::env::split_paths(&paths).filter(|p| !p.as_os_str().is_empty()));
    }
    if let Ok(dir) = std::env::var("JUPYTER_DATA_DIR") {
        dirs.push(PathBuf::from(dir));
    } else if let Some(home) = dirs::home_dir() {
        dirs.push(home.join(".local/share/jupyter"));
    }
    if let Ok(venv) = std::env::var("VIRTUAL_ENV") {
        dirs.push(Path::new(&venv).join("share/jupyter"));
    }
    // The environment this binary was installed into (pip / uvx put it in `<prefix>/bin`, next
    // to ipykernel): its kernelspecs, as jupyter_client searches `sys.prefix/share/jupyter`,
    // so an installed jupyter-mcp finds its kernels without an activated environment.
    if let Some(prefix) = std::env::current_exe()
        .ok()
        .and_then(|exe| prefix_of_interpreter(&exe))
    {
        dirs.push(prefix.join("share/jupyter"));
    }
    if let Some(prefix) = which("python3").and_then(|p| prefix_of_interpreter(&p)) {
        dirs.push(prefix.join("share/jupyter"));
    }
    dirs.push(PathBuf::from("/usr/local/share/jupyter"));
    dirs.push(PathBuf::from("/usr/share/jupyter"));
    let mut seen = Vec::new();
    dirs.retain(|d| {
        let fresh = !seen.contains(d);
        seen.push(d.clone());
        fresh
    });
    dirs
}

/// The modification times that tell whether installed kernelspecs changed: each searched
/// `kernels` dir, each kernel dir in it and its `kernel.json` (stats only, no reads).
fn fingerprint(dirs: &[PathBuf]) -> Vec<(PathBuf, Option<std::time::SystemTime>)> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut out = Vec::new();
    for dir in dirs {
        let kernels = dir.join("kernels");
        out.push((kernels.clone(), mtime(&kernels)));
        if let Ok(entries) = std::fs::read_dir(&kernels) {
            for entry in entries.flatten() {
                let p = entry.path();
                out.push((p.clone(), mtime(&p)));
                let json = p.join("kernel.json");
                out.push((json.clone(), mtime(&json)));
            }
        }
    }
    out
}

type SpecCache = Option<(
    Vec<(PathBuf, Option<std::time::SystemTime>)>,
    Vec<KernelSpec>,
)>;
static CACHE: std::sync::Mutex<SpecCache> = std::sync::Mutex::new(None);

/// All installed kernelspecs, sorted by name; the first directory holding a name wins.
/// Unreadable or invalid `kernel.json` files are skipped (logged at warn). The parsed list is
/// cached and reused while no searched directory or `kernel.json` changed its mtime. Blocking.
pub fn list_kernelspecs() -> Vec<KernelSpec> {
    let dirs = search_dirs();
    let print = fingerprint(&dirs);
    if let Ok(cache) = CACHE.lock() {
        if let Some((key, specs)) = cache.as_ref() {
            if *key == print {
                return specs.clone();
            }
        }
    }
    let specs = scan_kernelspecs(&dirs);
    if let Ok(mut cache) = CACHE.lock() {
        *cache = Some((print, specs.clone()));
    }
    specs
}

fn scan_kernelspecs(dirs: &[PathBuf]) -> Vec<KernelSpec> {
    let mut found: Vec<KernelSpec> = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir.join("kernels")) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if found.iter().any(|k| k.name.eq_ignore_ascii_case(&name)) {
                continue;
            }
            match read_kernelspec(&name, &entry.path()) {
                Ok(Some(spec)) => found.push(spec),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping kernelspec: {e}"),
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The kernelspec called `name` (case-insensitive, as jupyter_client), or
/// [`KernelError::KernelspecNotFound`] listing the installed ones and the searched dirs.
pub fn find_kernelspec(name: &str) -> Result<KernelSpec> {
    let all = list_kernelspecs();
    let available: Vec<String> = all.iter().map(|k| k.name.clone()).collect();
    all.into_iter()
        .find(|k| k.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| KernelError::KernelspecNotFound {
            name: name.to_string(),
            available,
            searched: search_dirs()
                .into_iter()
                .map(|d| d.join("kernels"))
                .collect(),
        })
}

/// Reads `<resource_dir>/kernel.json`; `Ok(None)` when the directory has no kernel.json.
pub fn read_kernelspec(name: &str, resource_dir: &Path) -> Result<Option<KernelSpec>> {
    let file = resource_dir.join("kernel.json");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KernelError::io(format!("reading {}", file.display()), e)),
    };
    let json: KernelJson =
        serde_json::from_str(&text).map_err(|e| KernelError::InvalidKernelspec {
            path: file.clone(),
            reason: e.to_string(),
        })?;
    if json.argv.is_empty() {
        return Err(KernelError::InvalidKernelspec {
            path: file,
            reason: "argv is empty".into(),
        });
    }
    let interrupt_mode = match json.interrupt_mode.as_deref() {
        Some("message") => InterruptMode::Message,
        _ => InterruptMode::Signal,
    };
    let mut argv = json.argv;
    argv[0] = resolve_interpreter(&argv[0], resource_dir);
    Ok(Some(KernelSpec {
        name: name.to_string(),
        display_name: if json.display_name.is_empty() {
            name.to_string()
        } else {
            json.display_name
        },
        language: json.language,
        argv,
        env: json.env,
        interrupt_mode,
        resource_dir: resource_dir.to_path_buf(),
        metadata: json.metadata,
    }))
}

/// A bare `python`/`python3` runs with the interpreter of the environment that holds the
/// kernelspec (`<prefix>/share/jupyter/kernels/<name>` -> `<prefix>/bin/python`), else the one
/// on `PATH`. Anything else is returned unchanged.
fn resolve_interpreter(argv0: &str, resource_dir: &Path) -> String {
    if argv0 != "python" && argv0 != "python3" {
        return argv0.to_string();
    }
    let env_prefix = resource_dir.ancestors().nth(4);
    if let Some(prefix) = env_prefix {
        for candidate in ["bin/python", "bin/python3"] {
            let path = prefix.join(candidate);
            if path.is_file() {
                return path.to_string_lossy().to_string();
            }
        }
    }
    which(argv0)
        .or_else(|| which("python3"))
        .map(|p| p.to_string_lossy().to_string())
        .unwrap_or_else(|| argv0.to_string())
}

/// First executable called `name` on `PATH`, not resolving symlinks (a venv's `python3` is a
/// symlink whose location, not target, identifies the environment).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn prefix_of_interpreter(interpreter: &Path) -> Option<PathBuf> {
    interpreter.parent()?.parent().map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_spec(dir: &Path, name: &str, json: &str) -> PathBuf {
        let d = dir.join("share/jupyter/kernels").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("kernel.json"), json).unwrap();
        d
    }

    #[test]
    fn bare_python_resolves_to_the_environment_interpreter() {
        let tmp = tempfile::tempdir().unwrap();
        let bin = tmp.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("python"), "").unwrap();
        let dir = write_spec(
            tmp.path(),
            "py",
            r#"{"argv":["python","-m","ipykernel_launcher","-f","{connection_file}"],"display_name":"Py","language":"python","interrupt_mode":"message"}"#,
        );
        let spec = read_kernelspec("py", &dir).unwrap().unwrap();
        assert_eq!(spec.argv[0], bin.join("python").to_string_lossy());
        assert_eq!(spec.interrupt_mode, InterruptMode::Message);
        assert!(spec.is_ipykernel());
    }

    #[test]
    fn invalid_kernel_json_is_an_error_naming_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = write_spec(tmp.path(), "bad", "{not json");
        let err = read_kernelspec("bad", &dir).unwrap_err().to_string();
        assert!(err.contains("kernel.json"), "{err}");
    }

    #[test]
    fn missing_kernel_json_is_not_a_spec() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(read_kernelspec("x", tmp.path()).unwrap().is_none());
    }
}
