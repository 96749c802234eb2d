//! Diagnoses in words: what is abnormal, since when, what it affects, and
//! the most likely causes with their evidence.

use std::fmt::Write as _;

use crate::{Cause, Episode, Incident, Subject};

/// `45 s`, `3 min`, `2 h 5 min`, `3 d`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => match (s / 3600, s % 3600 / 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        },
        s => format!("{} d", s / 86_400),
    }
}

/// A value with its unit, to three significant figures.
pub fn value(v: f64, unit: &str) -> String {
    let text = match v.abs() {
        0.0 => "0".to_string(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        // Three significant figures however small (costs are millionths).
        a => format!("{v:.*}", (2.0 - a.log10().floor()).min(12.0) as usize),
    };
    if unit.is_empty() { text } else { format!("{text} {unit}") }
}

fn signal_words(signal: &str) -> &'static str {
    match signal {
        "spike" => "jumped",
        "dip" => "dropped",
        "level_up" => "rose and stays high",
        "level_down" => "fell and stays low",
        "drift_up" => "is drifting up",
        "drift_down" => "is drifting down",
        "more_variable" => "became erratic",
        "less_variable" => "went flat",
        "silence" => "went silent",
        _ => "is unusual",
    }
}

/// One episode in words: "function fan: latency rose and stays high (51.8 ms, expected 0.42 ms)".
pub fn episode(e: &Episode) -> String {
    if e.series.unit.is_empty() && e.expected.is_none() {
        // Flagged by another detector (liveness): what it said, no value.
        let detail = e.detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
        return format!("{}: {} {}{detail}", e.series.subject, e.series.what, signal_words(&e.signal));
    }
    let expected = e.expected.map(|x| format!(", expected {}", value(x, &e.series.unit))).unwrap_or_default();
    format!(
        "{}: {} {} ({}{expected}; score {:.2})",
        e.series.subject,
        e.series.what,
        signal_words(&e.signal),
        value(e.value, &e.series.unit),
        e.peak_score
    )
}

pub fn incident(episodes: &[Episode], causes: &[Cause], start: f64, end: Option<f64>, now: f64) -> String {
    let mut out = String::new();
    match end {
        None => {
            let _ = write!(out, "Abnormal for {} and still: ", duration(now - start));
        }
        Some(end) => {
            let _ = write!(out, "Abnormal for {}, back to normal {} ago: ", duration(end - start), duration(now - end));
        }
    }
    let parts: Vec<String> = episodes.iter().map(episode).collect();
    out.push_str(&parts.join("; "));
    out.push('.');
    match causes.first() {
        Some(cause) if cause.verdict != "unlikely" => {
            let _ = write!(
                out,
                " {} cause (confidence {:.2}): {} — {}.",
                capitalise(cause.verdict),
                cause.confidence,
                cause.change.summary,
                cause.evidence.join("; ")
            );
        }
        Some(cause) => {
            let _ = write!(
                out,
                " No recorded change clearly explains it; the nearest, {} ({}), is unlikely (confidence {:.2}).",
                cause.change.summary,
                cause.evidence.first().cloned().unwrap_or_default(),
                cause.confidence
            );
        }
        None => out.push_str(
            " No change was recorded in the 30 minutes before it: the cause may be outside what Glassbox \
             records (traffic, a device, a network, a dependency).",
        ),
    }
    out
}

pub fn diagnosis(incidents: &[Incident], span: f64, scope: Option<&Subject>) -> String {
    let about = scope.map(|s| format!(" about {s}")).unwrap_or_default();
    let open = incidents.iter().filter(|i| i.end.is_none()).count();
    match incidents.len() {
        0 => format!("Nothing abnormal{about} in the last {}.", duration(span)),
        n => format!(
            "{n} incident{}{about} in the last {} ({open} still open).",
            if n == 1 { "" } else { "s" },
            duration(span)
        ),
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_uppercase().collect::<String>() + chars.as_str()).unwrap_or_default()
}
