//! [`FunctionStore`]: numbered versions, the live alias and its log, delete
//! and purge, and each function's key-value store within its quota.

use glassbox_store::{KvQuota, LIVE_LOG_MAX, StoreError};

use crate::Factory;

pub async fn versions_number_from_one_and_the_newest_is_live(factory: &impl Factory) {
    let store = factory.functions().await;
    let first = store.add_version("f", "sha256:a", "{\"triggers\":[]}", "ops").await.unwrap();
    assert_eq!((first.name.as_str(), first.version, first.live), ("f", 1, true));
    assert_eq!(
        (first.digest.as_str(), first.spec.as_str(), first.deployed_by.as_str()),
        ("sha256:a", "{\"triggers\":[]}", "ops")
    );
    let second = store.add_version("f", "sha256:b", "{}", "ci").await.unwrap();
    assert_eq!((second.version, second.live), (2, true));

    let versions = store.versions("f").await.unwrap();
    let listed: Vec<(u32, bool)> = versions.iter().map(|v| (v.version, v.live)).collect();
    assert_eq!(listed, [(2, true), (1, false)], "newest first, one live");
    let live = store.live_versions().await.unwrap();
    assert_eq!(live.iter().map(|v| (v.name.as_str(), v.version)).collect::<Vec<_>>(), [("f", 2)]);
    assert!(store.set_live("f", 7).await.unwrap().is_none(), "no such version");
    assert!(store.set_live("nobody", 1).await.unwrap().is_none(), "no such function");
    assert_eq!(store.set_live("f", 1).await.unwrap().map(|v| (v.version, v.live)), Some((1, true)));
    assert!(store.versions("nobody").await.unwrap().is_empty());
}

// Issue 16, finding 5: a function's key-value store had no limit on keys
// or bytes; now a set past either is refused, naming the limit, and what
// was stored stays within it.
pub async fn finding_5_kv_set_past_the_key_count_or_byte_quota_is_refused_naming_the_limit(factory: &impl Factory) {
    let store = factory.functions().await;
    let quota = KvQuota { keys_max: 3, bytes_max: 1000 };
    for key in ["a", "b", "c"] {
        store.kv_set("f", key, vec![0; 100], quota).await.unwrap();
    }
    let refused = store.kv_set("f", "d", vec![0; 1], quota).await.unwrap_err();
    assert!(matches!(&refused, StoreError::Conflict(m) if m.starts_with("kv_keys_max: ")), "{refused}");
    assert_eq!(store.kv_get("f", "d").await.unwrap(), None);
    store.kv_set("f", "a", vec![1; 50], quota).await.unwrap();
    store.kv_set("g", "d", vec![0; 1], quota).await.unwrap();

    // Keys and values count: 3 keys + 50 + 100 + 100 bytes so far.
    let refused = store.kv_set("f", "b", vec![0; 900], quota).await.unwrap_err();
    let expected = "kv_bytes_max: this would bring the function's store to 1053 bytes";
    assert!(matches!(&refused, StoreError::Conflict(m) if m.starts_with(expected)), "{refused}");
    assert!(refused.to_string().contains("over its limit of 1000"), "{refused}");
    assert_eq!(store.kv_get("f", "b").await.unwrap(), Some(vec![0; 100]), "the old value stays");
    store.kv_set("f", "b", vec![0; 700], quota).await.unwrap();
    store.kv_delete("f", "c").await.unwrap();
    store.kv_set("f", "d", vec![0; 1], quota).await.unwrap();
}

/// A delete drops the live alias and keeps the versions; promoting one
/// brings the function back; a purge removes versions and key-value store
/// and names the components no version uses any more.
pub async fn a_deleted_function_keeps_its_versions_until_purged(factory: &impl Factory) {
    let store = factory.functions().await;
    let quota = KvQuota { keys_max: 10, bytes_max: 1000 };
    store.add_version("f", "sha256:a", "{}", "ops").await.unwrap();
    store.add_version("f", "sha256:b", "{}", "ops").await.unwrap();
    store.add_version("g", "sha256:b", "{}", "ops").await.unwrap();
    store.kv_set("f", "k", vec![1], quota).await.unwrap();

    assert_eq!(store.delete("f", false).await.unwrap(), Vec::<String>::new());
    let live: Vec<String> = store.live_versions().await.unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(live, ["g"]);
    let kept = store.versions("f").await.unwrap();
    assert_eq!((kept.len(), kept.iter().any(|v| v.live)), (2, false));
    assert_eq!(store.add_version("f", "sha256:c", "{}", "ops").await.unwrap().version, 3, "numbers continue");
    store.delete("f", false).await.unwrap();
    assert!(store.set_live("f", 1).await.unwrap().unwrap().live, "a promote brings it back");

    let unused = store.delete("f", true).await.unwrap();
    assert_eq!(unused, ["sha256:a", "sha256:c"], "sha256:b is g's too");
    assert!(store.versions("f").await.unwrap().is_empty());
    assert_eq!(store.kv_get("f", "k").await.unwrap(), None);
    assert_eq!(store.add_version("f", "sha256:a", "{}", "ops").await.unwrap().version, 1, "purged: from 1");
}

/// Each move of the live alias is logged, a delete as none, at most
/// `LIVE_LOG_MAX` per function; a purge forgets them.
pub async fn moves_of_the_live_alias_are_logged_within_a_bound(factory: &impl Factory) {
    let store = factory.functions().await;
    store.add_version("f", "sha256:a", "{}", "ops").await.unwrap();
    store.add_version("f", "sha256:b", "{}", "ops").await.unwrap();
    store.set_live("f", 1).await.unwrap();
    store.delete("f", false).await.unwrap();
    let moves: Vec<Option<u32>> = store.live_log("f").await.unwrap().into_iter().map(|m| m.version).collect();
    assert_eq!(moves, [Some(1), Some(2), Some(1), None]);
    for _ in 0..LIVE_LOG_MAX {
        store.set_live("f", 2).await.unwrap();
    }
    assert_eq!(store.live_log("f").await.unwrap().len(), LIVE_LOG_MAX as usize);
    store.delete("f", true).await.unwrap();
    assert!(store.live_log("f").await.unwrap().is_empty());
}
