//! The stdio transport (MCP "Transports: stdio"): newline-delimited JSON-RPC on stdin/stdout,
//! i.e. "frames of stdin → [`Pipeline`] → stdout". The server never stops on bad input; it
//! stops when the input ends.

use tokio::io::AsyncWriteExt as _;

use super::frames::{LineReader, MAX_FRAME_BYTES};
use super::pipeline::{Pipeline, Started};
use super::server::JupyterMcp;
use super::session::TaskScope;

/// Serves `service` over the given byte streams. Returns when the input ends (the client
/// disconnected) and rmcp has finished. The one session of a stdio server lists every task
/// of the data dir (it is the only session this server has).
pub async fn serve<R, W>(service: JupyterMcp, input: R, output: W) -> anyhow::Result<()>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Started {
        pipeline,
        output: mut lines,
        service,
    } = Pipeline::start(service, TaskScope::All);
    // The only writer of the output: whole lines, in the order they were produced.
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(line) = lines.recv().await {
            if output.write_all(line.as_bytes()).await.is_err()
                || output.write_all(b"\n").await.is_err()
                || output.flush().await.is_err()
            {
                break;
            }
        }
    });
    let reader = tokio::spawn(async move {
        let mut input = LineReader::new(input, MAX_FRAME_BYTES);
        loop {
            match input.next().await {
                Ok(Some(frame)) => {
                    if !pipeline.frame(frame).await {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("stdin: read failed ({e}); ending the session");
                    break;
                }
            }
        }
        // Client gone: closing rmcp's input ends the service.
        pipeline.close();
    });
    let result = service
        .await
        .map_err(|e| anyhow::anyhow!("the MCP service task failed: {e}"))?;
    reader.abort();
    let _ = writer.await;
    result
}
