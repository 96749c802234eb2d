//! The event path of functions: matching events go into each live event
//! handler's bounded queue; its worker takes batches of them whenever a
//! concurrency slot is free, runs each batch on one blocking thread on warm
//! instances, has it recorded (`record.rs`), and retries or dead-letters
//! what failed.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use glassbox_bus::BusItem;
use glassbox_core::{DropReason, RecordedEvent};
use glassbox_runtime::Report;

use super::{Functions, Live, QUEUE_MAX, Run, to_input};

/// An event waiting for a function, and which run of it this is.
pub(super) struct Job {
    pub recorded: Arc<RecordedEvent>,
    /// 1 for the first run, then each retry.
    pub attempt: u32,
    /// When it entered the queue.
    pub queued_at: Instant,
}

impl Functions {
    /// Queues the event for every live function whose trigger matches;
    /// one past its recursion limit, or finding the queue full, is
    /// dead-lettered instead.
    pub(super) fn offer(self: &Arc<Self>, recorded: Arc<RecordedEvent>) {
        let event = &recorded.event;
        // The platform's own records of functions do not trigger functions.
        if event.source.starts_with("glassbox/functions") {
            return;
        }
        let matching: Vec<Arc<Live>> = self
            .live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|l| l.triggers.iter().any(|t| t.fires(&l.version.name, &event.ty, event.subject.as_deref())))
            .cloned()
            .collect();
        for live in matching {
            let refused = if event.hop >= live.spec.hop_limit {
                let limit = live.spec.hop_limit;
                Some(format!("{}: hop {} reached the limit of {limit}", DropReason::RecursionLimit, event.hop))
            } else if live
                .queue
                .try_send(Job { recorded: recorded.clone(), attempt: 1, queued_at: Instant::now() })
                .is_err()
            {
                let name = &live.version.name;
                Some(format!("{}: {QUEUE_MAX} invocations already waiting for {name}", DropReason::QueueFull))
            } else {
                None
            };
            if let Some(reason) = refused {
                let (functions, recorded) = (self.clone(), recorded.clone());
                tokio::spawn(async move { functions.dead_letter(&live, &recorded, &reason).await });
            }
        }
    }

    /// Runs a batch of queued events on one blocking thread, one after the
    /// other on warm instances, then records them; failures are retried
    /// with backoff through the queue of whichever version is live then,
    /// or dead-lettered.
    async fn run_batch(self: Arc<Self>, live: Arc<Live>, jobs: Vec<Job>, permit: tokio::sync::OwnedSemaphorePermit) {
        let (runtime, worker_live) = (self.runtime.clone(), live.clone());
        let services = self.services.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let live = worker_live;
            let (compiled, instances, name) = (&live.compiled, &live.instances, &live.version.name);
            jobs.into_iter()
                .map(|job| {
                    let input = to_input(&job.recorded);
                    let outbound = live.outbound(&job.recorded);
                    let services = services.for_invocation(name, job.recorded.event.id);
                    let (limits, started, queued) = (live.spec.limits(), Utc::now(), job.queued_at.elapsed());
                    let report = runtime.invoke_reusing(compiled, instances, name, &input, limits, services, outbound);
                    live.observe(report.wall);
                    (job, started, queued, report)
                })
                .collect::<Vec<_>>()
        })
        .await;
        drop(permit);
        let ran = match ran {
            Ok(ran) => ran,
            Err(e) => return tracing::error!(function = %live.version.name, error = %e, "an invocation batch failed"),
        };
        let mut records = Vec::with_capacity(ran.len());
        let mut failed = Vec::new();
        let mut queued_at = Vec::with_capacity(ran.len());
        for (job, started, queued, report) in ran {
            if report.outcome != glassbox_runtime::Outcome::Succeeded {
                failed.push((job.recorded.clone(), job.attempt, failure(&report)));
            }
            queued_at.push(job.queued_at);
            let run = Run { started, queued: Some(queued), replay_of: None, attempt: job.attempt, http: None };
            records.push((job.recorded, run, report));
        }
        self.record_invocations(&live, records).await;
        queued_at.iter().for_each(|at| self.dispatch_to_recorded.observe(at.elapsed()));
        for (recorded, attempt, failure) in failed {
            self.retry_or_dead_letter(&live, recorded, attempt, failure);
        }
    }

    /// Runs a failed event again after a backoff (100 ms, 200 ms, 400 ms, …
    /// at most 10 s) unless its retries or its age are used up.
    fn retry_or_dead_letter(
        self: &Arc<Self>,
        live: &Arc<Live>,
        recorded: Arc<RecordedEvent>,
        attempt: u32,
        failure: String,
    ) {
        let age = (Utc::now() - recorded.event.time).to_std().unwrap_or_default();
        let (functions, live) = (self.clone(), live.clone());
        if attempt > live.spec.retries || age >= Duration::from_millis(live.spec.max_age_ms) {
            let reason = format!("failed after {attempt} attempt(s): {failure}");
            tokio::spawn(async move { functions.dead_letter(&live, &recorded, &reason).await });
            return;
        }
        let backoff = Duration::from_millis(100u64 << (attempt - 1).min(7)).min(Duration::from_secs(10));
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            let current = functions.live.read().unwrap_or_else(|e| e.into_inner()).get(&live.version.name).cloned();
            let job = Job { recorded: recorded.clone(), attempt: attempt + 1, queued_at: Instant::now() };
            let sent = match current {
                Some(current) => current.queue.send(job).await.is_ok(),
                None => false,
            };
            if !sent {
                let reason = format!("failed after {attempt} attempt(s), and the function is gone: {failure}");
                functions.dead_letter(&live, &recorded, &reason).await;
            }
        });
    }
}

/// Why an invocation did not succeed, in a line.
fn failure(report: &Report) -> String {
    let detail = report.outcome.detail().map(|d| format!(": {d}")).unwrap_or_default();
    format!("{}{detail}", report.outcome.as_str())
}

/// A live event handler's worker: whenever a slot is free, takes a batch
/// of what is queued and runs it. Stops once its version is replaced and
/// its queue is drained, or when the functions are gone.
pub(super) async fn work(functions: Weak<Functions>, live: Arc<Live>, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    let mut retired = live.retired.subscribe();
    let mut open = true;
    loop {
        let Ok(permit) = live.slots.clone().acquire_owned().await else { return };
        let mut batch = Vec::new();
        tokio::select! {
            taken = jobs.recv_many(&mut batch, live.batch_size()) => if taken == 0 { return },
            _ = retired.wait_for(|r| *r), if open => {
                // Replaced: take nothing new, run what is queued.
                jobs.close();
                open = false;
                continue;
            }
        }
        if let Some(functions) = functions.upgrade() {
            if live.spec.rate_per_second.is_some() {
                live.pace().await;
            }
            tokio::spawn(functions.run_batch(live.clone(), batch, permit));
        } else {
            return;
        }
    }
}

/// Feeds recorded events to the functions while they live. The bus is
/// bounded and skips ahead when a reader falls behind; the skipped events
/// are in the recorder, so they are read back from it: no event a trigger
/// matches is missed.
pub(super) async fn dispatch(functions: Weak<Functions>, mut events: glassbox_bus::Subscription) {
    let mut cursor = crate::pipeline::BusCursor::default();
    while let Some(item) = events.next().await {
        let Some(functions) = functions.upgrade() else { return };
        match item {
            BusItem::Event(recorded) if cursor.fresh(recorded.event.id) => functions.offer(recorded),
            BusItem::Event(_) => {}
            BusItem::Lagged(skipped) => {
                tracing::warn!(
                    skipped,
                    "function dispatch fell behind the event stream; reading the skipped events back"
                );
                match cursor.read_back(&functions.pipeline).await {
                    Ok(missed) => missed.into_iter().for_each(|recorded| functions.offer(Arc::new(recorded))),
                    Err(e) => {
                        tracing::error!(error = %e, "could not read skipped events back; they did not trigger functions")
                    }
                }
            }
        }
    }
}

/// Retires the warm instances left idle past their policy, while the
/// functions live, so an unused function does not hold memory.
pub(super) async fn retire_idle(functions: Weak<Functions>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tick.tick().await;
        let Some(functions) = functions.upgrade() else { return };
        let live: Vec<Arc<Live>> = functions.live.read().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        for live in live {
            let retired = live.instances.retire_idle();
            if retired > 0 {
                tracing::debug!(function = %live.version.name, retired, "retired idle instances");
            }
        }
    }
}
