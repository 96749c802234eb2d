use glassbox_anomaly::synthetic::Rng;
fn main() {
    // Empirical vs true tail of |t3|/sqrt(3)*... via the detector itself on pure noise.
    let mut rng = Rng::new(5);
    let n = 400_000;
    let mut det = glassbox_anomaly::Detector::default();
    let mut scores = Vec::new();
    for i in 0..n {
        let x = 100.0 + rng.student_t3() / 3f64.sqrt();
        let o = det.observe(i as f64 * 60.0, x);
        if i > 5000 {
            scores.push((o.parts.point, o.parts.deviation.abs()));
        }
    }
    for th in [0.2, 0.3, 0.4, 0.5, 0.6] {
        let c = scores.iter().filter(|s| s.0 >= th).count();
        println!(
            "point score >= {th}: observed rate {:.2e}, claimed {:.2e}",
            c as f64 / scores.len() as f64,
            10f64.powf(-10.0 * th)
        );
    }
    let mut rng = Rng::new(6);
    let mut det = glassbox_anomaly::Detector::default();
    let mut scores = Vec::new();
    for i in 0..n {
        let x = 100.0 + rng.normal();
        let o = det.observe(i as f64 * 60.0, x);
        if i > 5000 {
            scores.push((o.parts.point, o.parts.deviation.abs()));
        }
    }
    for th in [0.2, 0.3, 0.4, 0.5, 0.6] {
        let c = scores.iter().filter(|s| s.0 >= th).count();
        println!(
            "gaussian point score >= {th}: observed rate {:.2e}, claimed {:.2e}",
            c as f64 / scores.len() as f64,
            10f64.powf(-10.0 * th)
        );
    }
}
