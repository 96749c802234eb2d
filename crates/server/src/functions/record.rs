//! Recording what functions did: outputs as events caused by the trigger,
//! then the `function.invoked` records (and denied outbound requests and
//! dead letters) on the trigger's chain, each spelling out its lineage so
//! the recorder need not look the trigger up.

use std::sync::Arc;
use std::time::Duration;

use glassbox_core::{
    Data, DeadLetter, Draft, DropReason, FUNCTION_DEAD_LETTER, FUNCTION_INVOKED, InvocationKey, RecordedEvent,
};
use glassbox_runtime::{Outcome, Output, Report};
use serde_json::{Value, json};

use super::{Functions, Live, Run};

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
        let data = serde_json::to_value(data).unwrap_or_default();
        if self.record_about(live, recorded, FUNCTION_DEAD_LETTER, data).await.is_some() {
            self.position.acks().ack(recorded.event.id);
        }
    }

    pub(super) async fn record_about(
        &self,
        live: &Live,
        recorded: &RecordedEvent,
        ty: &str,
        data: Value,
    ) -> Option<String> {
        let draft = about(live, recorded, ty, &data);
        match self.pipeline.ingest(vec![draft], "platform").await {
            Ok(appended) => appended.first().map(|a| a.id.clone()),
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
    ) -> Option<Value> {
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
    ) -> Vec<Option<Value>> {
        let name = &live.version.name;
        let drafts: Vec<Draft> = runs
            .iter()
            .flat_map(|(recorded, _, report)| report.outputs.iter().map(|o| output_draft(name, live, recorded, o)))
            .collect();
        let mut output_ids = match drafts.is_empty() {
            true => Vec::new(),
            false => match self.pipeline.ingest(drafts, "function").await {
                Ok(appended) => appended.into_iter().map(|a| a.id).collect(),
                Err(e) => {
                    tracing::error!(function = %name, error = %e, "could not record a function's outputs");
                    Vec::new()
                }
            },
        }
        .into_iter();
        let mut records = Vec::with_capacity(runs.len());
        let mut drafts = Vec::with_capacity(runs.len());
        for (recorded, run, report) in runs {
            let outputs: Vec<String> = output_ids.by_ref().take(report.outputs.len()).collect();
            // Each denied outbound request is an event of its own, on the chain.
            for denied in report.egress.iter().filter(|e| e.outcome == "denied") {
                let data = json!({
                    "function": name, "version": live.version.version, "host": denied.host, "port": denied.port,
                    "method": denied.method, "reason": DropReason::EgressDenied.to_string(), "detail": denied.error,
                    "event_id": recorded.event.id.to_string(),
                });
                drafts.push((false, about(live, &recorded, "function.egress_denied", &data)));
            }
            let data = self.invocation(live, &recorded, run, report, outputs);
            drafts.push((true, about(live, &recorded, FUNCTION_INVOKED, &data)));
            records.push(data);
        }
        let (kinds, drafts): (Vec<bool>, Vec<Draft>) = drafts.into_iter().unzip();
        let ids: Vec<Option<String>> = match self.pipeline.ingest(drafts, "platform").await {
            Ok(appended) => {
                kinds.iter().zip(appended).filter(|(invoked, _)| **invoked).map(|(_, a)| Some(a.id)).collect()
            }
            Err(e) => {
                tracing::error!(function = %name, error = %e, "could not record invocations");
                vec![None; records.len()]
            }
        };
        records
            .into_iter()
            .zip(ids)
            .map(|(mut data, id)| {
                data["id"] = json!(id);
                id.map(|_| data)
            })
            .collect()
    }

    /// An invocation's record: what ran, how it went, what it took and cost.
    fn invocation(
        &self,
        live: &Live,
        recorded: &RecordedEvent,
        run: Run<'_>,
        report: Report,
        outputs: Vec<String>,
    ) -> Value {
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
        let mut data = serde_json::to_value(key).unwrap_or_default();
        let mut logs = serde_json::to_value(&report.logs).unwrap_or_default();
        if let (Some(line), Some(logs)) = (failure_line(live, &run, &report), logs.as_array_mut()) {
            logs.push(line);
        }
        let more = json!({
            "error": report.outcome.detail(),
            "start": run.started,
            "cold": report.cold,
            "instantiate_us": report.instantiate.as_micros() as u64,
            "wall_us": report.wall.as_micros() as u64,
            "cpu_us": report.cpu.as_micros() as u64,
            "memory_bytes": report.memory_bytes,
            "cost": cost,
            "logs": logs,
            "logs_dropped": report.logs_dropped,
            "log_bytes": report.logs.iter().map(|l| l.message.len()).sum::<usize>(),
            "outputs": outputs,
            "egress": report.egress,
            "egress_dropped": report.egress_dropped,
        });
        if let (Value::Object(data), Value::Object(more)) = (&mut data, more) {
            data.extend(more);
        }
        if let Some(queued) = run.queued {
            data["queued_us"] = json!(queued.as_micros() as u64);
        }
        if let Some(http) = run.http {
            data["http"] = http;
        }
        data
    }
}

/// The ERROR line the platform adds to the logs of an invocation that did
/// not succeed, so `glassbox logs --function F --level error` shows why:
/// `invocation failed (attempt 2 of 3): trapped: unreachable`. Marked
/// `"source": "platform"`: not the guest's, and not in its `log_bytes`.
fn failure_line(live: &Live, run: &Run<'_>, report: &Report) -> Option<Value> {
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
    let at_us = report.wall.as_micros() as u64;
    Some(json!({ "level": "error", "message": format!("{what}: {why}"), "at_us": at_us, "source": "platform" }))
}

/// A platform record about a function and the event it handled: caused by
/// the event, on its chain (its lineage given, so the recorder need not
/// look the event up).
fn about(live: &Live, recorded: &RecordedEvent, ty: &str, data: &Value) -> Draft {
    Draft {
        subject: Some(live.version.name.clone()),
        device: recorded.event.device.clone(),
        feature: live.spec.feature.clone(),
        ..child_of(recorded, Draft::json(format!("glassbox/functions/{}", live.version.name), ty, data))
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
