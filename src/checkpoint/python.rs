//! The code the server runs in the kernel for checkpoints (IPython kernels), and the parsing of
//! its answers. Arguments are passed as one JSON document inside a Python string literal
//! (`json.loads("...")`), never by pasting values into code. Each snippet defines a function,
//! calls it, deletes it, and prints one line `__JMCP_CHECKPOINT__{json}`.
//!
//! Data file format (written by the kernel, read back only after the server verified it):
//! ```text
//! b"JMCPCKP1"
//! per saved variable:  b"V" u32le(len) header-json({"name": ...}) u64le(len) dill-bytes
//! end:                 b"E" u32le(len) trailer-json({"count": n})
//! ```
//! One dill entry per variable: a variable that cannot be serialized is cut off (the file is
//! truncated back to the start of its frame) and reported with its reason; open files,
//! sockets, generators and coroutines are refused explicitly, wherever they occur inside a
//! value (dill could "save" an open file as a path to reopen, which is not the object).

use serde_json::{json, Value};

use crate::engine::InternalRun;

use super::CheckpointError;

const MARKER: &str = "__JMCP_CHECKPOINT__";

/// Calls `function` (defined in `body`) with `args`, then removes it from the namespace.
fn call(body: &str, function: &str, args: &Value) -> String {
    // A JSON string literal is a valid Python string literal.
    let literal = Value::String(args.to_string()).to_string();
    format!(
        "{body}\ntry:\n    {function}(__import__('json').loads({literal}))\nfinally:\n    del {function}\n"
    )
}

/// Saves `variables` (None: every user global) to `path` (must not exist).
pub fn save_code(path: &str, variables: Option<&[String]>) -> String {
    call(
        &expand(SAVE),
        "__jmcp_checkpoint_save",
        &json!({ "path": path, "variables": variables }),
    )
}

/// Like [`save_code`], into file `file_name` of the kernel's own temp directory (a remote
/// kernel, whose file system is not ours); the answer's `path` names the file.
pub fn save_code_in_kernel_tempdir(file_name: &str, variables: Option<&[String]>) -> String {
    call(
        &expand(SAVE),
        "__jmcp_checkpoint_save",
        &json!({ "path": file_name, "variables": variables, "in_tempdir": true }),
    )
}

/// Reads `path` into memory, refuses it unless it has `bytes` bytes with SHA-256 `sha256`,
/// then restores each variable into the kernel's globals.
pub fn load_code(path: &str, bytes: u64, sha256: &str) -> String {
    call(
        &expand(LOAD),
        "__jmcp_checkpoint_load",
        &json!({ "path": path, "bytes": bytes, "sha256": sha256 }),
    )
}

/// Like [`load_code`] for a file the kernel holds in its own temp directory (uploaded over
/// the wire): the file is removed once read, whatever the outcome.
pub fn load_code_removing(path: &str, bytes: u64, sha256: &str) -> String {
    call(
        &expand(LOAD),
        "__jmcp_checkpoint_load",
        &json!({ "path": path, "bytes": bytes, "sha256": sha256, "remove": true }),
    )
}

/// Lists the kernel's installed distributions and Python version.
pub fn packages_code() -> String {
    call(PACKAGES, "__jmcp_checkpoint_packages", &json!({}))
}

/// Installs `requirements` (`name==version`) with the kernel's own pip, one at a time.
pub fn install_code(requirements: &[String]) -> String {
    call(
        INSTALL,
        "__jmcp_checkpoint_install",
        &json!({ "requirements": requirements }),
    )
}

/// The JSON answer of a snippet; a kernel-side error becomes [`CheckpointError::Kernel`].
pub fn answer(run: &InternalRun, what: &str) -> Result<Value, CheckpointError> {
    // The last marker, wherever it starts (user code run by a pickler may print without a
    // final newline).
    let line = run
        .stdout
        .rfind(MARKER)
        .map(|i| run.stdout[i..].lines().next().unwrap_or(""));
    let Some(line) = line else {
        if run
            .error_summary()
            .is_some_and(|e| e.starts_with("KeyboardInterrupt"))
        {
            return Err(CheckpointError::Kernel(format!(
                "the kernel was interrupted before it could {what} (interrupt_kernel, a \
                 cancellation or a restart arrived meanwhile) and did not finish: try again"
            )));
        }
        let why = run
            .error_summary()
            .or_else(|| run.stderr.lines().last().map(str::to_string))
            .unwrap_or_else(|| "it printed no answer".into());
        return Err(CheckpointError::Kernel(format!(
            "the kernel could not {what} ({why}); checkpoints need an IPython kernel (python3)"
        )));
    };
    let v: Value = serde_json::from_str(&line[MARKER.len()..])
        .map_err(|e| CheckpointError::Kernel(format!("unreadable answer from the kernel: {e}")))?;
    if let Some(err) = v.get("error").and_then(Value::as_str) {
        return Err(CheckpointError::Kernel(err.to_string()));
    }
    Ok(v)
}

/// Is `req` a plain `name==version` we are willing to hand to pip?
pub fn is_plain_requirement(req: &str) -> bool {
    let Some((name, version)) = req.split_once("==") else {
        return false;
    };
    let ok = |s: &str, extra: &str| {
        !s.is_empty()
            && s.len() <= 200
            && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c))
    };
    ok(name, "") && ok(version, "+!")
}

const COMMON: &str = r#"
    import json
    def done(payload):
        print('__JMCP_CHECKPOINT__' + json.dumps(payload), flush=True)
    def type_name(v):
        t = type(v)
        return t.__qualname__ if t.__module__ == 'builtins' else t.__module__ + '.' + t.__qualname__
    try:
        import dill
    except Exception as e:
        done({'error': "dill cannot be imported in this kernel (%s: %s): install it in the kernel's "
                       "environment (pip install dill), then retry" % (type(e).__name__, e)})
        return
"#;

const SAVE: &str = r#"
def __jmcp_checkpoint_save(args):
    __COMMON__
    import io, os, platform, socket, struct, sys, types
    import importlib.metadata as md
    ip = get_ipython()
    ns = ip.user_ns
    hidden = getattr(ip, 'user_ns_hidden', {})
    internal = {'In', 'Out', 'exit', 'quit', 'get_ipython'}
    refused = (io.IOBase, socket.socket, types.GeneratorType, types.CoroutineType,
               types.AsyncGeneratorType, types.FrameType)
    requested = args.get('variables')
    skipped = []
    if requested is None:
        names = [n for n, v in list(ns.items())
                 if not n.startswith('_') and n not in internal
                 and not (n in hidden and hidden[n] is v)]
    else:
        names = []
        for n in requested:
            if n in ns:
                names.append(n)
            else:
                skipped.append({'name': n, 'reason': 'not defined in the kernel'})

    class Refused(TypeError):
        pass

    class Recorder(dill.Pickler):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.modules = set()
            self.seen = set()
        def save(self, obj, save_persistent_id=True):
            t = type(obj)
            if t not in self.seen:
                self.seen.add(t)
                if issubclass(t, refused):
                    if issubclass(t, io.IOBase):
                        kind = 'an open file or stream'
                    elif issubclass(t, socket.socket):
                        kind = 'a socket'
                    else:
                        kind = 'a running ' + t.__name__
                    raise Refused('%s (%s) cannot be saved; re-create it after loading'
                                  % (kind, type_name(obj)))
                self.modules.add(t.__module__)
            if isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType)):
                self.modules.add(getattr(obj, '__module__', None))
            elif isinstance(obj, types.ModuleType):
                self.modules.add(obj.__name__)
            return super().save(obj, save_persistent_id)

    versions, packages = {}, []
    for d in md.distributions():
        try:
            name = d.metadata['Name']
        except Exception:
            name = None
        if name and name.lower() not in versions:
            versions[name.lower()] = d.version
            packages.append({'name': name, 'version': d.version})
    packages.sort(key=lambda p: p['name'].lower())
    try:
        dist_of = md.packages_distributions()
    except Exception:
        dist_of = {}

    saved = []
    path = args['path']
    if args.get('in_tempdir'):
        import tempfile
        path = os.path.join(tempfile.gettempdir(), path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, 'wb') as f:
        f.write(b'JMCPCKP1')
        for name in names:
            value = ns[name]
            start = f.tell()
            header = json.dumps({'name': name}).encode()
            f.write(b'V' + struct.pack('<I', len(header)) + header + struct.pack('<Q', 0))
            blob_start = f.tell()
            p = Recorder(f, protocol=5, byref=False, recurse=False)
            try:
                p.dump(value)
            except Exception as e:
                f.seek(start)
                f.truncate()
                reason = str(e) if isinstance(e, Refused) else '%s: %s' % (type(e).__name__, e)
                skipped.append({'name': name, 'reason': reason[:500]})
                continue
            finally:
                p.clear_memo()
            end = f.tell()
            f.seek(blob_start - 8)
            f.write(struct.pack('<Q', end - blob_start))
            f.seek(end)
            dists = set()
            for m in p.modules:
                if not m:
                    continue
                for dn in dist_of.get(m.split('.')[0], ()):
                    v = versions.get(dn.lower())
                    if v is not None:
                        dists.add(dn + '==' + v)
            saved.append({'name': name, 'type': type_name(value), 'bytes': end - blob_start,
                          'packages': sorted(dists)})
        trailer = json.dumps({'count': len(saved)}).encode()
        f.write(b'E' + struct.pack('<I', len(trailer)) + trailer)
        f.flush()
        os.fsync(f.fileno())
    done({'saved': saved, 'skipped': skipped, 'python_version': platform.python_version(),
          'python_executable': sys.executable, 'packages': packages, 'path': path})
"#;

const LOAD: &str = r#"
def __jmcp_checkpoint_load(args):
    __COMMON__
    import hashlib, hmac, struct
    size = args['bytes']
    h = hashlib.sha256()
    entries = []
    class Changed(Exception):
        pass
    try:
        with open(args['path'], 'rb') as f:
            consumed = 0
            def take(n):
                nonlocal consumed
                if n < 0 or n > size - consumed:
                    raise Changed('a length field points past the signed size')
                b = f.read(n)
                if len(b) != n:
                    raise Changed('it is shorter than when it was verified')
                consumed += n
                h.update(b)
                return b
            if take(8) != b'JMCPCKP1':
                raise Changed('unknown file format')
            while True:
                tag = take(1)
                if tag == b'V':
                    (hl,) = struct.unpack('<I', take(4))
                    header = take(hl)
                    (bl,) = struct.unpack('<Q', take(8))
                    entries.append((header, take(bl)))
                elif tag == b'E':
                    (tl,) = struct.unpack('<I', take(4))
                    take(tl)
                    break
                else:
                    raise Changed('unknown frame')
            if consumed != size or f.read(1):
                raise Changed('it is longer than when it was verified')
    except (Changed, OSError) as e:
        done({'refused': 'the checkpoint file changed after the server verified it (%s); '
                         'nothing was loaded' % e})
        return
    finally:
        if args.get('remove'):
            import os
            try:
                os.unlink(args['path'])
            except OSError:
                pass
    if not hmac.compare_digest(h.hexdigest(), args['sha256']):
        done({'refused': 'the checkpoint file changed after the server verified it (SHA-256 '
                         'mismatch); nothing was loaded'})
        return
    ns = get_ipython().user_ns
    restored, skipped = [], []
    entries.reverse()
    while entries:
        header, blob = entries.pop()
        name = json.loads(header)['name']
        try:
            value = dill.loads(blob)
        except Exception as e:
            skipped.append({'name': name, 'reason': ('%s: %s' % (type(e).__name__, e))[:500]})
            continue
        finally:
            del blob
        ns[name] = value
        restored.append({'name': name, 'type': type_name(value)})
    done({'restored': restored, 'skipped': skipped})
"#;

const PACKAGES: &str = r#"
def __jmcp_checkpoint_packages(args):
    import json, platform, sys
    import importlib.metadata as md
    seen, packages = set(), []
    for d in md.distributions():
        try:
            name = d.metadata['Name']
        except Exception:
            name = None
        if name and name.lower() not in seen:
            seen.add(name.lower())
            packages.append({'name': name, 'version': d.version})
    print('__JMCP_CHECKPOINT__' + json.dumps({'packages': packages,
          'python_version': platform.python_version(), 'python_executable': sys.executable}),
          flush=True)
"#;

const INSTALL: &str = r#"
def __jmcp_checkpoint_install(args):
    import importlib, json, subprocess, sys
    results = []
    for req in args['requirements']:
        try:
            p = subprocess.run([sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check',
                                '--no-input', req], capture_output=True, text=True, timeout=900)
            ok = p.returncode == 0
            tail = (p.stderr or p.stdout or '').strip().splitlines()[-3:]
            results.append({'requirement': req, 'ok': ok,
                            'error': None if ok else ' | '.join(tail)[:500] or 'pip exited with %d' % p.returncode})
        except Exception as e:
            results.append({'requirement': req, 'ok': False, 'error': '%s: %s' % (type(e).__name__, e)})
    importlib.invalidate_caches()
    print('__JMCP_CHECKPOINT__' + json.dumps({'results': results}), flush=True)
"#;

/// A snippet with the shared prologue inlined.
fn expand(template: &str) -> String {
    template.replace("    __COMMON__\n", COMMON.trim_start_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_a_string_literal() {
        let code = save_code("/tmp/a'b\"c\\d\n.dill", Some(&["x".into(), "é".into()]));
        assert!(
            code.contains(r#"loads("{\"path\":\"/tmp/a'b\\\"c\\\\d\\n.dill\""#),
            "{code}"
        );
        assert!(!code.contains("__COMMON__"));
        assert!(code.contains("del __jmcp_checkpoint_save"));
    }

    #[test]
    fn answers() {
        let run = |stdout: &str, reply: Value| InternalRun {
            stdout: stdout.into(),
            stderr: String::new(),
            reply,
        };
        let ok = json!({"status": "ok"});
        let v = answer(
            &run(
                "noise without newline__JMCP_CHECKPOINT__{\"a\": 1}\n",
                ok.clone(),
            ),
            "x",
        );
        assert_eq!(v.unwrap()["a"], 1);
        let e = answer(
            &run("__JMCP_CHECKPOINT__{\"error\": \"dill missing\"}\n", ok),
            "x",
        );
        assert!(e.unwrap_err().to_string().contains("dill missing"));
        let failed = json!({"status": "error", "ename": "NameError", "evalue": "get_ipython"});
        let e = answer(&run("", failed), "save its variables")
            .unwrap_err()
            .to_string();
        assert!(e.contains("NameError") && e.contains("IPython"), "{e}");
    }

    #[test]
    fn requirements() {
        assert!(is_plain_requirement("tabulate==0.9.0"));
        assert!(is_plain_requirement("torch==2.1.0+cpu"));
        assert!(is_plain_requirement("zope.interface==6.0"));
        assert!(!is_plain_requirement("--index-url=http://x==1"));
        assert!(!is_plain_requirement("a==1; rm -rf /"));
        assert!(!is_plain_requirement("a>=1"));
        assert!(!is_plain_requirement("==1"));
    }
}
