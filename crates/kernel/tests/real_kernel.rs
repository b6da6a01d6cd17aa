//! Integration tests against a real ipykernel (found through the `python3` kernelspec on
//! `PATH`, e.g. the project's `.venv`). Every test shuts down the kernel it started, by PID.

use std::time::Duration;

use jmcp_kernel::launch::LaunchOptions;
use jmcp_kernel::{
    find_kernelspec, process, start_kernel, ExecuteOptions, KernelClient, KernelEvent,
};
use serde_json::Value;

struct Kernel {
    client: KernelClient,
    pid: u32,
    _dir: tempfile::TempDir,
    child: tokio::process::Child,
}

impl Kernel {
    async fn start() -> Kernel {
        let spec = find_kernelspec("python3").expect(
            "the python3 kernelspec must be installed (run the tests through scripts/test.sh)",
        );
        let dir = tempfile::tempdir().unwrap();
        let opts = LaunchOptions {
            cwd: dir.path().to_path_buf(),
            runtime_dir: dir.path().join("kernels"),
            hide: vec![],
            hide_except: vec![],
        };
        let started = start_kernel(&spec, &opts, Duration::from_secs(60))
            .await
            .expect("kernel starts");
        let (launched, client) = (started.launched, started.client);
        Kernel {
            client,
            pid: launched.pid,
            _dir: dir,
            child: launched.child,
        }
    }

    /// Runs code; returns every IOPub message (type, content) until reply + idle.
    async fn run(&self, code: &str) -> (Vec<(String, Value)>, Value) {
        let mut h = self
            .client
            .execute(code, ExecuteOptions::default(), None)
            .await
            .unwrap();
        let mut msgs = Vec::new();
        let mut reply = None;
        let mut idle = false;
        while reply.is_none() || !idle {
            match tokio::time::timeout(Duration::from_secs(120), h.next())
                .await
                .unwrap()
            {
                KernelEvent::Message(m) => {
                    if m.msg_type == "execute_reply" {
                        reply = Some(m.content);
                    } else if m.execution_state() == Some("idle") {
                        idle = true;
                    } else {
                        msgs.push((m.msg_type.clone(), m.content.clone()));
                    }
                }
                KernelEvent::Died(r) => panic!("kernel died: {r}"),
            }
        }
        (msgs, reply.unwrap())
    }

    async fn stop(mut self) {
        if let Ok(mut h) = self.client.shutdown_request(false).await {
            let _ = tokio::time::timeout(Duration::from_secs(5), h.next()).await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = process::signal_group(self.pid, libc::SIGKILL);
            let _ = self.child.wait().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executes_and_routes_by_parent() {
    let k = Kernel::start().await;
    let (msgs, reply) = k.run("1+1").await;
    assert_eq!(reply["status"], "ok");
    let result = msgs
        .iter()
        .find(|(t, _)| t == "execute_result")
        .expect("execute_result");
    assert_eq!(result.1["data"]["text/plain"], "2");
    assert!(process::is_alive(k.pid, process::start_time(k.pid)));
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iopub_flood_arrives_complete_and_in_order() {
    let k = Kernel::start().await;
    let (msgs, reply) = k
        .run("for i in range(20000):\n    print(i, flush=True)")
        .await;
    assert_eq!(reply["status"], "ok");
    let text: String = msgs
        .iter()
        .filter(|(t, c)| t == "stream" && c["name"] == "stdout")
        .map(|(_, c)| c["text"].as_str().unwrap().to_string())
        .collect();
    let expected: String = (0..20000).map(|i| format!("{i}\n")).collect();
    assert_eq!(text.len(), expected.len());
    assert!(
        text == expected,
        "stream text differs from 0..20000 in order"
    );

    let (msgs, _) = k
        .run("from IPython.display import display\nfor i in range(2000):\n    display(i)")
        .await;
    let shown: Vec<String> = msgs
        .iter()
        .filter(|(t, _)| t == "display_data")
        .map(|(_, c)| c["data"]["text/plain"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(shown.len(), 2000);
    assert!(shown.iter().enumerate().all(|(i, s)| *s == i.to_string()));
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_input_request_is_answered() {
    let k = Kernel::start().await;
    let mut h = k
        .client
        .execute(
            "x = input('name? ')\nprint('hi', x)",
            ExecuteOptions::default(),
            None,
        )
        .await
        .unwrap();
    let mut out = String::new();
    let mut reply = false;
    while !reply {
        match tokio::time::timeout(Duration::from_secs(60), h.next())
            .await
            .unwrap()
        {
            KernelEvent::Message(m) if m.msg_type == "input_request" => {
                assert_eq!(m.content["prompt"], "name? ");
                k.client.input_reply(&m.header, "ada").await.unwrap();
            }
            KernelEvent::Message(m) if m.msg_type == "stream" => {
                out.push_str(m.content["text"].as_str().unwrap())
            }
            KernelEvent::Message(m) if m.msg_type == "execute_reply" => reply = true,
            KernelEvent::Message(_) => {}
            KernelEvent::Died(r) => panic!("died: {r}"),
        }
    }
    drop(h);
    assert!(out.contains("hi ada"), "{out}");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_interrupts_a_sleeping_cell() {
    let k = Kernel::start().await;
    let mut h = k
        .client
        .execute(
            "import time; time.sleep(60)",
            ExecuteOptions::default(),
            None,
        )
        .await
        .unwrap();
    // Wait until the kernel is busy with it.
    loop {
        if let KernelEvent::Message(m) = h.next().await {
            if m.msg_type == "execute_input" {
                break;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    process::signal_group(k.pid, libc::SIGINT).unwrap();
    let reply = loop {
        match tokio::time::timeout(Duration::from_secs(20), h.next())
            .await
            .unwrap()
        {
            KernelEvent::Message(m) if m.msg_type == "execute_reply" => break m.content,
            KernelEvent::Message(_) => {}
            KernelEvent::Died(r) => panic!("died: {r}"),
        }
    };
    drop(h);
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["ename"], "KeyboardInterrupt");
    k.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kernel_that_cannot_start_reports_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = find_kernelspec("python3").unwrap();
    spec.argv = vec![
        spec.argv[0].clone(),
        "-c".into(),
        "import sys; sys.stderr.write('boom: no such module\\n'); sys.exit(3)".into(),
    ];
    let opts = LaunchOptions {
        cwd: dir.path().to_path_buf(),
        runtime_dir: dir.path().join("kernels"),
        hide: vec![],
        hide_except: vec![],
    };
    let err = start_kernel(&spec, &opts, Duration::from_secs(20))
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("boom: no such module"), "{err}");
}
