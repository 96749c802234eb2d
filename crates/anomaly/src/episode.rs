//! Episodes: one alert per anomaly, however long it lasts.
//!
//! An episode starts when the score reaches the start threshold; while it is
//! open no new alert is raised. It ends once the score has stayed below the
//! (lower) end threshold for a number of consecutive points, i.e. when the
//! series has returned to normal; the end is the first of those calm points.
//! The gap between the two thresholds (hysteresis) and the calm run keep a
//! score that hovers around the threshold from raising alert after alert.

/// What made the score high: the largest part of the score at that point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A value far above the expected one.
    Spike,
    /// A value far below the expected one.
    Dip,
    /// Recent values consistently above the expected ones.
    LevelUp,
    /// Recent values consistently below the expected ones.
    LevelDown,
    /// Values drifting above the expected ones over a longer window.
    DriftUp,
    /// Values drifting below the expected ones over a longer window.
    DriftDown,
    /// Recent errors much larger than usual.
    MoreVariable,
    /// Recent errors much smaller than usual (e.g. a stuck sensor).
    LessVariable,
    /// A gap since the previous point far beyond the usual interval.
    Silence,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Spike => "spike",
            Signal::Dip => "dip",
            Signal::LevelUp => "level_up",
            Signal::LevelDown => "level_down",
            Signal::DriftUp => "drift_up",
            Signal::DriftDown => "drift_down",
            Signal::MoreVariable => "more_variable",
            Signal::LessVariable => "less_variable",
            Signal::Silence => "silence",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One anomaly episode of one series. Times are the series' own timestamps
/// (seconds).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Episode {
    /// The point that raised the alert.
    pub start: f64,
    /// What made the score high at the start.
    pub signal: Signal,
    /// The point with the highest score, and that score.
    pub peak: f64,
    pub peak_score: f64,
    /// The first point of the calm run that closed it; `None` while open.
    pub end: Option<f64>,
    /// Points scored while it was open (including the calm run).
    pub points: u64,
}

/// What one scored point did to the episode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transition {
    /// Nothing changed.
    None,
    /// A new episode started at this point: raise one alert.
    Started,
    /// The open episode ended (it is given, closed).
    Ended(Episode),
}

/// Tracks the open episode of one series from its scores.
#[derive(Clone, Debug)]
pub struct EpisodeTracker {
    start_score: f64,
    end_score: f64,
    calm_points: u32,
    open: Option<Episode>,
    calm: u32,
    calm_since: f64,
}

impl EpisodeTracker {
    /// `start_score`: the score that opens an episode; `end_score`: scores
    /// below it are calm; `calm_points`: calm points in a row that close it.
    pub fn new(start_score: f64, end_score: f64, calm_points: u32) -> Self {
        Self { start_score, end_score, calm_points: calm_points.max(1), open: None, calm: 0, calm_since: 0.0 }
    }

    /// The open episode, if any.
    pub fn open(&self) -> Option<&Episode> {
        self.open.as_ref()
    }

    pub fn observe(&mut self, t: f64, score: f64, signal: Signal) -> Transition {
        let Some(episode) = &mut self.open else {
            if score >= self.start_score {
                let episode = Episode { start: t, signal, peak: t, peak_score: score, end: None, points: 1 };
                self.open = Some(episode);
                self.calm = 0;
                return Transition::Started;
            }
            return Transition::None;
        };
        episode.points += 1;
        if score > episode.peak_score {
            episode.peak = t;
            episode.peak_score = score;
        }
        if score >= self.end_score {
            self.calm = 0;
            return Transition::None;
        }
        if self.calm == 0 {
            self.calm_since = t;
        }
        self.calm += 1;
        if self.calm < self.calm_points {
            return Transition::None;
        }
        let mut ended = *episode;
        ended.end = Some(self.calm_since);
        self.open = None;
        self.calm = 0;
        Transition::Ended(ended)
    }
}

/// Points during which a score raises no new alert unless it is higher
/// (the cooldown of [`Peaks`]).
pub const PEAK_HOLD_POINTS: u64 = 100;

/// One alert per episode when the threshold is not known yet: a score is
/// kept only where it is higher than every score of the last
/// [`PEAK_HOLD_POINTS`] points, and written as 0 elsewhere. Then, at *any*
/// threshold, the points at or above it are the first crossings, one per
/// burst of high scores: what a backtest's score column needs when its
/// reader picks the threshold afterwards (as the Numenta Anomaly Benchmark
/// does), so a long anomaly or a noisy stretch is not one alert per point.
///
/// A score that climbs row after row (each row a new high) is one burst
/// too: within such a climb a row is kept only once it is
/// [`BURST_RISE`] times the climb's last kept score. Otherwise every row of
/// a climb from 0.7 to 0.9 is one more alert at any threshold below 0.7
/// (on the NAB series, a third of the false alarms were such climbs). The
/// price: a climb is seen at every threshold up to its last kept score,
/// which is above its peak / [`BURST_RISE`], not always up to its peak.
/// Amortised O(1) per point (a monotonic queue of the recent maxima).
#[derive(Clone, Debug, Default)]
pub struct Peaks {
    seen: u64,
    /// (index, score), scores strictly decreasing from the front.
    maxima: std::collections::VecDeque<(u64, f64)>,
    /// The last score kept (not 0).
    last_kept: f64,
    /// Whether the last row's score was higher than every score of its hold.
    climbing: bool,
}

/// Within a climb of new highs, a row is kept only at this many times the
/// climb's last kept score (see [`Peaks`]).
pub const BURST_RISE: f64 = 1.3;

impl Peaks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held on the heap (the queue, at most [`PEAK_HOLD_POINTS`] pairs).
    pub fn heap_bytes(&self) -> usize {
        self.maxima.capacity() * size_of::<(u64, f64)>()
    }

    /// `reported` if `score` is higher than every score of the hold (and,
    /// within a climb, [`BURST_RISE`] times its last kept score), else 0;
    /// `score` joins the hold. (`reported` may be lower than `score`: a
    /// backtest caps the scores of an episode already alerted.)
    pub fn next(&mut self, score: f64, reported: f64) -> f64 {
        while self.maxima.front().is_some_and(|&(i, _)| i + PEAK_HOLD_POINTS <= self.seen) {
            self.maxima.pop_front();
        }
        let held = self.maxima.front().map_or(0.0, |&(_, s)| s);
        // The previous row was a new high, and this one is higher still.
        let climbing = self.climbing && score > held;
        self.climbing = score > held;
        while self.maxima.back().is_some_and(|&(_, s)| s <= score) {
            self.maxima.pop_back();
        }
        self.maxima.push_back((self.seen, score));
        self.seen += 1;
        let kept = reported > held && (!climbing || reported > BURST_RISE * self.last_kept);
        if !kept {
            return 0.0;
        }
        self.last_kept = reported;
        reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_per_episode_with_its_peak_and_end() {
        let mut tracker = EpisodeTracker::new(0.5, 0.3, 3);
        let scores = [0.1, 0.6, 0.9, 0.4, 0.2, 0.7, 0.1, 0.1, 0.1, 0.1, 0.8];
        let mut starts = Vec::new();
        let mut ended = Vec::new();
        for (i, &s) in scores.iter().enumerate() {
            match tracker.observe(i as f64, s, Signal::Spike) {
                Transition::Started => starts.push(i),
                Transition::Ended(e) => ended.push(e),
                Transition::None => {}
            }
        }
        assert_eq!(starts, vec![1, 10], "the 0.7 at 5 is inside the first episode");
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].start, ended[0].peak, ended[0].peak_score, ended[0].end), (1.0, 2.0, 0.9, Some(6.0)));
    }

    #[test]
    fn a_score_hovering_around_the_threshold_raises_one_alert() {
        let mut tracker = EpisodeTracker::new(0.5, 0.3, 5);
        let started = (0..1000)
            .filter(|i| {
                tracker.observe(*i as f64, if i % 2 == 0 { 0.51 } else { 0.49 }, Signal::Spike) == Transition::Started
            })
            .count();
        assert_eq!(started, 1);
    }

    #[test]
    fn peaks_keep_only_new_highs_within_the_hold() {
        let mut peaks = Peaks::new();
        let mut scores = vec![0.0; 300];
        scores[10] = 0.6;
        scores[11] = 0.7;
        scores[12] = 0.6;
        scores[50] = 0.65;
        scores[60] = 0.75;
        scores[200] = 0.65;
        let kept: Vec<(usize, f64)> =
            scores.iter().enumerate().map(|(i, &s)| (i, peaks.next(s, s))).filter(|(_, s)| *s > 0.0).collect();
        // 11 continues 10's climb but is not 1.3 times it; 50 is below 11.
        assert_eq!(kept, vec![(10, 0.6), (60, 0.75), (200, 0.65)]);
    }

    #[test]
    fn a_climb_is_kept_only_where_it_has_risen_by_the_burst_rise() {
        let mut peaks = Peaks::new();
        let climb = [0.1, 0.12, 0.14, 0.2, 0.25, 0.27, 0.9, 0.95];
        let kept: Vec<f64> = climb.iter().map(|&s| peaks.next(s, s)).filter(|s| *s > 0.0).collect();
        assert_eq!(kept, vec![0.1, 0.14, 0.2, 0.27, 0.9]);
    }
}
