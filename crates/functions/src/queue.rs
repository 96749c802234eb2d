//! The event path of functions: matching events go into each live event
//! handler's bounded queue; its worker takes batches of them whenever a
//! concurrency slot is free, runs each batch on one blocking thread on warm
//! instances, has it recorded (`record.rs`), and retries or dead-letters
//! what failed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::Utc;
use glassbox_core::{DropReason, EventId, RecordedEvent};
use glassbox_runtime::{Outcome, Reach, Report};

use super::budgets::{Throttled, Verdict, Who, now_seconds};
use super::{Functions, Live, Run, to_input};

/// Backlog events read back from the recorder at once.
const FEED_BATCH: usize = 256;

/// An event waiting for a function, and which run of it this is.
pub(super) struct Job {
    pub recorded: Arc<RecordedEvent>,
    /// 1 for the first run, then each retry.
    pub attempt: u32,
    /// When it entered the queue.
    pub queued_at: Instant,
}

impl Job {
    fn first(recorded: Arc<RecordedEvent>) -> Self {
        Job { recorded, attempt: 1, queued_at: Instant::now() }
    }
}

/// Whether the function may take the event: not past its recursion limit.
fn admit(live: &Live, recorded: &RecordedEvent) -> Result<(), String> {
    let (hop, limit) = (recorded.event.hop, live.spec.hop_limit);
    match hop >= limit {
        true => Err(format!("{}: hop {hop} reached the limit of {limit}", DropReason::RecursionLimit)),
        false => Ok(()),
    }
}

impl Functions {
    /// The live functions whose triggers match the event. The platform's
    /// own records of functions trigger none.
    pub(super) fn matching(&self, event: &glassbox_core::Event) -> Vec<Arc<Live>> {
        if event.source.starts_with("glassbox/functions") {
            return Vec::new();
        }
        self.live
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|l| l.triggers.iter().any(|t| t.fires(&l.version.name, &event.ty, event.subject.as_deref())))
            .cloned()
            .collect()
    }

    /// Takes a recorded event: queues it for every live function whose
    /// trigger matches, noting it in the position until each outcome is
    /// recorded.
    pub(super) fn offer(self: &Arc<Self>, recorded: Arc<RecordedEvent>) {
        self.note_device_change(&recorded.event);
        let matching = self.matching(&recorded.event);
        self.position.acks().took(recorded.event.id, matching.len() as u32);
        for live in matching {
            if let Err(reason) = admit(&live, &recorded) {
                self.dead_letter_later(live, recorded.clone(), reason);
                continue;
            }
            if let Err(reason) = self.chains.count(&recorded.event, now_seconds()) {
                self.drop_later(live, recorded.clone(), DropReason::RateLimited, reason);
                continue;
            }
            if !self.within_budget(&live, &recorded) {
                continue;
            }
            // Behind a backlog, or finding no room: wait in the recorder, in order.
            let queued = live.backlog_len() == 0 && live.queue.try_send(Job::first(recorded.clone())).is_ok();
            if !queued && !live.defer([(recorded.event.id, 1)]).is_empty() {
                let reason = live.refusal();
                self.dead_letter_later(live, recorded.clone(), reason);
            }
        }
    }

    /// Checks the budgets applying to `live` on `recorded` (see
    /// `budgets.rs`): whether to queue it now. A refused event gets its
    /// outcome here (a `function.dropped` record); a held one waits.
    fn within_budget(self: &Arc<Self>, live: &Arc<Live>, recorded: &Arc<RecordedEvent>) -> bool {
        let ledger = self.budgets.ledger();
        if !ledger.any() {
            return true;
        }
        let group = self.group(&recorded.event);
        let (function, feature) = (live.version.name.as_str(), live.spec.feature.as_deref());
        let who = Who { function, feature, group: group.as_deref() };
        match ledger.admit(&who, now_seconds(), true) {
            Verdict::Run(reached) => {
                if !reached.is_empty() {
                    let budgets = self.budgets.clone();
                    self.busy.spawn(async move { budgets.record_reached(reached).await });
                }
                true
            }
            Verdict::Stop(reason) => {
                self.drop_later(live.clone(), recorded.clone(), DropReason::BudgetExceeded, reason);
                false
            }
            Verdict::Hold(reason) => {
                let held = Throttled {
                    event: recorded.event.id,
                    function: function.to_string(),
                    feature: feature.map(str::to_string),
                    group,
                };
                if self.budgets.hold(held).is_err() {
                    let reason = format!("{reason}; {} events already wait for budgets", super::THROTTLED_MAX);
                    self.drop_later(live.clone(), recorded.clone(), DropReason::BudgetExceeded, reason);
                }
                false
            }
        }
    }

    /// The group of the event's device for `group:` budgets, when any is
    /// set: remembered, or looked up in the background (the event counts
    /// without a group until the answer is in).
    fn group(self: &Arc<Self>, event: &glassbox_core::Event) -> Option<String> {
        let device = event.device.as_deref()?;
        if !self.budgets.ledger().any_group() {
            return None;
        }
        self.device_group(device)
    }

    /// The group of `device`, remembered, or looked up in the background
    /// (none until the answer is in).
    pub(super) fn device_group(self: &Arc<Self>, device: &str) -> Option<String> {
        if let Some(known) = self.budgets.group_of(device) {
            return known;
        }
        // Remembered as none at once, so a burst asks the registry once.
        self.budgets.remember_group(device, None);
        let (functions, device) = (self.clone(), device.to_string());
        tokio::spawn(async move {
            match functions.control.device_group(&device).await {
                Ok(group) => functions.budgets.remember_group(&device, group),
                Err(e) => {
                    functions.budgets.forget_group(&device);
                    tracing::warn!(device, error = %e, "could not read a device's group for its budgets");
                }
            }
        });
        None
    }

    /// Forgets a device's remembered group when its registration changes.
    fn note_device_change(&self, event: &glassbox_core::Event) {
        let changed = matches!(
            event.ty.as_str(),
            glassbox_core::DEVICE_UPDATED | glassbox_core::DEVICE_DELETED | glassbox_core::DEVICE_REGISTERED
        );
        if let Some(device) = event.device.as_deref().filter(|_| changed) {
            self.budgets.forget_group(device);
        }
    }

    /// Records a drop (a budget's, the chain bound's) in the background,
    /// as work a stop waits for.
    fn drop_later(self: &Arc<Self>, live: Arc<Live>, recorded: Arc<RecordedEvent>, why: DropReason, detail: String) {
        let functions = self.clone();
        self.busy.spawn(async move { functions.dropped(&live, &recorded, why, detail).await });
    }

    /// Records a dead letter in the background, as work a stop waits for.
    fn dead_letter_later(self: &Arc<Self>, live: Arc<Live>, recorded: Arc<RecordedEvent>, reason: String) {
        let functions = self.clone();
        self.busy.spawn(async move { functions.dead_letter(&live, &recorded, &reason).await });
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
                    let reach = Reach { services, outbound };
                    let report = runtime.invoke_reusing(compiled, instances, name, &input, limits, reach);
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
            if report.outcome != Outcome::Succeeded {
                failed.push((job.recorded.clone(), job.attempt, failure(&report)));
            }
            queued_at.push(job.queued_at);
            let run = Run { started, queued: Some(queued), replay_of: None, attempt: job.attempt, http: None };
            records.push((job.recorded, run, report));
        }
        let ids: Vec<_> =
            records.iter().map(|(r, _, report)| (r.event.id, report.outcome == Outcome::Succeeded)).collect();
        let recorded = self.record_invocations(&live, records).await;
        for ((id, succeeded), recorded) in ids.into_iter().zip(recorded) {
            if succeeded && recorded.is_some() {
                self.position.acks().ack(id);
            }
        }
        live.running.fetch_sub(queued_at.len(), Ordering::Relaxed);
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
        if let Some(deleted) = live.deleted.get() {
            let reason = format!("{deleted}; it had failed after {attempt} attempt(s): {failure}");
            return self.dead_letter_later(live.clone(), recorded, reason);
        }
        let age = (Utc::now() - recorded.event.time).to_std().unwrap_or_default();
        if attempt > live.spec.retries || age >= Duration::from_millis(live.spec.max_age_ms) {
            let reason = format!("failed after {attempt} attempt(s): {failure}");
            return self.dead_letter_later(live.clone(), recorded, reason);
        }
        let (functions, live) = (self.clone(), live.clone());
        let backoff = Duration::from_millis(100u64 << (attempt - 1).min(7)).min(Duration::from_secs(10));
        live.retrying.fetch_add(1, Ordering::Relaxed);
        let mut stopping = self.stopping.subscribe();
        let mut retired = live.retired.subscribe();
        tokio::spawn(async move {
            // Deleted (not merely replaced by a newer version): its outcome now, not after the backoff.
            let deleted = async {
                let _ = retired.wait_for(|r| *r).await;
                if live.deleted.get().is_none() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = deleted => {}
                // Stopping: the retry is handed back (it stays in the position).
                _ = stopping.wait_for(|s| *s) => return,
            }
            live.retrying.fetch_sub(1, Ordering::Relaxed);
            // Deleted meanwhile: a version deployed since under the name is another function.
            let current = match live.deleted.get() {
                Some(_) => None,
                None => functions.live.read().unwrap_or_else(|e| e.into_inner()).get(&live.version.name).cloned(),
            };
            let job = Job { recorded: recorded.clone(), attempt: attempt + 1, queued_at: Instant::now() };
            let sent = match current {
                Some(current) => current.queue.send(job).await.is_ok(),
                None => false,
            };
            if !sent {
                let reason = match live.deleted.get() {
                    Some(deleted) => format!("{deleted}; it had failed after {attempt} attempt(s): {failure}"),
                    None => format!("failed after {attempt} attempt(s), and the function is gone: {failure}"),
                };
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
/// its queue is drained, when the server stops (what is queued stays, to
/// be handed back), or when the functions are gone.
pub(super) async fn work(functions: Weak<Functions>, live: Arc<Live>, mut jobs: tokio::sync::mpsc::Receiver<Job>) {
    let Some(mut stopping) = functions.upgrade().map(|f| f.stopping.subscribe()) else { return };
    // Stopping, the queue is kept with what it holds, to be counted as handed back.
    let keep = |jobs| *live.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some(jobs);
    let mut retired = live.retired.subscribe();
    let mut open = true;
    loop {
        let permit = tokio::select! {
            permit = live.slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stopping.wait_for(|s| *s) => return keep(jobs),
        };
        let mut batch = Vec::new();
        tokio::select! {
            taken = jobs.recv_many(&mut batch, live.batch_size()) => if taken == 0 { return },
            _ = retired.wait_for(|r| *r), if open => {
                // Replaced: take nothing new, run what is queued.
                jobs.close();
                open = false;
                continue;
            }
            _ = stopping.wait_for(|s| *s) => return keep(jobs),
        }
        if let (Some(reason), Some(functions)) = (live.deleted.get(), functions.upgrade()) {
            return clear(functions, live.clone(), batch, jobs, reason.clone());
        }
        let Some(functions) = functions.upgrade() else { return };
        // Counted as running while it waits its turn: a delete sees it in hand.
        live.running.fetch_add(batch.len(), Ordering::Relaxed);
        if live.spec.rate_per_second.is_some() {
            live.pace().await;
            if let Some(reason) = live.deleted.get() {
                live.running.fetch_sub(batch.len(), Ordering::Relaxed);
                return clear(functions, live.clone(), batch, jobs, reason.clone());
            }
        }
        functions.busy.spawn(functions.clone().run_batch(live.clone(), batch, permit));
    }
}

/// Dead-letters what a deleted function had queued: the batch just taken
/// and everything behind it, each event its one outcome.
fn clear(
    functions: Arc<Functions>,
    live: Arc<Live>,
    mut batch: Vec<Job>,
    mut jobs: tokio::sync::mpsc::Receiver<Job>,
    reason: String,
) {
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        batch.push(job);
    }
    let cleared = functions.clone();
    functions.busy.spawn(async move {
        for job in batch {
            cleared.dead_letter(&live, &job.recorded, &reason).await;
        }
    });
}

/// Moves a function's backlog into its queue as room frees, reading the
/// events back from the recorder [`FEED_BATCH`] at a time. Stops when the
/// server stops (the backlog is handed back) or when its version is
/// replaced (the backlog moves to the new version, see `load`).
pub(super) async fn feed(functions: Weak<Functions>, live: Arc<Live>) {
    let Some(mut stopping) = functions.upgrade().map(|f| f.stopping.subscribe()) else { return };
    let mut retired = live.retired.subscribe();
    loop {
        let taken: Vec<(EventId, u32)> = {
            let mut backlog = live.backlog.lock().unwrap_or_else(|e| e.into_inner());
            let n = backlog.len().min(FEED_BATCH);
            backlog.drain(..n).collect()
        };
        if taken.is_empty() {
            tokio::select! {
                _ = live.backlog_added.notified() => continue,
                _ = stopping.wait_for(|s| *s) => return,
                _ = retired.wait_for(|r| *r) => return,
            }
        }
        let Some(functions) = functions.upgrade() else { return };
        let found = match functions.pipeline.store().get_many(taken.iter().map(|(id, _)| *id).collect()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(function = %live.version.name, error = %e, "could not read waiting events back; retrying");
                {
                    let mut backlog = live.backlog.lock().unwrap_or_else(|e| e.into_inner());
                    taken.into_iter().rev().for_each(|t| backlog.push_front(t));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut found: std::collections::HashMap<EventId, RecordedEvent> =
            found.into_iter().map(|r| (r.event.id, r)).collect();
        for (n, (id, attempt)) in taken.iter().copied().enumerate() {
            // Removed by retention since: nothing left to run.
            let Some(recorded) = found.remove(&id).map(Arc::new) else {
                functions.position.acks().ack(id);
                continue;
            };
            if let Err(reason) = admit(&live, &recorded) {
                functions.dead_letter_later(live.clone(), recorded, reason);
                continue;
            }
            let job = Job { recorded, attempt, queued_at: Instant::now() };
            let sent = tokio::select! {
                sent = live.queue.send(job) => sent.is_ok(),
                // Stopping: the rest stays in the position, for the next start.
                _ = stopping.wait_for(|s| *s) => return,
            };
            if sent {
                continue;
            }
            if let Some(reason) = live.deleted.get() {
                let rest = taken[n..].iter().map(|(id, _)| *id).collect();
                return functions.clone().dead_letter_ids(live.clone(), rest, reason.clone()).await;
            }
            // Replaced while waiting: the new version takes the rest.
            if let Some(current) = functions.live.read().unwrap_or_else(|e| e.into_inner()).get(&live.version.name) {
                current.defer(taken[n..].iter().copied());
            }
            return;
        }
    }
}

/// Feeds recorded events to the functions while they live: first what the
/// last run left unfinished (`resume.rs`), then the bus. The bus is
/// bounded and skips ahead when a reader falls behind; the skipped events
/// are in the recorder, so they are read back from it: no event a trigger
/// matches is missed. Stops taking events when the server stops.
pub(super) async fn dispatch(functions: Weak<Functions>, mut events: glassbox_bus::Consumer) {
    let Some(mut stopping) = functions.upgrade().map(|f| f.stopping.subscribe()) else { return };
    match functions.upgrade() {
        Some(f) => match f.resume(&mut events).await {
            Ok(()) => {
                tokio::spawn(glassbox_bus::keep_cursor(
                    Arc::downgrade(&f.position),
                    super::position::SAVE_EVERY,
                    f.stopping.subscribe(),
                ));
            }
            // Without a resume the saved position must stay where it is.
            Err(e) => tracing::error!(
                error = %e,
                "could not read back the work the last run left unfinished; it is taken up at the next start"
            ),
        },
        None => return,
    }
    loop {
        let batch = tokio::select! {
            batch = events.next() => match batch {
                Some(batch) => batch,
                None => return,
            },
            _ = stopping.wait_for(|s| *s) => return,
        };
        let Some(functions) = functions.upgrade() else { return };
        if let Some(glassbox_bus::Unread { skipped, error, after }) = batch.unread {
            // Held where it was, the position has the next start read them.
            if let Some(last) = after {
                functions.position.acks().took(last, 1);
            }
            tracing::error!(skipped, %error, "could not read skipped events back; the next start takes them up");
        }
        batch.events.into_iter().for_each(|recorded| functions.offer(recorded));
    }
}

/// Lets the events `throttle` budgets hold go, oldest first, as their
/// budgets' windows have room again: each joins its function's backlog
/// (read back from the recorder, then queued). One held for a function
/// deleted or retired meanwhile is let go unrun (that change is on the
/// record). Checks every
/// [`THROTTLE_TICK`] while the functions live.
pub(super) async fn release_throttled(functions: Weak<Functions>) {
    let mut tick = tokio::time::interval(THROTTLE_TICK);
    loop {
        tick.tick().await;
        let Some(functions) = functions.upgrade() else { return };
        functions.release_held(now_seconds());
    }
}

/// How often held events are looked at.
const THROTTLE_TICK: Duration = Duration::from_millis(250);

impl Functions {
    /// Releases the held events whose budgets now have room, in order,
    /// until one's budget has none.
    fn release_held(self: &Arc<Self>, now: u64) {
        loop {
            let Some(held) = self.budgets.throttled.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else {
                return;
            };
            let live = self.live.read().unwrap_or_else(|e| e.into_inner()).get(&held.function).cloned();
            let Some(live) = live else {
                // Deleted or retired meanwhile: nothing left to run it; that change is on the record.
                self.position.acks().ack(held.event);
                continue;
            };
            let who = Who { function: &held.function, feature: held.feature.as_deref(), group: held.group.as_deref() };
            match self.budgets.ledger().admit(&who, now, false) {
                Verdict::Run(reached) => {
                    if !reached.is_empty() {
                        let budgets = self.budgets.clone();
                        self.busy.spawn(async move { budgets.record_reached(reached).await });
                    }
                    let refused = live.defer([(held.event, 1)]);
                    if !refused.is_empty() {
                        let reason = live.refusal();
                        self.busy.spawn(self.clone().dead_letter_ids(live, refused, reason));
                    }
                }
                Verdict::Stop(_) | Verdict::Hold(_) => {
                    self.budgets.throttled.lock().unwrap_or_else(|e| e.into_inner()).push_front(held);
                    return;
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
