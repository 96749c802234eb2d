//! Reads a NAB directory (`data/<category>/<file>.csv`, `labels/combined_windows.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glassbox_anomaly::nab::nab_time;

/// One NAB series: its rows and its labelled windows (inclusive row ranges).
pub struct Series {
    pub name: String,
    pub rows: Vec<(f64, f64)>,
    pub windows: Vec<(usize, usize)>,
}

/// The NAB directory: `GLASSBOX_NAB_DIR`, else `../shared/nab` beside the
/// checkout or its parent, if present.
pub fn find_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("GLASSBOX_NAB_DIR") {
        return Some(PathBuf::from(dir));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    [root.join("../shared/nab"), root.join("../../shared/nab")]
        .into_iter()
        .find(|d| d.join("labels/combined_windows.json").is_file())
}

pub fn load(dir: &Path) -> Vec<Series> {
    let labels = std::fs::read_to_string(dir.join("labels/combined_windows.json")).expect("labels");
    let labels: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(&labels).expect("labels JSON");
    labels
        .into_iter()
        .filter(|(name, _)| dir.join("data").join(name).is_file())
        .map(|(name, windows)| {
            let text = std::fs::read_to_string(dir.join("data").join(&name)).expect("series");
            let rows: Vec<(f64, f64)> = text
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let (t, v) = line.split_once(',')?;
                    Some((nab_time(t)?, v.trim().parse().ok()?))
                })
                .collect();
            let row_of = |text: &str| {
                let t = nab_time(text).expect("window time");
                rows.iter().position(|r| r.0 == t).expect("window time is a row")
            };
            let windows = windows.iter().map(|[a, b]| (row_of(a), row_of(b))).collect();
            Series { name, rows, windows }
        })
        .collect()
}
