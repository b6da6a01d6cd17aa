//! Automatic checkpoints (`--auto-checkpoint`): the user's variables are saved under a rolling
//! name (`auto-1`, `auto-2`, `auto-3`: a missing slot, else the oldest) when a kernel has been
//! idle for `--auto-checkpoint-idle` after its last execution, and on graceful shutdown. A
//! kernel is saved again only after it ran something new. The restore offer made after a
//! kernel death is [`super::restore_offer`].

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{index, service, CheckpointError, SaveReport};
use crate::engine::Engine;
use crate::store;

/// Prefix of automatic checkpoint names.
pub const PREFIX: &str = "auto-";
/// Number of rolling slots.
pub const SLOTS: usize = 3;
/// Default idle time before an automatic checkpoint.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(30 * 60);
/// Time limit of one automatic save while serving.
const SAVE_TIMEOUT: Duration = Duration::from_secs(600);

/// Parses a duration: a number with an optional unit `ms`, `s` (default), `m`, `h` or `d`,
/// e.g. `90`, `90s`, `15m`, `1.5h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration: use e.g. 90s, 15m, 2h"))?;
    let factor = match unit.trim() {
        "ms" => 0.001,
        "" | "s" | "sec" | "secs" => 1.0,
        "m" | "min" | "mins" => 60.0,
        "h" | "hr" | "hrs" => 3600.0,
        "d" | "day" | "days" => 86400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?}: use ms, s, m, h or d"
            ))
        }
    };
    let secs = n * factor;
    if !secs.is_finite() || secs <= 0.0 || secs > 365.0 * 86400.0 {
        return Err(format!(
            "{s:?} is out of range (more than 0, at most 365 days)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as a person writes it: `45s`, `30m`, `2.5h` (the forms `parse_duration` takes).
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.0}s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// The slot to write next for `notebook`: the first missing one, else the oldest.
async fn next_slot(engine: &Engine, notebook: &str) -> String {
    let nb = notebook.to_string();
    let rows = engine
        .store()
        .call(move |c| index::of_notebook(c, &nb))
        .await
        .unwrap_or_default();
    let slots: Vec<String> = (1..=SLOTS).map(|i| format!("{PREFIX}{i}")).collect();
    if let Some(free) = slots.iter().find(|s| !rows.iter().any(|r| &r.name == *s)) {
        return free.clone();
    }
    rows.iter()
        .filter(|r| slots.contains(&r.name))
        .min_by(|a, b| a.created_at.cmp(&b.created_at))
        .map(|r| r.name.clone())
        .unwrap_or_else(|| slots[0].clone())
}

/// Id and finish time of the notebook's latest execution, when it has finished.
async fn latest_finished(engine: &Engine, notebook: &str) -> Option<(String, DateTime<Utc>)> {
    let nb = notebook.to_string();
    let rec = engine
        .store()
        .call(move |c| store::executions::list(c, Some(&nb), None, 1))
        .await
        .ok()?
        .into_iter()
        .next()?;
    if !rec.status.is_terminal() {
        return None;
    }
    let at = DateTime::parse_from_rfc3339(rec.finished_at.as_deref()?).ok()?;
    Some((rec.id, at.with_timezone(&Utc)))
}

fn mark(engine: &Engine, notebook: &str) -> Option<String> {
    super::lock(&service(engine).auto_marks)
        .get(notebook)
        .cloned()
}

fn set_mark(engine: &Engine, notebook: &str, id: String) {
    super::lock(&service(engine).auto_marks).insert(notebook.to_string(), id);
}

/// Saves every user variable of `notebook` under the next rolling name.
pub async fn save_rolling(
    engine: &Engine,
    notebook: &str,
    timeout: Duration,
) -> Result<SaveReport, CheckpointError> {
    let name = next_slot(engine, notebook).await;
    super::save(engine, notebook, &name, None, timeout).await
}

/// Saves `notebook` if it ran something since its last automatic checkpoint and (when `idle`
/// is given) its last execution finished at least that long ago. `Ok(None)`: nothing new to
/// save. A failed save is not marked: the next attempt tries again.
async fn save_if_new(
    engine: &Engine,
    notebook: &str,
    idle: Option<Duration>,
    timeout: Duration,
) -> Result<Option<SaveReport>, CheckpointError> {
    let Some((id, finished)) = latest_finished(engine, notebook).await else {
        return Ok(None);
    };
    if mark(engine, notebook).as_deref() == Some(id.as_str()) {
        return Ok(None);
    }
    if let Some(idle) = idle {
        let since = Utc::now()
            .signed_duration_since(finished)
            .to_std()
            .unwrap_or_default();
        if since < idle {
            return Ok(None);
        }
    }
    match save_rolling(engine, notebook, timeout).await {
        Ok(report) => {
            set_mark(engine, notebook, id);
            tracing::info!(
                "automatic checkpoint '{}' of {}: {} variable(s), {} bytes",
                report.name,
                notebook,
                report.saved.len(),
                report.bytes
            );
            Ok(Some(report))
        }
        Err(CheckpointError::NothingSaved(_)) => {
            set_mark(engine, notebook, id);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// [`save_if_new`] for the idle scheduler and shutdown: a failure is logged and marked (it
/// is not retried until the notebook runs something new).
async fn maybe_save(
    engine: &Engine,
    notebook: &str,
    idle: Option<Duration>,
    timeout: Duration,
) -> Option<SaveReport> {
    match save_if_new(engine, notebook, idle, timeout).await {
        Ok(saved) => saved,
        Err(e) => {
            if let Some((id, _)) = latest_finished(engine, notebook).await {
                set_mark(engine, notebook, id);
            }
            tracing::warn!("automatic checkpoint of {notebook} failed: {e}");
            None
        }
    }
}

/// Before `--cull-idle-after` stops an idle kernel: saves its variables if it ran something
/// since its last automatic checkpoint. An error means the variables are not saved and the
/// kernel must be kept.
pub async fn save_before_cull(engine: &Engine, notebook: &str) -> Result<(), CheckpointError> {
    save_if_new(engine, notebook, None, SAVE_TIMEOUT)
        .await
        .map(|_| ())
}

/// Starts the idle scheduler when `--auto-checkpoint` is on; it runs until the runtime stops.
pub fn spawn(engine: &Engine) -> Option<tokio::task::JoinHandle<()>> {
    let cfg = engine.config();
    if !cfg.auto_checkpoint {
        return None;
    }
    let idle = cfg.auto_checkpoint_idle;
    let tick = (idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let engine = engine.clone();
    Some(tokio::spawn(async move {
        let mut timer = tokio::time::interval(tick);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            timer.tick().await;
            let Ok(kernels) = engine.list_kernels().await else {
                continue;
            };
            for k in kernels {
                if k.state == "idle" && k.queue_depth == 0 {
                    maybe_save(&engine, &k.notebook, Some(idle), SAVE_TIMEOUT).await;
                }
            }
        }
    }))
}

/// On graceful shutdown with `--auto-checkpoint`: saves every idle kernel that ran something
/// since its last automatic checkpoint, all within `budget`.
pub async fn on_shutdown(engine: &Engine, budget: Duration) {
    if !engine.config().auto_checkpoint {
        return;
    }
    let Ok(kernels) = engine.list_kernels().await else {
        return;
    };
    let saves = kernels
        .iter()
        .filter(|k| k.state == "idle" && k.queue_depth == 0)
        .map(|k| maybe_save(engine, &k.notebook, None, budget));
    if tokio::time::timeout(budget, futures::future::join_all(saves))
        .await
        .is_err()
    {
        tracing::warn!(
            "automatic checkpoints at shutdown did not finish within {:.0} s",
            budget.as_secs_f64()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172800));
        for bad in ["", "x", "0", "-5s", "5 parsecs", "1e9d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
