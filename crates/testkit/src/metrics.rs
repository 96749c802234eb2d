//! [`MetricStore`]: fine buckets merged and rolled up into coarse ones,
//! range queries at a step, and pruning past retention.

use glassbox_store::MetricPoint;

use crate::Factory;

fn point(series: &str, at: i64, value: f64) -> MetricPoint {
    MetricPoint { series: series.into(), at, count: 1, sum: value, min: value, max: value }
}

pub async fn buckets_merge_roll_up_and_expire(factory: &impl Factory) {
    let store = factory.metrics().await;
    let retention = glassbox_store::Retention::default();
    let a = "function_duration_ms{function=\"a\"}";
    store.append(vec![point(a, 600, 2.0), point(a, 610, 4.0), point("other", 600, 9.0)]).await.unwrap();
    store.append(vec![point(a, 600, 6.0)]).await.unwrap();

    let fine = store.range("function_duration_ms{", 600, 620, 10).await.unwrap();
    assert_eq!(fine.len(), 2);
    assert_eq!((fine[0].count, fine[0].sum, fine[0].min, fine[0].max), (2, 8.0, 2.0, 6.0));
    let minute = store.range("function_duration_ms{", 600, 660, 60).await.unwrap();
    assert_eq!((minute.len(), minute[0].count, minute[0].max), (1, 3, 6.0));
    // Older than the fine retention: served by the coarse buckets.
    let now = 600 + 7 * 3600;
    let coarse = store.range(a, 0, now, 10).await.unwrap();
    assert_eq!((coarse.len(), coarse[0].at, coarse[0].count), (1, 600, 3));

    assert_eq!(store.prune(now, retention).await.unwrap(), 3);
    assert!(store.range(a, 600, 620, 10).await.unwrap().is_empty());
    assert_eq!(store.range(a, 0, now, 300).await.unwrap().len(), 1, "coarse kept");
}

pub async fn range_selects_series_by_prefix_and_time(factory: &impl Factory) {
    let store = factory.metrics().await;
    let (a, b) = ("events{type=\"a\"}", "events{type=\"b\"}");
    let points = vec![point(a, 590, 1.0), point(a, 600, 2.0), point(b, 610, 3.0), point(a, 620, 4.0)];
    store.append(points).await.unwrap();
    store.append(vec![point("eventsx", 600, 5.0), point("other", 600, 6.0)]).await.unwrap();

    let got = store.range("events{", 600, 620, 10).await.unwrap();
    let keys: Vec<(&str, i64, f64)> = got.iter().map(|p| (p.series.as_str(), p.at, p.sum)).collect();
    assert_eq!(keys, [(a, 600, 2.0), (b, 610, 3.0)], "by series, then time; since included, until not");
    assert!(store.range("nothing", 0, 10_000, 10).await.unwrap().is_empty());
}
