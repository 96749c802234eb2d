//! Recording what functions did: outputs as events caused by the trigger,
//! then the `function.invoked` records (and denied outbound requests and
//! dead letters) on the trigger's chain, each spelling out its lineage so
//! the recorder need not look the trigger up.

use std::sync::Arc;
use std::time::Duration;

use glassbox_core::{
    Data, DeadLetter, Draft, DropReason, Dropped, EgressDenied, EgressRequest, Invocation, InvocationKey, LogLine,
    Payload, RecordedEvent, ThresholdReached,
};
use glassbox_runtime::{EgressRecord, Outcome, Output, Report};
use serde::{Deserialize, Serialize};

use super::{Functions, Live, Run};

/// An invocation as recorded, with the id of its `function.invoked`
/// record: what a replay answers and `functions invocations` lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedInvocation {
    pub id: String,
    #[serde(flatten)]
    pub invocation: Invocation,
}

impl Functions {
    /// Gives up on an event for this function, keeping what replay needs:
    /// the original event (by id), the version, and why.
    pub(super) async fn dead_letter(&self, live: &Live, recorded: &RecordedEvent, reason: &str) {
        let data = DeadLetter {
            function: live.version.name.clone(),
            version: live.version.version,
            digest: live.version.digest.clone(),
            reason: reason.to_string(),
            event: recorded.event.id.to_string(),
        };
        if self.record_about(live, recorded, &data).await.is_some() {
            self.position.acks().ack(recorded.event.id);
        }
    }

    /// Records that the function did not run an event on purpose (a
    /// budget, the chain bound): the event's one outcome for it.
    pub(super) async fn dropped(&self, live: &Live, recorded: &RecordedEvent, reason: DropReason, detail: String) {
        let data = Dropped {
            function: live.version.name.clone(),
            version: live.version.version,
            reason,
            detail,
            event: recorded.event.id.to_string(),
        };
        if self.record_about(live, recorded, &data).await.is_some() {
            self.position.acks().ack(recorded.event.id);
        }
    }

    pub(super) async fn record_about<P: Payload>(
        &self,
        live: &Live,
        recorded: &RecordedEvent,
        payload: &P,
    ) -> Option<String> {
        let draft = about(live, recorded, payload);
        match self.pipeline.ingest(vec![draft], "platform").await {
            Ok(appended) => appended.first().map(|a| a.id.to_string()),
            Err(e) => {
                tracing::error!(function = %live.version.name, error = %e, "could not record an invocation");
                None
            }
        }
    }

    /// Records the outputs and the invocation; returns the invocation record.
    pub(super) async fn record_invocation(
        &self,
        live: &Live,
        recorded: &RecordedEvent,
        run: Run<'_>,
        report: Report,
    ) -> Option<RecordedInvocation> {
        let recorded = Arc::new(recorded.clone());
        self.record_invocations(live, vec![(recorded, run, report)]).await.pop().flatten()
    }

    /// Records invocations in two recorder writes: first every output (as
    /// events caused by their trigger), then the denied outbound requests
    /// and the `function.invoked` records, which name the outputs' ids.
    /// Returns each invocation's record, with its id.
    pub(super) async fn record_invocations(
        &self,
        live: &Live,
        runs: Vec<(Arc<RecordedEvent>, Run<'_>, Report)>,
    ) -> Vec<Option<RecordedInvocation>> {
        let name = &live.version.name;
        let drafts: Vec<Draft> = runs
            .iter()
            .flat_map(|(recorded, _, report)| report.outputs.iter().map(|o| output_draft(name, live, recorded, o)))
            .collect();
        let mut output_ids = match drafts.is_empty() {
            true => Vec::new(),
            false => match self.pipeline.ingest(drafts, "function").await {
                Ok(appended) => appended.into_iter().map(|a| a.id.to_string()).collect(),
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "could not record a function's outputs");
                    Vec::new()
                }
            },
        }
        .into_iter();
        let mut records = Vec::with_capacity(runs.len());
        let mut drafts = Vec::with_capacity(runs.len());
        let mut reached = Vec::new();
        for (recorded, run, report) in runs {
            let outputs: Vec<String> = output_ids.by_ref().take(report.outputs.len()).collect();
            // Each denied outbound request is an event of its own, on the chain.
            for denied in report.egress.iter().filter(|e| e.outcome == "denied") {
                drafts.push((false, about(live, &recorded, &egress_denied(live, &recorded, denied))));
            }
            let invocation = self.invocation(live, &recorded, run, report, outputs);
            reached.extend(self.count_ran(live, &recorded, &invocation));
            drafts.push((true, about(live, &recorded, &invocation)));
            records.push(invocation);
        }
        self.budgets.record_reached(reached).await;
        let (kinds, drafts): (Vec<bool>, Vec<Draft>) = drafts.into_iter().unzip();
        let ids: Vec<Option<String>> = match self.pipeline.ingest(drafts, "platform").await {
            Ok(appended) => kinds
                .iter()
                .zip(appended)
                .filter(|(invoked, _)| **invoked)
                .map(|(_, a)| Some(a.id.to_string()))
                .collect(),
            Err(e) => {
                tracing::error!(function = %name, error = %e, "could not record invocations");
                vec![None; records.len()]
            }
        };
        records
            .into_iter()
            .zip(ids)
            .map(|(invocation, id)| id.map(|id| RecordedInvocation { id, invocation }))
            .collect()
    }

    /// Counts what an invocation took and cost against its budgets;
    /// returns the thresholds it reached.
    fn count_ran(&self, live: &Live, recorded: &RecordedEvent, invocation: &Invocation) -> Vec<ThresholdReached> {
        let ledger = self.budgets.ledger();
        if !ledger.any() {
            return Vec::new();
        }
        let group = recorded.event.device.as_deref().and_then(|d| self.budgets.group_of(d)).flatten();
        let feature = live.spec.feature.as_deref();
        let who = super::budgets::Who { function: &live.version.name, feature, group: group.as_deref() };
        ledger.ran(&who, invocation.cpu_us, invocation.cost, super::budgets::now_seconds())
    }

    /// An invocation's record: what ran, how it went, what it took and cost.
    fn invocation(
        &self,
        live: &Live,
        recorded: &RecordedEvent,
        run: Run<'_>,
        report: Report,
        outputs: Vec<String>,
    ) -> Invocation {
        let gib = live.spec.memory_bytes as f64 / f64::from(1u32 << 30);
        let cost = self.prices.per_request + gib * report.wall.as_secs_f64() * self.prices.per_gib_second;
        let key = InvocationKey {
            function: live.version.name.clone(),
            version: live.version.version,
            digest: live.version.digest.clone(),
            event_id: recorded.event.id.to_string(),
            attempt: run.attempt,
            outcome: report.outcome.as_str().to_string(),
            replay_of: run.replay_of.map(str::to_string),
        };
        let mut logs: Vec<LogLine> = report.logs.iter().map(log_line).collect();
        logs.extend(failure_line(live, &run, &report));
        Invocation {
            key,
            error: report.outcome.detail().map(str::to_string),
            start: run.started,
            cold: report.cold,
            instantiate_us: micros(report.instantiate),
            wall_us: micros(report.wall),
            cpu_us: micros(report.cpu),
            memory_bytes: report.memory_bytes as u64,
            cost,
            logs,
            logs_dropped: report.logs_dropped as u64,
            log_bytes: report.logs.iter().map(|l| l.message.len() as u64).sum(),
            outputs,
            egress: report.egress.iter().map(egress_request).collect(),
            egress_dropped: report.egress_dropped as u64,
            queued_us: run.queued.map(micros),
            http: run.http,
        }
    }
}

fn micros(duration: Duration) -> u64 {
    duration.as_micros() as u64
}

/// A runtime log line as the invocation record keeps it.
pub(super) fn log_line(line: &glassbox_runtime::LogLine) -> LogLine {
    LogLine {
        level: line.level.to_string(),
        message: line.message.clone(),
        at_us: line.at_us,
        stream: line.stream.map(str::to_string),
        source: None,
    }
}

/// A runtime outbound request as the invocation record keeps it.
pub(super) fn egress_request(r: &EgressRecord) -> EgressRequest {
    EgressRequest {
        host: r.host.clone(),
        port: r.port,
        scheme: r.scheme.clone(),
        method: r.method.clone(),
        outcome: r.outcome.to_string(),
        status: r.status,
        error: r.error.clone(),
        bytes_out: r.bytes_out,
        bytes_in: r.bytes_in,
        duration_us: r.duration_us,
        traceparent: r.traceparent,
        at_us: r.at_us,
    }
}

/// The record of an outbound request the allow list refused.
fn egress_denied(live: &Live, recorded: &RecordedEvent, denied: &EgressRecord) -> EgressDenied {
    EgressDenied {
        function: live.version.name.clone(),
        version: live.version.version,
        host: denied.host.clone(),
        port: denied.port,
        method: denied.method.clone(),
        reason: DropReason::EgressDenied,
        detail: denied.error.clone(),
        event_id: recorded.event.id.to_string(),
    }
}

/// The ERROR line the platform adds to the logs of an invocation that did
/// not succeed, so `glassbox logs --function F --level error` shows why:
/// `invocation failed (attempt 2 of 3): trapped: unreachable`. Marked
/// `"source": "platform"`: not the guest's, and not in its `log_bytes`.
fn failure_line(live: &Live, run: &Run<'_>, report: &Report) -> Option<LogLine> {
    let why = match &report.outcome {
        Outcome::Succeeded => return None,
        Outcome::TimedOut => {
            let deadline = humantime::format_duration(Duration::from_millis(live.spec.timeout_ms));
            format!("timed_out: stopped at its deadline of {deadline}")
        }
        Outcome::MemoryExceeded => {
            format!("memory_exceeded: it asked for more memory than its {} MiB limit", live.spec.memory_bytes >> 20)
        }
        other => format!("{}: {}", other.as_str(), other.detail().unwrap_or_default()),
    };
    let what = match (run.replay_of, &run.http) {
        (Some(event), _) => format!("replay of {event} failed"),
        (None, Some(_)) => "HTTP request failed (requests are not retried)".to_string(),
        (None, None) => {
            let attempts = run.attempt.max(live.spec.retries.saturating_add(1));
            format!("invocation failed (attempt {} of {attempts})", run.attempt)
        }
    };
    Some(LogLine {
        level: "error".into(),
        message: format!("{what}: {why}"),
        at_us: micros(report.wall),
        stream: None,
        source: Some(LogLine::PLATFORM.into()),
    })
}

/// A platform record about a function and the event it handled: caused by
/// the event, on its chain (its lineage given, so the recorder need not
/// look the event up).
fn about<P: Payload>(live: &Live, recorded: &RecordedEvent, payload: &P) -> Draft {
    Draft {
        subject: Some(live.version.name.clone()),
        device: recorded.event.device.clone(),
        feature: live.spec.feature.clone(),
        ..child_of(recorded, Draft::payload(format!("glassbox/functions/{}", live.version.name), payload))
    }
}

/// `draft` as a child of `recorded`, with the lineage it inherits spelled out.
fn child_of(recorded: &RecordedEvent, draft: Draft) -> Draft {
    let parent = &recorded.event;
    Draft {
        causationid: Some(parent.id.to_string()),
        correlationid: Some(parent.correlationid.clone()),
        hop: Some(parent.hop.saturating_add(1)),
        traceparent: parent.traceparent.clone(),
        ..draft
    }
}

fn output_draft(name: &str, live: &Live, recorded: &RecordedEvent, output: &Output) -> Draft {
    // JSON no reader could parse back (too deep, a lone surrogate) is kept as bytes.
    let json = std::str::from_utf8(&output.data).ok().and_then(|t| Data::json_text(t).ok());
    let data = match json {
        Some(data) => data,
        None if output.data.is_empty() => Data::None,
        None => Data::Binary(output.data.clone()),
    };
    let draft = Draft {
        source: format!("fn/{name}"),
        ty: output.type_.clone(),
        subject: output.subject.clone(),
        datacontenttype: output.datacontenttype.clone(),
        device: recorded.event.device.clone(),
        feature: live.spec.feature.clone(),
        data,
        ..Draft::default()
    };
    child_of(recorded, draft)
}
