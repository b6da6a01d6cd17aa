//! Pre-flight checks (SPEC §1, §9): `jupyter-mcp doctor` prints them one line each, and `serve`
//! (both transports) and `run` run the same checks at start and refuse to start on a fatal one,
//! saying what to fix, instead of failing later in the middle of a call.
//!
//! Checks, in order: the data dir is writable and answers in time ([`probe`], on a sacrificial
//! thread), the notebook root likewise, free disk space, `state.db` integrity (`PRAGMA
//! quick_check`, read-only: a damaged file is never touched, [`statedb`]), `server.lock` (a
//! live holder named; a stale one is taken over at start by `lock::ServerLock`), kernels a
//! previous run left running, with their notebooks, each kernelspec and the interpreter it
//! runs ([`kernelspecs`]), and the daemon's port, naming the process that holds it ([`port`]).

pub mod kernelspecs;
pub mod port;
pub mod probe;
pub mod statedb;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::DoctorArgs;

/// How bad a check's finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Worth fixing; the server still starts.
    Warn,
    /// The server refuses to start; `doctor` exits 1.
    Fail,
}

/// One check's finding: `name` (what was checked) and `detail` (what was found, and for a
/// warning or failure what to do).
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked, e.g. `data dir`.
    pub name: String,
    /// The verdict.
    pub level: Level,
    /// What was found.
    pub detail: String,
}

impl Check {
    fn new(level: Level, name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            level,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{tag} {}: {}", self.name, self.detail)
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The data dir (created when missing, as a start would).
    pub data_dir: PathBuf,
    /// The notebook root, or why it cannot be used.
    pub root: Result<PathBuf, String>,
    /// The daemon's address to check, if any.
    pub bind: Option<SocketAddr>,
    /// A taken `bind` port fails (a daemon is about to listen there) rather than warns.
    pub bind_required: bool,
    /// No usable kernelspec fails (`doctor`, `run`) rather than warns (`serve` can still edit
    /// notebooks).
    pub kernels_required: bool,
    /// Report who holds `server.lock` (`doctor`). A server leaves this to
    /// `lock::ServerLock::acquire`: even a shared try-lock held for a moment could make a
    /// concurrent start (two `connect --spawn`) fail to take it.
    pub inspect_lock: bool,
    /// Bound of each storage check.
    pub timeout: Duration,
}

/// Runs every check of `scope` (blocking; each storage touch bounded by `scope.timeout`).
pub fn checks(scope: &Scope) -> Vec<Check> {
    let mut out = Vec::new();
    let data_ok = match probe::probe_dir(&scope.data_dir, true, scope.timeout) {
        Ok(took) => {
            out.push(Check::new(
                Level::Ok,
                "data dir",
                format!(
                    "{} (writable, answered in {} ms)",
                    scope.data_dir.display(),
                    took.as_millis()
                ),
            ));
            true
        }
        Err(e) => {
            out.push(Check::new(Level::Fail, "data dir", e.to_string()));
            false
        }
    };
    let root_ok = match &scope.root {
        Err(why) => {
            out.push(Check::new(Level::Fail, "root", why.clone()));
            None
        }
        Ok(root) => match probe::probe_dir(root, false, scope.timeout) {
            Ok(took) => {
                out.push(Check::new(
                    Level::Ok,
                    "root",
                    format!(
                        "{} (writable, answered in {} ms)",
                        root.display(),
                        took.as_millis()
                    ),
                ));
                Some(root.as_path())
            }
            Err(e) => {
                out.push(Check::new(Level::Fail, "root", e.to_string()));
                None
            }
        },
    };
    if data_ok {
        out.push(disk_space(
            "disk space (data dir)",
            &scope.data_dir,
            scope.timeout,
        ));
    }
    if let Some(root) = root_ok {
        out.push(disk_space("disk space (root)", root, scope.timeout));
    }
    if data_ok {
        out.extend(state_checks(&scope.data_dir, scope.inspect_lock));
    }
    out.extend(kernelspec_checks(scope.kernels_required, scope.timeout));
    if let Some(addr) = scope.bind {
        out.push(port_check(addr, scope.bind_required, &scope.data_dir));
    }
    out
}

fn disk_space(name: &str, dir: &Path, timeout: Duration) -> Check {
    match probe::free_bytes(dir, timeout) {
        None => Check::new(
            Level::Fail,
            name,
            format!("{} did not answer statvfs in time", dir.display()),
        ),
        Some(Err(e)) => Check::new(
            Level::Warn,
            name,
            format!("cannot read the free space of {}: {e}", dir.display()),
        ),
        Some(Ok(free)) if free < probe::MIN_FREE_BYTES => Check::new(
            Level::Fail,
            name,
            format!(
                "only {} free under {} (at least {} needed for state.db, notebooks and \
                 checkpoints): free space there or choose another folder",
                probe::human(free),
                dir.display(),
                probe::human(probe::MIN_FREE_BYTES)
            ),
        ),
        Some(Ok(free)) if free < probe::LOW_FREE_BYTES => Check::new(
            Level::Warn,
            name,
            format!(
                "{} free under {}: low; checkpoints and outputs may fill it",
                probe::human(free),
                dir.display()
            ),
        ),
        Some(Ok(free)) => Check::new(Level::Ok, name, format!("{} free", probe::human(free))),
    }
}

/// `state.db` integrity, `server.lock` and leftover kernels (the data dir answered already).
fn state_checks(data_dir: &Path, inspect_lock: bool) -> Vec<Check> {
    let db = data_dir.join("state.db");
    let mut out = Vec::new();
    // quick_check reads the whole file: allow it more than a probe, still on its own thread.
    let checked = {
        let db = db.clone();
        probe::on_own_thread(Duration::from_secs(300), move || statedb::integrity(&db))
    };
    let healthy = match checked {
        None => {
            out.push(Check::new(
                Level::Fail,
                "state.db",
                format!(
                    "{}: PRAGMA quick_check did not finish in 300 s",
                    db.display()
                ),
            ));
            false
        }
        Some(statedb::Integrity::Absent) => {
            out.push(Check::new(
                Level::Ok,
                "state.db",
                format!(
                    "{} not created yet (the first start creates it)",
                    db.display()
                ),
            ));
            false
        }
        Some(statedb::Integrity::Ok) => {
            out.push(Check::new(
                Level::Ok,
                "state.db",
                format!("{} (quick_check ok)", db.display()),
            ));
            true
        }
        Some(statedb::Integrity::Corrupt(why)) => {
            out.push(Check::new(
                Level::Fail,
                "state.db",
                format!(
                    "{} is damaged ({why}); {}",
                    db.display(),
                    statedb::recovery_advice(&db)
                ),
            ));
            false
        }
        Some(statedb::Integrity::Unreadable(why)) => {
            out.push(Check::new(
                Level::Fail,
                "state.db",
                format!(
                    "{} cannot be read ({why}): check its permissions and the disk",
                    db.display()
                ),
            ));
            false
        }
    };
    if inspect_lock {
        out.push(lock_check(data_dir));
    }
    if healthy {
        match statedb::leftovers(&db) {
            Err(e) => out.push(Check::new(
                Level::Warn,
                "leftover kernels",
                format!("cannot read kernel_sessions: {e}"),
            )),
            Ok(list) if list.is_empty() => {
                out.push(Check::new(Level::Ok, "leftover kernels", "none"))
            }
            Ok(list) => {
                let alive = list.iter().filter(|k| k.alive).count();
                let items = list
                    .iter()
                    .map(|k| {
                        format!(
                            "{} ({}, PID {}, {})",
                            if k.notebook.is_empty() {
                                "warm pool"
                            } else {
                                k.notebook.as_str()
                            },
                            k.kernel_name,
                            k.pid.map_or("?".into(), |p| p.to_string()),
                            if k.alive { "running" } else { "gone" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Check::new(
                    Level::Ok,
                    "leftover kernels",
                    format!(
                        "{alive} of {} recorded kernels still run: {items}; the next start \
                         reattaches the running ones and settles the rest",
                        list.len()
                    ),
                ));
            }
        }
    }
    out
}

/// Who holds `server.lock`, without taking it (a shared try-lock, released at once).
fn lock_check(data_dir: &Path) -> Check {
    let path = data_dir.join("server.lock");
    let Ok(file) = std::fs::File::open(&path) else {
        return Check::new(
            Level::Ok,
            "server.lock",
            "free (no server has used this data dir)",
        );
    };
    let holder = std::fs::read_to_string(&path).unwrap_or_default();
    let holder = holder.trim();
    match file.try_lock_shared() {
        Ok(()) => Check::new(
            Level::Ok,
            "server.lock",
            if holder.is_empty() {
                "free".to_string()
            } else {
                format!("free (stale: PID {holder} is gone; the next start takes it over)")
            },
        ),
        Err(_) => {
            let daemon = crate::http::daemon_file::read(data_dir)
                .filter(|d| d.pid.to_string() == holder)
                .map(|d| format!(", daemon at {}", d.url))
                .unwrap_or_default();
            Check::new(
                Level::Warn,
                "server.lock",
                format!(
                    "held by a running server (PID {holder}{daemon}): another serve or run on \
                     this data dir is refused; stop it first, or use `jupyter-mcp connect`"
                ),
            )
        }
    }
}

fn kernelspec_checks(required: bool, timeout: Duration) -> Vec<Check> {
    let Some(specs) = probe::on_own_thread(timeout.max(Duration::from_secs(30)), || {
        kernelspecs::check_all()
    }) else {
        return vec![Check::new(
            Level::Warn,
            "kernelspecs",
            "the kernelspec folders did not answer in time",
        )];
    };
    let searched = || {
        jmcp_kernel::spec::search_dirs()
            .iter()
            .map(|d| d.join("kernels").display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let usable = specs.iter().filter(|s| s.problem.is_none()).count();
    let mut out: Vec<Check> = specs
        .iter()
        .map(|s| match &s.problem {
            None => Check::new(
                Level::Ok,
                format!("kernelspec {}", s.name),
                format!("runs {} ({})", s.interpreter, s.file),
            ),
            Some(p) => Check::new(
                Level::Warn,
                format!("kernelspec {}", s.name),
                format!("{p} ({})", s.file),
            ),
        })
        .collect();
    if usable == 0 {
        out.push(Check::new(
            if required { Level::Fail } else { Level::Warn },
            "kernelspecs",
            format!(
                "no usable kernelspec found in {}: install ipykernel into the environment you \
                 want kernels to run in (pip install ipykernel) and put its bin first on PATH \
                 (or set VIRTUAL_ENV), or install jupyter-mcp into that environment",
                searched()
            ),
        ));
    }
    out
}

fn port_check(addr: SocketAddr, required: bool, data_dir: &Path) -> Check {
    match port::try_bind(addr) {
        Ok(()) => Check::new(Level::Ok, "port", format!("{addr} is free")),
        Err(e) => {
            let ours = crate::http::daemon_file::read_live(data_dir)
                .filter(|d| port::holders(addr.port()).iter().any(|h| h.pid == d.pid));
            if let Some(d) = ours {
                return Check::new(
                    Level::Ok,
                    "port",
                    format!(
                        "{addr} is served by this data dir's daemon (PID {}, {})",
                        d.pid, d.url
                    ),
                );
            }
            Check::new(
                if required { Level::Fail } else { Level::Warn },
                "port",
                port::describe_taken(addr, &e),
            )
        }
    }
}

/// The scope of `doctor`: `--bind` given makes a taken port fatal; without it the default
/// daemon address is checked and a taken port is only a warning (stdio needs no port).
fn doctor_scope(args: &DoctorArgs) -> anyhow::Result<Scope> {
    let cwd = std::env::current_dir()?;
    let root_dir = args.shared.root.clone().unwrap_or(cwd);
    let root = crate::paths::Root::new(&root_dir)
        .map(|r| r.path().to_path_buf())
        .map_err(|e| e.to_string());
    let default_bind: SocketAddr = crate::http::DEFAULT_BIND.parse()?;
    Ok(Scope {
        data_dir: args.shared.data_dir()?,
        root,
        bind: Some(args.bind.unwrap_or(default_bind)),
        bind_required: args.bind.is_some(),
        kernels_required: true,
        inspect_lock: true,
        timeout: probe::DEFAULT_TIMEOUT,
    })
}

/// `jupyter-mcp doctor`: prints one line per check on stdout; returns 0 when nothing failed,
/// 1 otherwise (warnings do not fail).
pub async fn run(args: &DoctorArgs) -> anyhow::Result<i32> {
    let scope = doctor_scope(args)?;
    let found = tokio::task::spawn_blocking(move || checks(&scope)).await?;
    for c in &found {
        println!("{c}");
    }
    Ok(if found.iter().any(|c| c.level == Level::Fail) {
        1
    } else {
        0
    })
}

/// The start-up pre-flight of `serve` and `run`: the same checks as `doctor`; warnings are
/// logged, and a failed check is an error that names every failure and its fix (the caller
/// exits non-zero before touching any state).
pub async fn preflight(scope: Scope) -> anyhow::Result<()> {
    let found = tokio::task::spawn_blocking(move || checks(&scope)).await?;
    let mut failed = Vec::new();
    for c in found {
        match c.level {
            Level::Ok => tracing::debug!("pre-flight {c}"),
            Level::Warn => tracing::warn!("pre-flight: {}: {}", c.name, c.detail),
            Level::Fail => failed.push(format!("{}: {}", c.name, c.detail)),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "not starting: pre-flight check failed (nothing was changed; `jupyter-mcp doctor` \
         lists every check):\n  {}",
        failed.join("\n  ")
    )
}

/// The pre-flight scope of a server on `config` (`bind`: the daemon's address, if any).
pub fn server_scope(
    config: &crate::config::Config,
    bind: Option<SocketAddr>,
    kernels_required: bool,
) -> Scope {
    Scope {
        data_dir: config.data_dir.clone(),
        root: Ok(config.root.path().to_path_buf()),
        bind,
        bind_required: true,
        kernels_required,
        inspect_lock: false,
        timeout: probe::DEFAULT_TIMEOUT,
    }
}
