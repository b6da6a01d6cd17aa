//! `jupyter-mcp doctor`: pre-flight checks, one line each (SPEC §1).

use crate::cli::Shared;
use crate::store::Store;

/// Prints one line per check; returns 0 when all pass, 1 otherwise.
pub async fn run(shared: &Shared) -> anyhow::Result<i32> {
    let cwd = std::env::current_dir()?;
    let mut failed = false;
    let mut line = |ok: bool, what: &str, detail: String| {
        failed |= !ok;
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
    };
    let specs = jmcp_kernel::list_kernelspecs();
    line(
        !specs.is_empty(),
        "kernelspecs",
        if specs.is_empty() {
            "none found; install ipykernel (pip install ipykernel) in the environment on PATH"
                .into()
        } else {
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    match shared.config(&cwd, false) {
        Err(e) => line(false, "configuration", e.to_string()),
        Ok(cfg) => {
            line(true, "root", cfg.root.path().display().to_string());
            let probe = cfg.data_dir.join(".doctor-probe");
            let started = std::time::Instant::now();
            let writable = std::fs::create_dir_all(&cfg.data_dir)
                .and_then(|_| std::fs::write(&probe, b"probe"))
                .and_then(|_| std::fs::File::open(&probe)?.sync_all())
                .and_then(|_| std::fs::remove_file(&probe));
            line(
                writable.is_ok(),
                "data dir writable",
                match writable {
                    Ok(()) => format!(
                        "{} ({} ms)",
                        cfg.data_dir.display(),
                        started.elapsed().as_millis()
                    ),
                    Err(e) => format!("{}: {e}", cfg.data_dir.display()),
                },
            );
            let db = Store::open(&cfg.db_path()).and_then(|s| {
                s.call_blocking(|c| {
                    let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
                    Ok(r)
                })
            });
            match db {
                Ok(r) => line(r == "ok", "state.db integrity", r),
                Err(e) => line(false, "state.db", e.to_string()),
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
