//! The conformance suite of the store ports (`glassbox-store`): what every
//! backend must do, as cases that run against any implementation.
//!
//! Each port has a module of cases (`events`, `audit`, `devices`, `certificates`, `commands`,
//! `functions`, `sessions`, `metrics`, `settings`, `tokens`, `budgets`); each case is an async function that
//! takes a [`Factory`], asks it for a fresh, empty implementation, and
//! asserts the contract on real values. A backend's tests run them all with
//! one line, each case as its own test:
//!
//! ```ignore
//! glassbox_testkit::conformance!(MyBackend::default());
//! ```
//!
//! It owns the contract as behaviour; backend specifics (files, fsync,
//! migrations, bounds a backend adds) stay in the backend's own tests. It
//! must not depend on any backend.

pub mod audit;
pub mod budgets;
pub mod certificates;
pub mod commands;
pub mod devices;
pub mod events;
pub mod functions;
pub mod metrics;
pub mod sessions;
pub mod settings;
pub mod tokens;

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use glassbox_store::{
    AuditStore, BudgetStore, CertificateStore, CommandStore, DeviceRegistry, EventStore, FunctionStore, MetricStore,
    SessionStore, SettingStore, TokenStore,
};

/// The node name a factory's event store records on every state.
pub const NODE: &str = "local";

/// Makes fresh, empty implementations of the ports, one for each case.
///
/// An event store must record [`NODE`] as the node of its states and
/// de-duplicate retries within a window of minutes; a metric store must
/// keep [`glassbox_store::Retention::default`].
#[async_trait]
pub trait Factory: Send + Sync {
    async fn events(&self) -> Fresh<dyn EventStore>;
    async fn devices(&self) -> Fresh<dyn DeviceRegistry>;
    async fn commands(&self) -> Fresh<dyn CommandStore>;
    async fn certificates(&self) -> Fresh<dyn CertificateStore>;
    async fn functions(&self) -> Fresh<dyn FunctionStore>;
    async fn sessions(&self) -> Fresh<dyn SessionStore>;
    async fn metrics(&self) -> Fresh<dyn MetricStore>;
    async fn settings(&self) -> Fresh<dyn SettingStore>;
    async fn tokens(&self) -> Fresh<dyn TokenStore>;
    async fn budgets(&self) -> Fresh<dyn BudgetStore>;
    /// An event store and the audit store its appends seal entries into.
    async fn audit(&self) -> Fresh<Audited>;
}

/// The two ports of one backend the audit log needs together.
pub struct Audited {
    pub events: Arc<dyn EventStore>,
    pub audit: Arc<dyn AuditStore>,
}

/// A store made for one case, with what must outlive it (a temporary
/// directory, a database), dropped after the store.
pub struct Fresh<P: ?Sized> {
    store: Arc<P>,
    _keep: Box<dyn Any + Send>,
}

impl<P: ?Sized> Fresh<P> {
    pub fn new(store: Arc<P>, keep: impl Any + Send) -> Self {
        Self { store, _keep: Box::new(keep) }
    }
}

impl<P: ?Sized> Deref for Fresh<P> {
    type Target = P;

    fn deref(&self) -> &P {
        &self.store
    }
}

/// Runs every case of the suite against `$factory` (an expression making a
/// [`Factory`]), each as its own `#[tokio::test]` in a module per port
/// (`events::chain_returns_…`), so a failure names its case. The calling
/// crate needs `tokio` (with `macros`) among its dev-dependencies.
#[macro_export]
macro_rules! conformance {
    ($factory:expr) => {
        $crate::conformance!(@ports $factory;
            events: [
                appended_event_reads_back_with_its_received_state,
                every_state_transition_is_recorded_in_order,
                a_delivery_end_with_its_in_transit_time_reads_back_as_both_states,
                transition_for_an_unknown_event_is_refused,
                retry_with_same_source_and_originid_returns_the_first_event,
                query_filters_newest_first_and_pages,
                query_by_state_and_time_range,
                chain_returns_the_whole_correlation_oldest_first,
                lineage_of_an_unknown_event_is_none,
                get_many_returns_the_events_that_exist_in_id_order_without_states,
                read_after_walks_forward_oldest_first_without_states,
                ids_after_lists_ids_oldest_first,
                queries_see_every_acknowledged_append_at_once,
                status_names_the_backend_and_counts_what_was_recorded,
            ],
            audit: [
                changes_are_sealed_dense_and_chained_with_their_events,
                entries_filter_and_page,
                checkpoints_are_kept_once_per_size,
            ],
            devices: [
                the_device_registry_creates_disables_rotates_and_deletes,
                shadows_are_written_only_over_the_version_they_were_read_at,
                device_metadata_is_replaced_whole,
                devices_are_listed_by_group_owner_and_tag,
            ],
            certificates: [
                certificates_are_kept_by_serial_and_revoked_once,
                renewal_supersedes_and_first_use_is_noted_once,
                expiring_certificates_exclude_revoked_and_renewed_ones,
            ],
            commands: [
                commands_are_idempotent_by_key_and_change_state_only_from_expected_states,
                a_command_reads_back_by_id_and_by_its_devices_key,
            ],
            functions: [
                versions_number_from_one_and_the_newest_is_live,
                finding_5_kv_set_past_the_key_count_or_byte_quota_is_refused_naming_the_limit,
                a_deleted_function_keeps_its_versions_until_purged,
                moves_of_the_live_alias_are_logged_within_a_bound,
            ],
            sessions: [
                committed_changes_load_back,
                deleting_a_session_removes_its_subscriptions_and_queue,
                flush_waits_for_changes_applied_before_it,
            ],
            metrics: [
                buckets_merge_roll_up_and_expire,
                range_selects_series_by_prefix_and_time,
            ],
            settings: [
                a_setting_reads_back_the_last_value_put,
            ],
            tokens: [
                tokens_are_created_once_per_name_and_revoked_once,
                a_token_notes_when_it_was_last_used,
            ],
            budgets: [
                a_budget_per_target_is_replaced_whole_and_deleted_once,
            ],
        );
    };
    (@ports $factory:expr; $($port:ident: [$($case:ident),* $(,)?]),* $(,)?) => {
        $(
            mod $port {
                #[allow(unused_imports)]
                use super::*;
                $(
                    #[tokio::test]
                    async fn $case() {
                        $crate::$port::$case(&$factory).await;
                    }
                )*
            }
        )*
    };
}
