//! Development aid: how often does noise alone reach each score? A score s
//! claims a probability of about 10^(-10 s) per point.
//! `cargo run --release -p glassbox-anomaly --example tailcheck`

use glassbox_anomaly::synthetic::Rng;
use glassbox_anomaly::{Detector, Observation};

fn measure(name: &str, mut noise: impl FnMut() -> f64) {
    let n = 1_000_000;
    let mut detector = Detector::default();
    let mut seen: Vec<Observation> = Vec::with_capacity(n);
    for i in 0..n {
        let o = detector.observe(i as f64 * 60.0, 100.0 + noise());
        if i > 5000 {
            seen.push(o);
        }
    }
    let alerts = seen.iter().filter(|o| o.anomalous).count();
    print!("{name:10} alerts {alerts:3} in {n} points;");
    for th in [0.3, 0.4, 0.5, 0.6] {
        let rate = seen.iter().filter(|o| o.score >= th).count() as f64 / seen.len() as f64;
        let point = seen.iter().filter(|o| o.parts.point >= th).count() as f64 / seen.len() as f64;
        print!(" score>={th}: {rate:.1e} (point {point:.1e}, claim {:.0e})", 10f64.powf(-10.0 * th));
    }
    println!();
}

fn main() {
    let mut rng = Rng::new(5);
    measure("gaussian", || rng.normal());
    let mut rng = Rng::new(6);
    measure("student-t3", || rng.student_t3() / 3f64.sqrt());
    let mut rng = Rng::new(7);
    let mut ar = 0.0;
    measure("ar(0.9)", || {
        ar = 0.9 * ar + 0.436 * rng.normal();
        ar
    });
    let mut rng = Rng::new(8);
    measure("poisson(5)", || rng.poisson(5.0));
}
