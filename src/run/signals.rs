//! SIGINT / SIGTERM: how `run` and `serve` learn that they must stop.

/// Resolves with the signal number on the first SIGINT or SIGTERM (never, if the handlers
/// cannot be installed).
pub async fn termination() -> i32 {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => libc::SIGTERM,
        _ = int.recv() => libc::SIGINT,
    }
}
