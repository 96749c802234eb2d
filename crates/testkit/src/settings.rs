//! [`glassbox_store::SettingStore`]: the last value put reads back, per key.

use crate::Factory;

pub async fn a_setting_reads_back_the_last_value_put(factory: &impl Factory) {
    let store = factory.settings().await;
    assert_eq!(store.setting("admin.token").await.unwrap(), None);
    store.put_setting("admin.token", "first").await.unwrap();
    store.put_setting("admin.token", "second").await.unwrap();
    store.put_setting("other", "x").await.unwrap();
    assert_eq!(store.setting("admin.token").await.unwrap().as_deref(), Some("second"));
    assert_eq!(store.setting("other").await.unwrap().as_deref(), Some("x"));
    let large = "é".repeat(8 * 1024);
    store.put_setting("config.snapshot", &large).await.unwrap();
    assert_eq!(store.setting("config.snapshot").await.unwrap(), Some(large), "a few kilobytes of text, as put");
}
