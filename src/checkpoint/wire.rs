//! Checkpoints of a remote kernel (SPEC §10, §6): its file system is not ours, so the checkpoint
//! bytes travel over the Jupyter messaging protocol, as binary buffers of comm messages
//! (messaging spec "Custom Messages"), in chunks of [`CHUNK`] bytes with at most [`WINDOW`]
//! chunks in flight. The file format, metadata and signatures are those of a local checkpoint,
//! so a checkpoint saved from a remote kernel loads into a local one and the other way round.
//!
//! - Save: the kernel writes the checkpoint (the same code as locally) into its own temp
//!   directory; the server asks for it chunk by chunk on a `jmcp_checkpoint` comm and streams
//!   each chunk through HMAC-SHA256 and SHA-256 into a temp file of `DATA_DIR/checkpoints`
//!   (one writer thread, a bounded queue: server memory is a few chunks whatever the size),
//!   fsyncs it, compares the SHA-256 with the one the kernel computed over the bytes it sent,
//!   and commits it like a local save (`files::commit_hashed`: rename, signed metadata). The
//!   kernel's temp file is removed when the transfer ends, whatever the outcome.
//! - Load: the server verifies the checkpoint exactly as locally (nothing is sent before the
//!   signature and the HMAC over every byte hold), sends it chunk by chunk into a temp file of
//!   the kernel, and the kernel's load code refuses it unless its size and SHA-256 are the
//!   signed ones, before unpickling anything; the kernel removes the file once read.
//!
//! Each comm request is answered by one IOPub `comm_msg` whose parent is the request, then
//! `status: idle`; both are awaited, so nothing is left for the orphan buffer. A step that gets
//! no answer within the tool's `timeout` fails the transfer (a running cell delays it: shell
//! requests queue behind it).

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hmac::Mac as _;
use jmcp_kernel::{KernelClient, KernelEvent, RequestHandle};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::key::SecretKey;
use super::name::hex;
use super::{python, sign, CheckpointError, Result};
use crate::engine::Engine;
use crate::paths::RootedPath;

/// Bytes per comm message (well under the 10 MiB default WebSocket message limit of
/// Jupyter Server and Kernel Gateway).
pub const CHUNK: usize = 1 << 20;
/// Chunk requests in flight at once.
pub const WINDOW: usize = 4;
/// The kernel-side comm target.
const TARGET: &str = "jmcp_checkpoint";
const MARKER: &str = "__JMCP_CHECKPOINT__";

/// The comm of one transfer.
struct Comm<'a> {
    client: &'a KernelClient,
    id: String,
    timeout: Duration,
}

fn kernel_err(what: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Kernel(format!(
        "moving the checkpoint over the remote kernel's messaging protocol failed: {what}"
    ))
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

impl<'a> Comm<'a> {
    /// Registers the comm target in the kernel (idempotent) and opens a comm with `data`.
    async fn open(
        engine: &Engine,
        path: &RootedPath,
        client: &'a KernelClient,
        data: Value,
        timeout: Duration,
    ) -> Result<(Comm<'a>, Value)> {
        let run = engine.run_internal(path, &register_code(), timeout).await?;
        python::answer(&run, "set up the checkpoint transfer")?;
        let comm = Comm {
            client,
            id: uuid::Uuid::new_v4().to_string(),
            timeout,
        };
        let mut h = client
            .comm_open(&comm.id, TARGET, object(data))
            .await
            .map_err(kernel_err)?;
        let (answer, _) = comm.answer(&mut h).await?;
        Ok((comm, answer))
    }

    async fn send(&self, data: Value, buffers: Vec<Vec<u8>>) -> Result<RequestHandle> {
        self.client
            .comm_msg(&self.id, object(data), buffers)
            .await
            .map_err(kernel_err)
    }

    /// The kernel's answer to one request (its `data` and buffers), once the kernel is idle
    /// again after it.
    async fn answer(&self, h: &mut RequestHandle) -> Result<(Value, Vec<Vec<u8>>)> {
        let wait = async {
            let mut got: Option<(Value, Vec<Vec<u8>>)> = None;
            loop {
                match h.next().await {
                    KernelEvent::Message(m) => {
                        if m.msg_type == "comm_msg"
                            && m.content.get("comm_id").and_then(Value::as_str) == Some(&self.id)
                        {
                            let data = m.content.get("data").cloned().unwrap_or(Value::Null);
                            got = Some((data, m.buffers));
                        } else if m.execution_state() == Some("idle") {
                            break;
                        }
                    }
                    KernelEvent::Died(reason) => {
                        return Err(kernel_err(format!("the kernel died ({reason})")))
                    }
                }
            }
            got.ok_or_else(|| kernel_err("the kernel handled a request without answering it"))
        };
        let (data, buffers) = tokio::time::timeout(self.timeout, wait)
            .await
            .map_err(|_| {
                kernel_err(format!(
                    "no answer from the kernel within {:.0} s (a cell may still be running); \
                     try again when it is idle",
                    self.timeout.as_secs_f64()
                ))
            })??;
        if data.get("ok").and_then(Value::as_bool) != Some(true) {
            let why = data
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given");
            return Err(kernel_err(format!("the kernel said: {why}")));
        }
        Ok((data, buffers))
    }

    /// Ends the transfer; `remove` deletes the kernel's file. Returns the kernel's byte count
    /// and SHA-256 of what it sent or received.
    async fn close(&self, remove: bool) -> Result<(u64, String)> {
        let mut h = self
            .send(json!({"op": "close", "remove": remove}), vec![])
            .await?;
        let (data, _) = self.answer(&mut h).await?;
        let bytes = data.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        let sha = data
            .get("sha256")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok((bytes, sha))
    }

    /// Best effort after a failure: close the kernel's file and remove it.
    async fn abort(&self) {
        if let Ok(mut h) = self.send(json!({"op": "abort"}), vec![]).await {
            let _ = self.answer(&mut h).await;
        }
    }
}

/// Removes a file from the remote kernel's file system (best effort).
pub async fn discard(engine: &Engine, path: &RootedPath, kernel_file: &str, timeout: Duration) {
    let literal = Value::String(kernel_file.to_string());
    let code = format!(
        "import os as __jmcp_os\ntry:\n    __jmcp_os.unlink({literal})\nexcept OSError:\n    pass\nfinally:\n    del __jmcp_os\n"
    );
    let _ = engine.run_internal(path, &code, timeout).await;
}

/// Fetches `kernel_file` (written by the kernel's save code, removed here in every case) into
/// the new file `dest`, hashing it on the way. Returns the digests of what was written and
/// fsynced; errors (and removes `dest`) when the kernel's SHA-256 of what it sent differs.
pub async fn download(
    engine: &Engine,
    path: &RootedPath,
    client: &KernelClient,
    kernel_file: &str,
    dest: &Path,
    key: &SecretKey,
    timeout: Duration,
) -> Result<sign::Streamed> {
    let opened = Comm::open(
        engine,
        path,
        client,
        json!({"op": "read", "path": kernel_file}),
        timeout,
    )
    .await;
    let (comm, answer) = match opened {
        Ok(x) => x,
        Err(e) => {
            discard(engine, path, kernel_file, timeout).await;
            return Err(e);
        }
    };
    let size = answer.get("size").and_then(Value::as_u64).unwrap_or(0);
    let (tx, rx) = mpsc::channel::<Vec<u8>>(2);
    let writer = spawn_writer(dest.to_path_buf(), sign::mac(key), rx);
    let pulled = pull(&comm, size, &tx).await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| CheckpointError::Internal(format!("the checkpoint writer failed: {e}")))?;
    let result = match (pulled, written) {
        (Ok(()), Ok(streamed)) => match comm.close(true).await {
            Ok((bytes, sha)) if bytes == streamed.bytes && sha == hex(&streamed.sha256) => {
                return Ok(streamed)
            }
            Ok((bytes, _)) => Err(kernel_err(format!(
                "the kernel sent {bytes} bytes but {} arrived, or their SHA-256 differs",
                streamed.bytes
            ))),
            Err(e) => Err(e),
        },
        (Err(e), _) | (_, Err(e)) => {
            comm.abort().await;
            Err(e)
        }
    };
    let _ = std::fs::remove_file(dest);
    result
}

/// Asks for every chunk in order, [`WINDOW`] at a time, and queues each to the writer.
async fn pull(comm: &Comm<'_>, size: u64, tx: &mpsc::Sender<Vec<u8>>) -> Result<()> {
    let mut asked = 0u64;
    let mut inflight: VecDeque<(u64, u64, RequestHandle)> = VecDeque::new();
    loop {
        while asked < size && inflight.len() < WINDOW {
            let n = (size - asked).min(CHUNK as u64);
            let h = comm
                .send(json!({"op": "read", "offset": asked, "size": n}), vec![])
                .await?;
            inflight.push_back((asked, n, h));
            asked += n;
        }
        let Some((offset, n, mut h)) = inflight.pop_front() else {
            return Ok(());
        };
        let (_, mut buffers) = comm.answer(&mut h).await?;
        let chunk = if buffers.is_empty() {
            Vec::new()
        } else {
            buffers.swap_remove(0)
        };
        if chunk.len() as u64 != n {
            return Err(kernel_err(format!(
                "the chunk at byte {offset} has {} bytes instead of {n} (the kernel's file changed?)",
                chunk.len()
            )));
        }
        if tx.send(chunk).await.is_err() {
            // The writer stopped: its error is reported by the caller.
            return Ok(());
        }
    }
}

/// A thread that writes the chunks into the new file `dest` (0600), feeding the HMAC and a
/// SHA-256, and fsyncs it at the end.
fn spawn_writer(
    dest: PathBuf,
    mut mac: sign::HmacSha256,
    mut rx: mpsc::Receiver<Vec<u8>>,
) -> tokio::task::JoinHandle<Result<sign::Streamed>> {
    tokio::task::spawn_blocking(move || {
        let io = |action: &str, e| CheckpointError::Io {
            action: action.to_string(),
            path: dest.clone(),
            source: e,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest)
            .map_err(|e| io("create the checkpoint file", e))?;
        let mut sha = Sha256::new();
        let mut bytes = 0u64;
        while let Some(chunk) = rx.blocking_recv() {
            f.write_all(&chunk)
                .map_err(|e| io("write the checkpoint file", e))?;
            mac.update(&chunk);
            sha.update(&chunk);
            bytes += chunk.len() as u64;
        }
        f.sync_all()
            .map_err(|e| io("sync the checkpoint file", e))?;
        Ok(sign::Streamed {
            bytes,
            sha256: sha.finalize().into(),
            mac,
        })
    })
}

/// Sends the verified data file `data` into a new temp file of the kernel. Returns the
/// kernel's path of it (for [`python::load_code_removing`]).
pub async fn upload(
    engine: &Engine,
    path: &RootedPath,
    client: &KernelClient,
    data: &Path,
    timeout: Duration,
) -> Result<String> {
    let (comm, answer) = Comm::open(engine, path, client, json!({"op": "write"}), timeout).await?;
    let kernel_file = answer
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let (tx, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(2);
    let source = data.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let mut f = match super::files::open_nofollow(&source) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = Vec::with_capacity(CHUNK);
            match (&mut f).take(CHUNK as u64).read_to_end(&mut buf) {
                Ok(0) => return,
                Ok(_) => {
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let pushed = async {
        let mut offset = 0u64;
        let mut inflight: VecDeque<RequestHandle> = VecDeque::new();
        while let Some(chunk) = rx.recv().await {
            let chunk = chunk.map_err(|e| CheckpointError::Io {
                action: "read the checkpoint data".into(),
                path: data.to_path_buf(),
                source: e,
            })?;
            let n = chunk.len() as u64;
            inflight.push_back(
                comm.send(json!({"op": "write", "offset": offset}), vec![chunk])
                    .await?,
            );
            offset += n;
            if inflight.len() >= WINDOW {
                if let Some(mut h) = inflight.pop_front() {
                    comm.answer(&mut h).await?;
                }
            }
        }
        while let Some(mut h) = inflight.pop_front() {
            comm.answer(&mut h).await?;
        }
        comm.close(false).await
    };
    let result = pushed.await;
    drop(rx);
    let _ = reader.await;
    match result {
        Ok(_) => Ok(kernel_file),
        Err(e) => {
            comm.abort().await;
            Err(e)
        }
    }
}

/// Registers the `jmcp_checkpoint` comm target in the kernel (ipykernel's comm manager).
fn register_code() -> String {
    format!("{REGISTER}\ntry:\n    __jmcp_checkpoint_wire()\nfinally:\n    del __jmcp_checkpoint_wire\n")
        .replace("__MARKER__", MARKER)
        .replace("__TARGET__", TARGET)
}

const REGISTER: &str = r#"
def __jmcp_checkpoint_wire():
    import hashlib, json, os, tempfile, time
    def done(payload):
        print('__MARKER__' + json.dumps(payload), flush=True)
    kernel = getattr(get_ipython(), 'kernel', None)
    cm = getattr(kernel, 'comm_manager', None)
    if cm is None:
        done({'error': 'this kernel has no comm manager, so a checkpoint cannot travel over its '
                       'messaging protocol (an IPython kernel, ipykernel 6 or newer, is needed)'})
        return
    transfers = getattr(cm, '_jmcp_checkpoint_transfers', None)
    if transfers is None:
        transfers = {}
        cm._jmcp_checkpoint_transfers = transfers
    def end(t, remove):
        try:
            t['file'].close()
        finally:
            if remove:
                try:
                    os.unlink(t['path'])
                except OSError:
                    pass
    # Transfers abandoned by a server that went away (no message for an hour).
    for cid, t in list(transfers.items()):
        if time.monotonic() - t['last'] > 3600:
            transfers.pop(cid, None)
            end(t, True)
    def error(e):
        return {'ok': False, 'error': '%s: %s' % (type(e).__name__, e)}
    def target(comm, open_msg):
        data = open_msg['content']['data']
        try:
            if data.get('op') == 'read':
                f = open(data['path'], 'rb')
                t = {'file': f, 'path': data['path']}
                answer = {'ok': True, 'size': os.fstat(f.fileno()).st_size}
            elif data.get('op') == 'write':
                fd, path = tempfile.mkstemp(prefix='jmcp-checkpoint-', suffix='.dill')
                t = {'file': os.fdopen(fd, 'wb'), 'path': path}
                answer = {'ok': True, 'path': path}
            else:
                raise ValueError('unknown operation %r' % data.get('op'))
        except Exception as e:
            if data.get('op') == 'read':
                try:
                    os.unlink(data['path'])
                except Exception:
                    pass
            comm.send(error(e))
            comm.close()
            return
        t.update(sha=hashlib.sha256(), done=0, last=time.monotonic())
        transfers[comm.comm_id] = t
        def on_msg(msg):
            d = msg['content']['data']
            t['last'] = time.monotonic()
            op = d.get('op')
            try:
                if op == 'read':
                    if d['offset'] != t['done']:
                        raise ValueError('byte %d asked after %d sent' % (d['offset'], t['done']))
                    b = t['file'].read(d['size'])
                    t['sha'].update(b)
                    t['done'] += len(b)
                    comm.send({'ok': True, 'size': len(b)}, buffers=[b])
                elif op == 'write':
                    if d['offset'] != t['done']:
                        raise ValueError('byte %d sent after %d received' % (d['offset'], t['done']))
                    for b in msg['buffers']:
                        b = memoryview(b).cast('B')
                        t['file'].write(b)
                        t['sha'].update(b)
                        t['done'] += b.nbytes
                    comm.send({'ok': True})
                elif op in ('close', 'abort'):
                    transfers.pop(comm.comm_id, None)
                    end(t, op == 'abort' or d.get('remove'))
                    comm.send({'ok': True, 'bytes': t['done'], 'sha256': t['sha'].hexdigest()})
                    comm.close()
                else:
                    raise ValueError('unknown operation %r' % op)
            except Exception as e:
                comm.send(error(e))
        comm.on_msg(on_msg)
        comm.send(answer)
    cm.register_target('__TARGET__', target)
    done({'ok': True})
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_code_is_complete() {
        let code = register_code();
        assert!(!code.contains("__MARKER__") && !code.contains("__TARGET__"));
        assert!(code.contains("register_target('jmcp_checkpoint', target)"));
        assert!(code.contains("del __jmcp_checkpoint_wire"));
    }

    #[tokio::test]
    async fn the_writer_hashes_what_it_writes() {
        let dir = std::env::temp_dir().join(format!("jmcp-wire-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("out.dill");
        let key = SecretKey::from_env_value(std::ffi::OsStr::new(&"07".repeat(32))).unwrap();
        let (tx, rx) = mpsc::channel(2);
        let w = spawn_writer(dest.clone(), sign::mac(&key), rx);
        tx.send(vec![1u8; CHUNK]).await.unwrap();
        tx.send(b"tail".to_vec()).await.unwrap();
        drop(tx);
        let s = w.await.unwrap().unwrap();
        let on_disk = sign::stream(std::fs::File::open(&dest).unwrap(), sign::mac(&key)).unwrap();
        assert_eq!(s.bytes, CHUNK as u64 + 4);
        assert_eq!(s.sha256, on_disk.sha256);
        assert_eq!(
            s.mac.finalize().into_bytes(),
            on_disk.mac.finalize().into_bytes()
        );
        // The file must be new: a second writer on the same path fails.
        let (_tx, rx) = mpsc::channel(1);
        assert!(spawn_writer(dest, sign::mac(&key), rx)
            .await
            .unwrap()
            .is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
