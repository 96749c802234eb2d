//! [`DeviceRegistry`]: register, read, update, delete; secrets checked by
//! hash; shadows written by compare and set.

use std::collections::BTreeMap;

use glassbox_core::secrets::{matches as secret_matches, mint};
use glassbox_store::{DeviceMeta, DeviceQuery, StoreError};

use crate::Factory;

pub async fn the_device_registry_creates_disables_rotates_and_deletes(factory: &impl Factory) {
    let store = factory.devices().await;
    let (secret, hash) = mint("gbxd_");
    let created = store.create_device("thermo-1", hash).await.unwrap();
    assert!(!created.disabled);
    assert!(matches!(store.create_device("thermo-1", hash).await, Err(StoreError::Conflict(_))));
    let (_, stored) = store.device_credentials("thermo-1").await.unwrap().unwrap();
    assert!(secret_matches(secret.as_bytes(), &stored));

    assert!(store.set_device_disabled("thermo-1", true).await.unwrap().unwrap().disabled);
    assert!(store.set_device_disabled("nobody", true).await.unwrap().is_none());
    let (rotated, new_hash) = mint("gbxd_");
    store.set_device_secret("thermo-1", new_hash).await.unwrap();
    let (_, stored) = store.device_credentials("thermo-1").await.unwrap().unwrap();
    assert!(secret_matches(rotated.as_bytes(), &stored) && !secret_matches(secret.as_bytes(), &stored));

    store.create_device("pump-2", mint("gbxd_").1).await.unwrap();
    let ids: Vec<String> =
        store.devices(&DeviceQuery::page(None, 10)).await.unwrap().into_iter().map(|d| d.id).collect();
    assert_eq!(ids, ["pump-2", "thermo-1"]);
    assert_eq!(store.devices(&DeviceQuery::page(Some("pump-2"), 10)).await.unwrap().len(), 1);
    assert_eq!(store.delete_device("pump-2").await.unwrap().unwrap().id, "pump-2");
    assert!(store.delete_device("pump-2").await.unwrap().is_none());
    assert!(store.device("pump-2").await.unwrap().is_none());
}

pub async fn shadows_are_written_only_over_the_version_they_were_read_at(factory: &impl Factory) {
    let store = factory.devices().await;
    store.create_device("d1", [0; 32]).await.unwrap();
    assert_eq!(store.shadow("d1").await.unwrap(), None);
    assert!(store.put_shadow("d1", 0, 1, "{\"v\":1}".into()).await.unwrap());
    assert!(!store.put_shadow("d1", 0, 1, "{\"v\":\"late\"}".into()).await.unwrap(), "a stale writer loses");
    assert!(store.put_shadow("d1", 1, 2, "{\"v\":2}".into()).await.unwrap());
    assert_eq!(store.shadow("d1").await.unwrap(), Some((2, "{\"v\":2}".to_string())));
    assert!(store.put_shadow("nobody", 0, 1, "{}".into()).await.is_err(), "unknown device");
    store.delete_device("d1").await.unwrap();
    assert_eq!(store.shadow("d1").await.unwrap(), None, "deleted with its device");
}

pub async fn device_metadata_is_replaced_whole(factory: &impl Factory) {
    let store = factory.devices().await;
    let created = store.create_device("d1", mint("gbxd_").1).await.unwrap();
    assert_eq!(created.meta, DeviceMeta::default());
    let meta = DeviceMeta {
        tags: BTreeMap::from([("site".to_string(), "north".to_string())]),
        group: Some("boilers".into()),
        owner: Some("alice".into()),
        attributes: BTreeMap::from([("floor".to_string(), serde_json::json!(3))]),
        cadence_seconds: Some(60),
        certificate_only: true,
    };
    let updated = store.set_device_meta("d1", meta.clone()).await.unwrap().expect("registered");
    assert_eq!(updated.meta, meta);
    assert_eq!(store.device("d1").await.unwrap().unwrap().meta, meta);

    let smaller = DeviceMeta { group: Some("pumps".into()), ..DeviceMeta::default() };
    store.set_device_meta("d1", smaller.clone()).await.unwrap();
    assert_eq!(store.device("d1").await.unwrap().unwrap().meta, smaller, "nothing of the old metadata is left");
    assert!(store.set_device_meta("nobody", meta).await.unwrap().is_none());
}

/// Group, owner and tag filters narrow a page, together, and agree with
/// [`DeviceQuery::matches`]; a tag key is matched as it is, quotes and dots
/// included.
pub async fn devices_are_listed_by_group_owner_and_tag(factory: &impl Factory) {
    let store = factory.devices().await;
    let meta = |group: &str, owner: &str, tags: &[(&str, &str)]| DeviceMeta {
        group: Some(group.into()),
        owner: Some(owner.into()),
        tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..DeviceMeta::default()
    };
    let fleet = [
        ("a-1", meta("north", "ana", &[("site", "oslo"), ("a.\"b", "x")])),
        ("a-2", meta("north", "bo", &[("site", "bergen")])),
        ("a-3", meta("south", "ana", &[("site", "oslo")])),
    ];
    for (id, meta) in &fleet {
        store.create_device(id, mint("gbxd_").1).await.unwrap();
        store.set_device_meta(id, meta.clone()).await.unwrap();
    }
    store.create_device("a-4", mint("gbxd_").1).await.unwrap();
    let tag = |k: &str, v: &str| Some((k.to_string(), v.to_string()));
    let cases = [
        (DeviceQuery { group: Some("north".into()), ..DeviceQuery::page(None, 10) }, vec!["a-1", "a-2"]),
        (DeviceQuery { owner: Some("ana".into()), ..DeviceQuery::page(None, 10) }, vec!["a-1", "a-3"]),
        (DeviceQuery { tag: tag("site", "oslo"), ..DeviceQuery::page(None, 10) }, vec!["a-1", "a-3"]),
        (DeviceQuery { tag: tag("a.\"b", "x"), ..DeviceQuery::page(None, 10) }, vec!["a-1"]),
        (
            DeviceQuery { tag: tag("site", "oslo"), group: Some("south".into()), ..DeviceQuery::page(None, 10) },
            vec!["a-3"],
        ),
        (DeviceQuery { owner: Some("ana".into()), ..DeviceQuery::page(Some("a-1"), 10) }, vec!["a-3"]),
        (DeviceQuery { group: Some("north".into()), ..DeviceQuery::page(None, 1) }, vec!["a-1"]),
        (DeviceQuery { group: Some("west".into()), ..DeviceQuery::page(None, 10) }, vec![]),
    ];
    for (query, expected) in cases {
        let found = store.devices(&query).await.unwrap();
        let ids: Vec<&str> = found.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, expected, "{query:?}");
        assert!(found.iter().all(|d| query.matches(d)), "{query:?}");
    }
}
