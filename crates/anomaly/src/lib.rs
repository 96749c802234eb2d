//! Streaming anomaly detection for Glassbox's key series (function latency,
//! error and invocation rates, device message rates and silences, drops,
//! connection churn, cost, egress), with no per-series tuning.
//!
//! One [`Detector`] per series takes `(timestamp, value)` points in time
//! order and answers each with an [`Observation`]: a score in `[0, 1]` and a
//! flag raised once per anomaly [`Episode`]. It learns the series' normal as
//! it goes:
//!
//! - the sampling interval ([`Detector::interval`]), from the gaps;
//! - a forecast: a robust level, a fast level for wandering series, and
//!   daily and weekly seasonal profiles once the data span two periods; the
//!   model with the lowest recent error is used ([`Detector::model`]);
//! - the usual error size, and how often and how far errors, recent error
//!   averages and gaps exceed their usual range (peaks over threshold), so
//!   a score means the same thing on a calm series and a noisy one.
//!
//! A level shift that lasts is re-learned so its episode ends; non-finite
//! values, duplicate and out-of-order timestamps are skipped without
//! touching what was learned; a constant series scores 0 until it changes.
//! Memory is constant (a few KiB per series) and each point is O(1).
//!
//! The crate does no I/O. [`synthetic`] generates labelled series with
//! injected anomalies and [`evaluation`] scores a detector's alerts against
//! them; `glassbox bench anomaly` and `glassbox anomaly backtest` drive both.

mod backtest;
mod baseline;
mod cadence;
mod detector;
mod episode;
pub mod evaluation;
pub mod nab;
mod settings;
mod stats;
pub mod synthetic;
mod tail;

pub use backtest::{Backtest, Row};
pub use cadence::Skip;
pub use detector::{Detector, Observation, Parts, Status};
pub use episode::{BURST_RISE, Episode, EpisodeTracker, PEAK_HOLD_POINTS, Peaks, Signal, Transition};
pub use settings::{InvalidSettings, Seasonality, Settings};
