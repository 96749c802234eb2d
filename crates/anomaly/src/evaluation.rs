//! Scoring a detector's alerts against labelled anomalies.
//!
//! Each label becomes a window from its first affected point to its last
//! one plus a tolerance (`tolerance_points` intervals). The first alert in
//! a window detects it, with a delay from the label's start (in seconds and
//! in intervals); further alerts in the same window are neither credited
//! nor penalised. Every alert outside all windows is a false alarm. So:
//!
//! - recall = detected windows / windows;
//! - precision = detected windows / (detected windows + false alarms);
//! - false alarms are also given per 10,000 points, over all series.
//!
//! [`replay`] runs a detector over a series as a live host would: every
//! point through [`Detector::observe`], and at every grid tick with no point
//! a [`Detector::silence`] check, so a silence can be flagged while it lasts.

use std::collections::BTreeMap;

use crate::Detector;
use crate::synthetic::{Kind, Series};

/// Alerts raised on one series: their times (seconds).
pub fn replay(series: &Series, detector: &mut Detector) -> Vec<f64> {
    let mut alerts = Vec::new();
    let mut missing = series.missing.iter().peekable();
    for &(t, value) in &series.points {
        while let Some(&&tick) = missing.peek().filter(|&&&m| m < t) {
            missing.next();
            if detector.silence(tick).anomalous {
                alerts.push(tick);
            }
        }
        if detector.observe(t, value).anomalous {
            alerts.push(t);
        }
    }
    alerts
}

/// The outcome of one labelled window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub kind: Kind,
    /// Delay from the label's start to the first alert in its window, in
    /// seconds and in intervals; `None` if missed.
    pub delay_secs: Option<f64>,
    pub delay_points: Option<f64>,
}

/// One series' windows and false alarms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesOutcome {
    pub detections: Vec<Detection>,
    pub false_alarms: usize,
    pub points: usize,
}

/// Matches `alerts` (times) against the series' labels.
pub fn judge(series: &Series, alerts: &[f64], tolerance_points: f64) -> SeriesOutcome {
    let windows: Vec<(f64, f64)> =
        series.labels.iter().map(|l| (l.start, l.end + tolerance_points * series.interval_secs)).collect();
    let mut first: Vec<Option<f64>> = vec![None; windows.len()];
    let mut false_alarms = 0;
    for &a in alerts {
        match windows.iter().position(|&(s, e)| a >= s && a <= e) {
            Some(w) => {
                first[w].get_or_insert(a);
            }
            None => false_alarms += 1,
        }
    }
    let detections = series
        .labels
        .iter()
        .zip(first)
        .map(|(label, hit)| {
            let delay = hit.map(|a| a - label.start);
            Detection { kind: label.kind, delay_secs: delay, delay_points: delay.map(|d| d / series.interval_secs) }
        })
        .collect();
    SeriesOutcome { detections, false_alarms, points: series.points.len() }
}

/// Totals over a suite.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub series: usize,
    pub points: usize,
    pub false_alarms: usize,
    pub by_kind: BTreeMap<Kind, KindReport>,
}

/// Windows of one kind: how many, which were detected, and their delays.
#[derive(Clone, Debug, Default)]
pub struct KindReport {
    pub windows: usize,
    pub detected: usize,
    pub delays_secs: Vec<f64>,
    pub delays_points: Vec<f64>,
}

impl KindReport {
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.windows)
    }
}

impl Report {
    pub fn add(&mut self, outcome: &SeriesOutcome) {
        self.series += 1;
        self.points += outcome.points;
        self.false_alarms += outcome.false_alarms;
        for d in &outcome.detections {
            let k = self.by_kind.entry(d.kind).or_default();
            k.windows += 1;
            if let (Some(s), Some(p)) = (d.delay_secs, d.delay_points) {
                k.detected += 1;
                k.delays_secs.push(s);
                k.delays_points.push(p);
            }
        }
    }

    /// All kinds together.
    pub fn total(&self) -> KindReport {
        let mut total = KindReport::default();
        for k in self.by_kind.values() {
            total.windows += k.windows;
            total.detected += k.detected;
            total.delays_secs.extend(&k.delays_secs);
            total.delays_points.extend(&k.delays_points);
        }
        total
    }

    pub fn precision(&self) -> f64 {
        let detected = self.total().detected;
        ratio(detected, detected + self.false_alarms)
    }

    pub fn recall(&self) -> f64 {
        self.total().recall()
    }

    pub fn false_alarms_per_10k_points(&self) -> f64 {
        if self.points == 0 { 0.0 } else { self.false_alarms as f64 * 10_000.0 / self.points as f64 }
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// The median of some values (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    crate::stats::median(&mut v).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{Label, Shape};

    fn series() -> Series {
        Series {
            name: "s".into(),
            shape: Shape::Daily,
            interval_secs: 60.0,
            points: (0..100).map(|i| (i as f64 * 60.0, 0.0)).collect(),
            missing: Vec::new(),
            labels: vec![Label { kind: Kind::Spike, start: 600.0, end: 660.0 }],
        }
    }

    #[test]
    fn first_alert_in_a_window_detects_it_and_alerts_outside_are_false_alarms() {
        let outcome = judge(&series(), &[60.0, 720.0, 780.0, 3000.0], 2.0);
        assert_eq!(outcome.false_alarms, 2);
        assert_eq!(outcome.detections[0].delay_secs, Some(120.0));
        assert_eq!(outcome.detections[0].delay_points, Some(2.0));
        let late = judge(&series(), &[900.0], 2.0);
        assert_eq!((late.false_alarms, late.detections[0].delay_secs), (1, None));
    }

    #[test]
    fn report_precision_recall_and_rate() {
        let mut report = Report::default();
        report.add(&judge(&series(), &[600.0, 3000.0], 2.0));
        report.add(&judge(&series(), &[], 2.0));
        assert_eq!(report.recall(), 0.5);
        assert_eq!(report.precision(), 0.5);
        assert_eq!(report.false_alarms_per_10k_points(), 50.0);
    }
}
