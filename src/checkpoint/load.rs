//! `load_environment`: verify, compare packages (install missing ones on request), restore.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

use super::files::{self, Package};
use super::{blocking, check_name, parse, path_str, python, refused, service, wire};
use super::{CheckpointError, CheckpointPaths, LoadReport, MissingPackage, Result};
use super::{RestoredVariable, SkippedVariable, VersionMismatch};
use crate::engine::Engine;
use crate::metrics;

#[derive(Deserialize)]
struct PackagesAnswer {
    packages: Vec<Package>,
    python_version: String,
}

#[derive(Deserialize)]
struct LoadAnswer {
    #[serde(default)]
    refused: Option<String>,
    #[serde(default)]
    restored: Vec<RestoredVariable>,
    #[serde(default)]
    skipped: Vec<SkippedVariable>,
}

#[derive(Deserialize)]
struct InstallResult {
    requirement: String,
    ok: bool,
    error: Option<String>,
}

/// PEP 503 normalized distribution name.
fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.extend(c.to_lowercase());
        }
    }
    out
}

fn minor(version: &str) -> &str {
    let mut dots = version.match_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => &version[..i],
        _ => version,
    }
}

/// Verifies checkpoint `name` of `notebook` and restores its variables into the notebook's
/// kernel (started if none runs). With `auto_install`, packages the variables need and the
/// kernel lacks are installed first, in their saved versions, with the kernel's own pip.
pub async fn load(
    engine: &Engine,
    notebook: &str,
    name: &str,
    auto_install: bool,
    timeout: Duration,
) -> Result<LoadReport> {
    check_name(name)?;
    let path = engine.resolve_notebook(notebook).await?;
    let svc = service(engine);
    let key = svc.key().await?;
    let paths = CheckpointPaths::new(&svc.root, &path.rel, name);
    let file_lock = svc.file_lock(&paths.stem);
    let _guard = file_lock.lock().await;
    let started = Instant::now();

    // 1. Verify everything before the kernel touches the file.
    let (vp, rel, owned_name) = (paths.clone(), path.rel.clone(), name.to_string());
    let meta = blocking(move || files::verify(&vp, &key, &rel, &owned_name))
        .await
        .map_err(refused)?
        .ok_or_else(|| CheckpointError::NotFound {
            notebook: path.rel.clone(),
            name: name.to_string(),
        })?;
    let verify_time = started.elapsed();
    let mut notes = Vec::new();

    // 2. A kernel to restore into.
    if !engine.has_live_kernel(&path) {
        engine.start_kernel(&path, None).await?;
        notes.push("a kernel was started for the notebook".to_string());
    }

    // 3. Packages: snapshot vs the kernel's environment.
    let current = current_packages(engine, &path, timeout).await?;
    let mut needed: BTreeMap<String, (Package, Vec<String>)> = BTreeMap::new();
    for v in &meta.variables {
        for req in &v.packages {
            if let Some((n, ver)) = req.split_once("==") {
                let entry = needed.entry(normalize(n)).or_insert_with(|| {
                    (
                        Package {
                            name: n.to_string(),
                            version: ver.to_string(),
                        },
                        Vec::new(),
                    )
                });
                entry.1.push(v.name.clone());
            }
        }
    }
    let installed_now = |pkgs: &[Package]| -> HashMap<String, String> {
        pkgs.iter()
            .map(|p| (normalize(&p.name), p.version.clone()))
            .collect()
    };
    let mut have = installed_now(&current.packages);
    let mut missing: Vec<MissingPackage> = needed
        .iter()
        .filter(|(n, _)| !have.contains_key(*n))
        .map(|(_, (p, vars))| MissingPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            needed_by: vars.clone(),
            installed: false,
            error: None,
        })
        .collect();
    if auto_install && !missing.is_empty() {
        let reqs: Vec<String> = missing
            .iter()
            .map(|m| format!("{}=={}", m.name, m.version))
            .filter(|r| python::is_plain_requirement(r))
            .collect();
        let results: Vec<InstallResult> = if reqs.is_empty() {
            Vec::new()
        } else {
            let install_timeout = timeout.max(Duration::from_secs(900 * reqs.len() as u64));
            let run = engine
                .run_internal(&path, &python::install_code(&reqs), install_timeout)
                .await?;
            let v = python::answer(&run, "install packages")?;
            parse::<Vec<InstallResult>>(
                v.get("results").cloned().unwrap_or(Value::Null),
                "install",
            )?
        };
        have = installed_now(&current_packages(engine, &path, timeout).await?.packages);
        for m in &mut missing {
            let req = format!("{}=={}", m.name, m.version);
            let result = results.iter().find(|r| r.requirement == req);
            m.installed = have.get(&normalize(&m.name)) == Some(&m.version);
            m.error = match (m.installed, result) {
                (true, _) => None,
                (false, Some(r)) if !r.ok => r.error.clone(),
                (false, Some(_)) => Some("pip succeeded but the package is still not visible to the kernel; restart the kernel and load again".into()),
                (false, None) => Some("not a plain name==version requirement; install it by hand".into()),
            };
        }
    }
    let still_missing: Vec<&MissingPackage> = missing.iter().filter(|m| !m.installed).collect();
    metrics::checkpoint()
        .missing_dependencies_count
        .set(still_missing.len() as i64);
    let other_missing_packages: Vec<Package> = meta
        .packages
        .iter()
        .filter(|p| {
            let n = normalize(&p.name);
            !have.contains_key(&n) && !needed.contains_key(&n)
        })
        .cloned()
        .collect();
    let version_mismatches: Vec<VersionMismatch> = meta
        .packages
        .iter()
        .filter_map(|p| {
            let now = have.get(&normalize(&p.name))?;
            (now != &p.version).then(|| VersionMismatch {
                name: p.name.clone(),
                saved: p.version.clone(),
                installed: now.clone(),
            })
        })
        .collect();
    if minor(&meta.python_version) != minor(&current.python_version) {
        notes.push(format!(
            "saved with Python {}, the kernel runs Python {}: functions, classes and lambdas \
             may not load across Python versions",
            meta.python_version, current.python_version
        ));
    }

    // 4. Restore: the kernel re-checks the SHA-256 of the bytes it read before unpickling.
    let data = paths.data(&meta.generation);
    let code = match engine.remote_kernel_of(&path) {
        // A remote kernel cannot read our file: it is sent over the wire, and the kernel's
        // load code refuses it unless its size and SHA-256 are the verified ones.
        Some((client, _)) => {
            let file = wire::upload(engine, &path, &client, &data, timeout).await?;
            python::load_code_removing(&file, meta.bytes, &meta.sha256)
        }
        None => python::load_code(path_str(&data)?, meta.bytes, &meta.sha256),
    };
    let kernel_started = Instant::now();
    let run = engine.run_internal(&path, &code, timeout).await?;
    let answer: LoadAnswer = parse(python::answer(&run, "restore the variables")?, "load")?;
    if let Some(what) = answer.refused {
        return Err(refused(CheckpointError::Integrity {
            notebook: path.rel.clone(),
            name: name.to_string(),
            what,
        }));
    }
    let kernel_time = kernel_started.elapsed();
    let mut skipped = answer.skipped;
    let mut missing_package_variables = Vec::new();
    for s in &mut skipped {
        let lacking: Vec<String> = still_missing
            .iter()
            .filter(|m| m.needed_by.contains(&s.name))
            .map(|m| format!("{}=={}", m.name, m.version))
            .collect();
        if !lacking.is_empty() {
            s.reason = format!(
                "{} (needs {}, not installed in the kernel: load again with auto_install=true, \
                 or install it yourself)",
                s.reason,
                lacking.join(", ")
            );
            missing_package_variables.push(s.name.clone());
        }
    }
    metrics::checkpoint()
        .load_duration_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(LoadReport {
        notebook: meta.notebook,
        name: meta.name,
        created_at: meta.created_at,
        bytes: meta.bytes,
        restored: answer.restored,
        skipped,
        missing_packages: missing,
        other_missing_packages,
        version_mismatches,
        missing_package_variables,
        python_version_saved: meta.python_version,
        python_version_kernel: current.python_version,
        notes,
        verify_seconds: verify_time.as_secs_f64(),
        kernel_seconds: kernel_time.as_secs_f64(),
    })
}

async fn current_packages(
    engine: &Engine,
    path: &crate::paths::RootedPath,
    timeout: Duration,
) -> Result<PackagesAnswer> {
    let run = engine
        .run_internal(path, &python::packages_code(), timeout)
        .await?;
    parse(
        python::answer(&run, "list its packages")?,
        "the package list",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pep503() {
        assert_eq!(normalize("Foo.Bar_baz--Qux"), "foo-bar-baz-qux");
        assert_eq!(normalize("tabulate"), "tabulate");
    }

    #[test]
    fn python_minor() {
        assert_eq!(minor("3.11.7"), "3.11");
        assert_eq!(minor("3.12"), "3.12");
    }
}
