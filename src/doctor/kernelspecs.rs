//! Pre-flight check of the installed kernelspecs: each one's interpreter (`argv[0]`, after a
//! bare `python` was resolved to its environment's interpreter) must exist and be executable.

use std::path::Path;

use jmcp_kernel::spec::KernelSpec;

/// One kernelspec as pre-flight sees it.
#[derive(Debug, Clone)]
pub struct SpecStatus {
    /// Kernelspec name.
    pub name: String,
    /// The command it runs (`argv[0]`, resolved).
    pub interpreter: String,
    /// Its `kernel.json`.
    pub file: String,
    /// `None` when the interpreter is there; else what is wrong and how to fix it.
    pub problem: Option<String>,
}

/// The status of every installed kernelspec (blocking: reads the kernelspec folders).
pub fn check_all() -> Vec<SpecStatus> {
    jmcp_kernel::list_kernelspecs().iter().map(check).collect()
}

/// Whether `spec`'s interpreter can be run, with the fix when it cannot.
pub fn check(spec: &KernelSpec) -> SpecStatus {
    let argv0 = spec.argv.first().cloned().unwrap_or_default();
    let file = spec.resource_dir.join("kernel.json");
    let runnable = if argv0.contains('/') {
        is_executable(Path::new(&argv0))
    } else {
        jmcp_kernel::spec::which(&argv0).is_some()
    };
    let problem = (!runnable).then(|| {
        format!(
            "its interpreter {argv0} is gone (the environment it was installed from was moved \
             or deleted): reinstall it from a Python that has ipykernel (`PYTHON -m ipykernel \
             install --user --name {name}`), or delete {dir}",
            name = spec.name,
            dir = spec.resource_dir.display()
        )
    });
    SpecStatus {
        name: spec.name.clone(),
        interpreter: argv0,
        file: file.display().to_string(),
        problem,
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, argv0: &str) -> KernelSpec {
        let d = dir.join("share/jupyter/kernels/gone");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("kernel.json"),
            serde_json::json!({"argv": [argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                               "display_name": "Gone", "language": "python"})
            .to_string(),
        )
        .unwrap();
        jmcp_kernel::spec::read_kernelspec("gone", &d)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_vanished_interpreter_is_named_with_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("old-venv/bin/python");
        let s = check(&spec(tmp.path(), missing.to_str().unwrap()));
        let problem = s.problem.unwrap();
        assert!(problem.contains(missing.to_str().unwrap()), "{problem}");
        assert!(
            problem.contains("ipykernel install --user --name gone"),
            "{problem}"
        );
    }

    #[test]
    fn an_existing_interpreter_passes() {
        let tmp = tempfile::tempdir().unwrap();
        let s = check(&spec(tmp.path(), "/bin/sh"));
        assert!(s.problem.is_none());
    }
}
