//! Tests of the asset store against a real `state.db` in a temp dir: idempotent atomic
//! writes, reading and lease renewal, refusals, collection with an explicit time, offloading.

use super::*;
use jmcp_outputs::{render_with, RenderOptions};
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    assets: Assets,
}

fn fixture(settings: AssetSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&root).expect("root");
    let store = Store::open(&data.join("state.db")).expect("store");
    let assets = Assets::new(&data, &root, store, settings);
    Fixture {
        _dir: dir,
        root,
        data,
        assets,
    }
}

fn hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

#[test]
fn put_is_idempotent_and_read_renews() {
    let f = fixture(AssetSettings::default());
    let p = Payload::text("hello\nworld\n");
    let t0 = Utc::now() - hours(100);
    let id = f.assets.put_at("a.ipynb", Some("e1"), &p, t0).expect("put");
    let again = f
        .assets
        .put_at("a.ipynb", Some("e2"), &p, t0)
        .expect("put again");
    assert_eq!(id, again);
    let file = f.data.join("assets").join(id.rel_path());
    assert_eq!(std::fs::read(&file).expect("file"), b"hello\nworld\n");
    // No temp files are left behind.
    let names: Vec<_> = std::fs::read_dir(file.parent().expect("dir"))
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![format!("{}.txt", p.sha256)]);

    let (rows, total) = f.assets.list(Some("a.ipynb"), 0, 10).expect("list");
    assert_eq!(total, 1);
    assert_eq!(rows[0].lease_until, stamp(t0 + hours(24)));
    let c = f.assets.read(&id.uri()).expect("read");
    assert_eq!(
        (c.bytes.as_slice(), c.mime_type.as_str()),
        (&b"hello\nworld\n"[..], "text/plain")
    );
    assert!(c.is_text());
    let (rows, _) = f.assets.list(None, 0, 10).expect("list");
    let lease = leases::parse_stamp(&rows[0].lease_until).expect("lease");
    assert!(lease > Utc::now() + hours(23), "reading renews the lease");
}

#[test]
fn references_outside_the_assets_dir_are_refused() {
    let f = fixture(AssetSettings::default());
    for bad in [
        "../state.db",
        "/etc/passwd",
        "file:///etc/passwd",
        "jupyter-mcp://assets/../../state.db",
        "jupyter-mcp://assets/0123456789abcdef/../../../secret.key",
    ] {
        match f.assets.read(bad) {
            Err(AssetError::BadReference { .. }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    // Well-formed but absent.
    let missing = format!(
        "jupyter-mcp://assets/0123456789abcdef/{}.png",
        "a".repeat(64)
    );
    assert!(matches!(
        f.assets.read(&missing),
        Err(AssetError::NotFound { .. })
    ));
    // A notebook folder that is a symlink to elsewhere is refused.
    let outside = tempfile::tempdir().expect("outside");
    let sha = "c".repeat(64);
    std::fs::write(outside.path().join(format!("{sha}.txt")), "secret").expect("write");
    std::fs::create_dir_all(f.data.join("assets")).expect("assets dir");
    std::os::unix::fs::symlink(outside.path(), f.data.join("assets/fedcba9876543210"))
        .expect("symlink");
    let evil = format!("jupyter-mcp://assets/fedcba9876543210/{sha}.txt");
    assert!(matches!(
        f.assets.read(&evil),
        Err(AssetError::Outside { .. })
    ));
}

#[test]
fn prune_follows_leases_and_references() {
    let f = fixture(AssetSettings::default());
    let t0 = Utc::now();
    // Referenced by a notebook on disk (its output holds the text).
    let kept_text = "kept by the notebook\n".repeat(3);
    std::fs::write(
        f.root.join("n.ipynb"),
        json!({"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "stream", "name": "stdout", "text": kept_text}]}]})
        .to_string(),
    )
    .expect("nb");
    let by_nb = f
        .assets
        .put_at("n.ipynb", None, &Payload::text(&kept_text), t0)
        .expect("put");
    let orphan = f
        .assets
        .put_at("n.ipynb", None, &Payload::text("nobody\n"), t0)
        .expect("put");
    let renewed = f
        .assets
        .put_at("n.ipynb", None, &Payload::text("read later\n"), t0)
        .expect("put");
    // Renewed by being produced again 20 hours later.
    f.assets
        .put_at(
            "n.ipynb",
            None,
            &Payload::text("read later\n"),
            t0 + hours(20),
        )
        .expect("renew");

    // Before expiry: nothing to delete.
    let r = f.assets.prune(None, false, t0 + hours(1)).expect("prune");
    assert!(r.verdicts.iter().all(|v| v.action == Action::Keep));

    let at = t0 + hours(30);
    let dry = f.assets.prune(None, true, at).expect("dry run");
    let action = |r: &PruneReport, uri: &str| {
        r.verdicts
            .iter()
            .find(|v| v.uri == uri)
            .map(|v| (v.action, v.reason.clone()))
            .expect("verdict")
    };
    assert_eq!(action(&dry, &orphan.uri()).0, Action::Delete);
    assert_eq!(dry.freed_bytes, 7);
    assert!(
        f.assets.path_of(&orphan).is_ok(),
        "a dry run deletes nothing"
    );

    let r = f.assets.prune(Some("n.ipynb"), false, at).expect("prune");
    assert_eq!(action(&r, &by_nb.uri()).0, Action::Keep);
    assert!(action(&r, &by_nb.uri()).1.contains("notebook n.ipynb"));
    assert_eq!(action(&r, &renewed.uri()).0, Action::Keep);
    assert!(action(&r, &renewed.uri()).1.contains("lease valid"));
    assert_eq!(action(&r, &orphan.uri()).0, Action::Delete);
    assert!(matches!(
        f.assets.read(&orphan.uri()),
        Err(AssetError::NotFound { .. })
    ));
    assert!(f.assets.read(&by_nb.uri()).is_ok());
    assert_eq!(f.assets.list(None, 0, 10).expect("list").1, 2);
}

#[test]
fn running_execution_keeps_what_it_produced() {
    let f = fixture(AssetSettings::default());
    let t0 = Utc::now() - hours(48);
    let id = f
        .assets
        .put_at("n.ipynb", Some("exec-1"), &Payload::text("partial\n"), t0)
        .expect("put");
    f.assets
        .inner
        .store
        .call_blocking(|c| {
            c.execute(
                "INSERT INTO executions (id, notebook, code, status, outputs, created_at)
                 VALUES ('exec-1', 'n.ipynb', 'x', 'running', '[]', '2026-01-01T00:00:00.000Z')",
                [],
            )?;
            Ok(())
        })
        .expect("insert execution");
    let r = f.assets.prune(None, false, Utc::now()).expect("prune");
    assert_eq!(r.verdicts[0].action, Action::Keep, "{:?}", r.verdicts);
    assert!(r.verdicts[0].reason.contains("still running"));
    assert!(f.assets.path_of(&id).is_ok());
    // Finished without the content in its outputs: collectable.
    f.assets
        .inner
        .store
        .call_blocking(|c| {
            c.execute("UPDATE executions SET status = 'completed'", [])?;
            Ok(())
        })
        .expect("finish");
    let r = f.assets.prune(None, false, Utc::now()).expect("prune");
    assert_eq!(r.verdicts[0].action, Action::Delete);
}

#[test]
fn rendering_stores_rich_outputs_and_cut_texts() {
    let f = fixture(AssetSettings::default());
    let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let outputs = vec![
        json!({"output_type": "stream", "name": "stdout", "text": long}),
        json!({"output_type": "display_data", "metadata": {},
               "data": {"text/html": "<table class=\"dataframe\"></table>", "text/plain": "df"}}),
    ];
    let mut sink = f.assets.sink("n.ipynb", Some("e9"));
    let r = render_with(&outputs, &RenderOptions::default(), &mut sink);
    let text_uri = r.outputs[0].asset.clone().expect("text asset");
    let html_uri = r.outputs[1].asset.clone().expect("html asset");
    let c = f.assets.read(&text_uri).expect("read text");
    assert_eq!(c.bytes, long.as_bytes());
    let h = f.assets.read(&html_uri).expect("read html");
    assert_eq!(h.mime_type, "text/html");
    // Paging the text asset from the hint's offset gives the omitted part and the rest.
    let k = r.outputs[0].next_offset.expect("next_offset");
    let rest = page::page(&String::from_utf8_lossy(&c.bytes), k, 100_000, usize::MAX);
    assert!(long.ends_with(&rest.text));
    assert!(rest.eof);
    assert!(r
        .text
        .contains(&format!("read_asset(asset=\"{text_uri}\", offset={k})")));
    let refs = f
        .assets
        .inner
        .store
        .call_blocking(move |c| leases::refs(c, &text_uri))
        .expect("refs");
    assert_eq!(refs, vec!["e9".to_string()]);
}

#[test]
fn offload_replaces_large_outputs_with_links() {
    let f = fixture(AssetSettings {
        offload_over: Some(10_000),
        ..AssetSettings::default()
    });
    let long: String = (0..5000).map(|i| format!("row {i}\n")).collect();
    let big_png = "iVBORw0KGgo".repeat(2000);
    let outputs = vec![
        json!({"output_type": "stream", "name": "stdout", "text": "small\n"}),
        json!({"output_type": "stream", "name": "stdout", "text": long}),
        json!({"output_type": "display_data", "metadata": {},
               "data": {"image/png": big_png, "text/plain": "<Figure>"}}),
        json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["x".repeat(20_000)]}),
    ];
    let out = f.assets.offload("n.ipynb", Some("e1"), outputs.clone());
    assert_eq!(out[0], outputs[0]);
    assert_eq!(out[3], outputs[3], "errors are never offloaded");
    let text = out[1]["text"].as_str().expect("text");
    assert!(text.len() < 6000);
    assert!(text.starts_with("row 0\n") && text.ends_with("row 4999\n"));
    let uri = text
        .split('"')
        .find(|s| s.starts_with(uri::URI_PREFIX))
        .expect("uri in text");
    assert_eq!(f.assets.read(uri).expect("asset").bytes, long.as_bytes());
    let data = out[2]["data"].as_object().expect("data");
    assert!(!data.contains_key("image/png"));
    let plain = data["text/plain"].as_str().expect("plain");
    assert!(plain.starts_with("<Figure>\n[jupyter-mcp: image/png"));
    let off = &out[2]["metadata"]["jupyter_mcp"]["offloaded"][0];
    assert_eq!(off["mime_type"], "image/png");
    let png_uri = off["uri"].as_str().expect("uri");
    assert!(f.assets.read(png_uri).is_ok());
    // The notebook file with links still keeps its assets alive after expiry.
    let nb = json!({"cells": [{"cell_type": "code", "outputs": out}]});
    std::fs::write(f.root.join("n.ipynb"), nb.to_string()).expect("nb");
    let r = f
        .assets
        .prune(None, false, Utc::now() + hours(48))
        .expect("prune");
    // The execution e1 is not stored in this test: only the notebook's links keep them.
    assert!(
        r.verdicts.iter().all(|v| v.action == Action::Keep),
        "{:?}",
        r.verdicts
    );
    // Off: outputs unchanged.
    let g = fixture(AssetSettings::default());
    assert_eq!(
        g.assets.offload("n.ipynb", Some("e1"), outputs.clone()),
        outputs
    );
}
