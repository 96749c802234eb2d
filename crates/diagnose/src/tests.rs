//! The engine over simulated time: 10-second points, as the server feeds it.

use super::*;

const STEP: f64 = 10.0;
const T0: f64 = 1_800_000_000.0;

/// Deterministic noise in [-1, 1].
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn spec(key: &str, what: &str, unit: &str, subject: Subject) -> SeriesSpec {
    SeriesSpec {
        key: key.into(),
        what: what.into(),
        unit: unit.into(),
        subject,
        count_unit: if unit == "/10s" { 1.0 } else { 0.0 },
        resolution: 0.0,
    }
}

fn engine() -> Engine {
    Engine::new(Settings::default()).unwrap()
}

fn fan() -> Subject {
    Subject::Function("fan".into())
}

/// `fan`'s latency: 45 ms in the `slow` points, 0.5 ms otherwise, ±10 %.
fn latency_slow_in(slow: std::ops::Range<usize>, seed: u64) -> impl Fn(usize) -> f64 {
    let noise = std::cell::RefCell::new(Noise(seed));
    move |i| {
        let base = if slow.contains(&i) { 45.0 } else { 0.5 };
        base * (1.0 + 0.1 * noise.borrow_mut().next())
    }
}

/// A deploy or rollback of `fan` at `at`, recorded as event `id`.
fn fan_change(at: f64, kind: &str, id: &str) -> Change {
    Change { at, kind: kind.into(), subject: fan(), summary: format!("{kind} of fan"), event_id: Some(id.into()) }
}

/// Feeds `points` points from `start` of `series`, each from `value(i)`;
/// returns the alerts raised.
fn feed(
    engine: &mut Engine,
    series: &[(&SeriesSpec, &dyn Fn(usize) -> f64)],
    start: usize,
    points: usize,
) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for i in start..start + points {
        for (spec, value) in series {
            alerts.extend(engine.observe(spec, T0 + i as f64 * STEP, value(i)));
        }
    }
    alerts
}

#[test]
fn a_slower_deploy_is_named_as_the_cause_of_the_latency_anomaly_within_a_minute() {
    let mut engine = engine();
    let latency = spec("function_duration_ms{function=\"fan\"}", "latency", "ms", fan());
    let calls = spec("function_invocations{function=\"fan\"}", "invocations", "/10s", fan());
    let noise = std::cell::RefCell::new(Noise(7));
    let deployed_at = 300usize; // Point index of the slower deploy.
    let slow = |i: usize| if i >= deployed_at { 45.0 } else { 0.5 };
    let latency_of = |i: usize| slow(i) * (1.0 + 0.1 * noise.borrow_mut().next());
    let calls_of = |i: usize| 60.0 + (i % 7) as f64;
    let series: [(&SeriesSpec, &dyn Fn(usize) -> f64); 2] = [(&latency, &latency_of), (&calls, &calls_of)];

    assert!(feed(&mut engine, &series, 0, deployed_at).is_empty(), "no alert on a steady series");
    // Unrelated and older changes are candidates too.
    engine.change(Change {
        at: T0 + 100.0 * STEP,
        kind: "device_registered".into(),
        subject: Subject::Device("d9".into()),
        summary: "device d9 registered".into(),
        event_id: None,
    });
    engine.relate(Subject::Device("d1".into()), fan());
    let at = T0 + deployed_at as f64 * STEP - 4.0;
    engine.change(Change {
        at,
        kind: "deploy".into(),
        subject: fan(),
        summary: "deploy of fan v2 by admin".into(),
        event_id: Some("01DEPLOY".into()),
    });
    let alerts = feed(&mut engine, &series, deployed_at, 6); // One simulated minute.
    assert!(matches!(&alerts[..], [Alert::Started(e)] if e.series.key == latency.key), "{alerts:?}");

    let report = engine.diagnose(at - 3600.0, at + 60.0, None);
    assert_eq!(report.incidents.len(), 1, "{report:#?}");
    let incident = &report.incidents[0];
    let cause = &incident.causes[0];
    assert_eq!(cause.change.event_id.as_deref(), Some("01DEPLOY"), "{incident:#?}");
    assert_eq!(cause.verdict, "likely", "{incident:#?}");
    assert!(incident.summary.contains("deploy of fan v2"), "{}", incident.summary);
    assert!(incident.summary.contains("latency"), "{}", incident.summary);
    assert!(cause.evidence.iter().any(|e| e.contains("before →")), "{:?}", cause.evidence);
    // Scoped to another function, nothing is abnormal.
    assert!(engine.diagnose(at - 3600.0, at + 60.0, Some(&Subject::Function("other".into()))).incidents.is_empty());
}

#[test]
fn a_deploy_rolled_back_is_judged_by_the_time_it_was_live() {
    a_deploy_undone_is_judged_by_the_time_it_was_live("rollback");
}

/// A promote of the version before is a rollback by another name: it ends
/// the deploy's effect, and its "before" is while the deploy was live.
#[test]
fn a_deploy_undone_by_a_promote_is_judged_by_the_time_it_was_live() {
    a_deploy_undone_is_judged_by_the_time_it_was_live("promote");
}

fn a_deploy_undone_is_judged_by_the_time_it_was_live(undo: &str) {
    let mut engine = engine();
    let latency = spec("function_duration_ms{function=\"fan\"}", "latency", "ms", fan());
    let (deployed, rolled_back) = (300usize, 306usize);
    let latency_of = latency_slow_in(deployed..rolled_back, 3);
    let series: [(&SeriesSpec, &dyn Fn(usize) -> f64); 1] = [(&latency, &latency_of)];
    feed(&mut engine, &series, 0, deployed);
    let at = |i: usize| T0 + i as f64 * STEP + 1.0;
    engine.change(fan_change(at(deployed), "deploy", "01DEPLOY"));
    engine.change(fan_change(at(rolled_back), undo, "01ROLLBACK"));
    // Ten minutes on, most points after the deploy are fast again.
    feed(&mut engine, &series, deployed, 60);
    let now = T0 + 360.0 * STEP;
    let report = engine.diagnose(now - 3600.0, now, None);
    let cause = &report.incidents[0].causes[0];
    assert_eq!(cause.change.event_id.as_deref(), Some("01DEPLOY"), "{report:#?}");
    assert_eq!(cause.verdict, "likely", "{report:#?}");
    assert!(cause.evidence.iter().any(|e| e.contains("→ 43.4 ms after")), "{:?}", cause.evidence);
    // And "before" the rollback is while the deploy it undid was live.
    let rollback = engine.changes.iter().find(|c| c.kind == undo).unwrap();
    let (_, evidence) = engine.before_after(rollback, &report.incidents[0].episodes, now);
    assert!(evidence.iter().any(|e| e.starts_with("latency 4") && e.contains("ms before → 0.")), "{evidence:?}");
}

#[test]
fn a_rollback_soon_after_the_anomaly_began_does_not_clear_the_deploy_before_it() {
    let mut engine = engine();
    let latency = spec("function_duration_ms{function=\"fan\"}", "latency", "ms", fan());
    // Live late in point 299, rolled back late in point 302: 28 s after
    // the anomaly's first point (300) began.
    let slow = 300usize..303;
    let latency_of = latency_slow_in(slow.clone(), 11);
    let series: [(&SeriesSpec, &dyn Fn(usize) -> f64); 1] = [(&latency, &latency_of)];
    feed(&mut engine, &series, 0, slow.start);
    let late_in = |i: usize| T0 + i as f64 * STEP + 7.6;
    engine.change(fan_change(late_in(slow.start - 1), "deploy", "01DEPLOY"));
    engine.change(fan_change(late_in(slow.end - 1), "rollback", "01ROLLBACK"));
    feed(&mut engine, &series, slow.start, 30);
    let now = T0 + 330.0 * STEP;
    let incident = &engine.diagnose(now - 3600.0, now, None).incidents[0];
    let deploy = &incident.causes[0];
    assert_eq!((deploy.change.event_id.as_deref(), deploy.verdict), (Some("01DEPLOY"), "likely"), "{incident:#?}");
    assert!(deploy.evidence.iter().all(|e| !e.contains("replaced")), "live when it began: {:?}", deploy.evidence);
    let rollback = incident.causes.iter().find(|c| c.change.event_id.as_deref() == Some("01ROLLBACK")).unwrap();
    assert_eq!(rollback.evidence[0], "28 s after the anomaly began", "{rollback:#?}");
    assert_eq!(rollback.verdict, "unlikely", "{rollback:#?}");
}

#[test]
fn a_deploy_that_makes_an_open_anomaly_worse_is_named_as_its_cause() {
    let mut engine = engine();
    let latency = spec("function_duration_ms{function=\"fan\"}", "latency", "ms", fan());
    let noise = std::cell::RefCell::new(Noise(5));
    let (blip, deployed) = (300usize, 305usize);
    let latency_of = |i: usize| {
        let base = match i {
            i if i == blip => 1.5,      // A mild blip opens an episode...
            i if i >= deployed => 45.0, // ...a slower version, before it ends, makes it far worse.
            _ => 0.5,
        };
        base * (1.0 + 0.1 * noise.borrow_mut().next())
    };
    let series: [(&SeriesSpec, &dyn Fn(usize) -> f64); 1] = [(&latency, &latency_of)];
    feed(&mut engine, &series, 0, blip);
    engine.change(Change {
        at: T0 + deployed as f64 * STEP + 1.0,
        kind: "deploy".into(),
        subject: fan(),
        summary: "deploy of fan v2".into(),
        event_id: Some("01DEPLOY".into()),
    });
    let alerts = feed(&mut engine, &series, blip, 12);
    assert!(matches!(&alerts[..], [Alert::Started(e)] if e.start == T0 + blip as f64 * STEP), "{alerts:?}");
    let now = T0 + 312.0 * STEP;
    let report = engine.diagnose(now - 3600.0, now, None);
    let incident = &report.incidents[0];
    assert!(incident.episodes[0].peak >= T0 + deployed as f64 * STEP, "{incident:#?}");
    assert!(incident.episodes[0].value > 40.0, "the worst value is reported: {incident:#?}");
    assert!(incident.summary.contains("latency is drifting up (41.4 ms"), "{}", incident.summary);
    let cause = &incident.causes[0];
    assert_eq!((cause.change.event_id.as_deref(), cause.verdict), (Some("01DEPLOY"), "likely"), "{incident:#?}");
    assert!(cause.evidence[0].contains("worst point"), "{:?}", cause.evidence);
}

#[test]
fn a_device_going_silent_is_one_incident_however_long_it_lasts() {
    let mut engine = engine();
    let d1 = Subject::Device("d1".into());
    let messages = spec("device_messages{device=\"d1\"}", "message rate", "/10s", d1.clone());
    let silent_from = 400usize;
    let rate = |i: usize| if i >= silent_from { 0.0 } else { 6.0 + (i % 3) as f64 };
    let alerts = feed(&mut engine, &[(&messages, &rate)], 0, silent_from + 200);
    let started = alerts.iter().filter(|a| matches!(a, Alert::Started(_))).count();
    assert_eq!(started, 1, "one alert for the whole silence: {alerts:?}");
    let now = T0 + (silent_from + 200) as f64 * STEP;
    let report = engine.diagnose(now - 7200.0, now, None);
    assert_eq!(report.incidents.len(), 1, "{report:#?}");
    assert!(report.incidents[0].subjects == [d1], "{report:#?}");
    assert!(report.incidents[0].causes.is_empty());
    assert!(report.incidents[0].summary.contains("No change was recorded"), "{}", report.incidents[0].summary);
}

#[test]
fn a_recursion_storm_is_one_incident_across_its_series() {
    let mut engine = engine();
    let looping = Subject::Function("loop".into());
    let calls = spec("function_invocations{function=\"loop\"}", "invocations", "/10s", looping.clone());
    let dead = spec("function_dead_letters{function=\"loop\"}", "dead letters", "/10s", looping.clone());
    let cost = spec("function_cost{function=\"loop\"}", "cost", "/10s", looping.clone());
    let storm = 300usize;
    let calls_of = |i: usize| if (storm..storm + 30).contains(&i) { 800.0 } else { 2.0 + (i % 2) as f64 };
    let dead_of = |i: usize| if (storm..storm + 30).contains(&i) { 50.0 } else { 0.0 };
    let cost_of = |i: usize| calls_of(i) * 2e-7;
    let series: [(&SeriesSpec, &dyn Fn(usize) -> f64); 3] = [(&calls, &calls_of), (&dead, &dead_of), (&cost, &cost_of)];
    feed(&mut engine, &series, 0, storm + 100);
    let now = T0 + (storm + 100) as f64 * STEP;
    let report = engine.diagnose(now - 7200.0, now, None);
    assert_eq!(report.incidents.len(), 1, "{report:#?}");
    let incident = &report.incidents[0];
    assert!(incident.episodes.len() >= 2, "the storm's series are grouped: {incident:#?}");
    assert_eq!(incident.subjects, [looping]);
}

#[test]
fn nothing_recorded_is_said_plainly() {
    let engine = engine();
    let report = engine.diagnose(T0, T0 + 3600.0, None);
    assert!(report.incidents.is_empty());
    assert_eq!(report.summary, "Nothing abnormal in the last 1 h.");
    assert!(report.unknowns.iter().any(|u| u.contains("no series are watched")));
}

#[test]
fn an_episode_another_detector_flags_is_one_incident_until_cleared() {
    let mut engine = engine();
    let silent = spec("device_liveness{device=\"d1\"}", "liveness", "", Subject::Device("d1".into()));
    assert!(matches!(
        engine.flag(&silent, T0, "silence", Some("connected but silent for 16s".into())),
        Some(Alert::Started(_))
    ));
    assert!(engine.flag(&silent, T0 + 60.0, "silence", None).is_none(), "already open");
    let report = engine.diagnose(T0 - 60.0, T0 + 120.0, Some(&Subject::Device("d1".into())));
    assert_eq!(report.incidents.len(), 1);
    let summary = &report.incidents[0].summary;
    assert!(summary.contains("device d1: liveness went silent (connected but silent for 16s)"), "{summary}");
    assert!(matches!(engine.clear(&silent.key, T0 + 300.0), Some(Alert::Ended(e)) if e.end == Some(T0 + 300.0)));
    assert!(engine.clear(&silent.key, T0 + 400.0).is_none());
}
