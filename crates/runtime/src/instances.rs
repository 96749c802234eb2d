//! Warm instances: an event handler's instance kept after an invocation and
//! reused for the next, so a JavaScript or Python runtime inside it starts
//! once rather than per event (as a warm Lambda container or a long-lived
//! Spin instance would). What the guest keeps in its globals carries over
//! between the events one instance handles; `Reuse::invocations = 1`
//! turns reuse off for functions that must not share anything.
//!
//! The recycle policy: an instance is reused only after the function
//! returned (its result or its error); after a trap, a timeout or a refused
//! memory growth it is thrown away. It is also retired after
//! `invocations` runs, once its memory is past three quarters of the
//! limit, and after `idle_for` unused. Idle instances are bounded per
//! function (`idle_max`) and across the runtime (half the allocator's
//! slots), so fresh instances can always be made.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::host::State;
use crate::{Compiled, EventHandler, Limits, Report};

/// When a function's instances are reused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// Invocations an instance serves before it is retired; 1: a fresh
    /// instance for every invocation.
    pub invocations: u32,
    /// Most idle instances kept for the function (its concurrency is a
    /// good value: more are never needed at once).
    pub idle_max: usize,
    /// An instance unused this long is retired by [`Instances::retire_idle`].
    pub idle_for: Duration,
}

impl Default for Reuse {
    fn default() -> Self {
        Self { invocations: 1000, idle_max: 8, idle_for: Duration::from_secs(300) }
    }
}

/// Idle instances across the runtime, and their bound.
#[derive(Clone)]
pub(crate) struct IdleCount {
    count: Arc<AtomicUsize>,
    max: usize,
}

impl IdleCount {
    pub fn new(max: usize) -> Self {
        Self { count: Arc::default(), max }
    }

    /// Counts one more idle instance, unless the bound is reached.
    fn acquire(&self) -> bool {
        self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1)).is_ok()
    }

    fn release(&self, n: usize) {
        self.count.fetch_sub(n, Ordering::AcqRel);
    }
}

/// An instance between invocations.
pub(crate) struct Warm {
    pub store: Store<State>,
    pub handler: EventHandler,
    /// Invocations it has served.
    pub served: u32,
}

/// The warm instances of one compiled function.
pub struct Instances {
    digest: String,
    policy: Reuse,
    /// Most recently used last: taken first, so the rest can age out.
    idle: Mutex<Vec<(Warm, Instant)>>,
    count: IdleCount,
}

impl Instances {
    /// Instances kept idle now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Retires the instances idle longer than the policy allows; returns
    /// how many.
    pub fn retire_idle(&self) -> usize {
        let mut idle = self.lock();
        let before = idle.len();
        idle.retain(|(_, since)| since.elapsed() < self.policy.idle_for);
        let retired = before - idle.len();
        self.count.release(retired);
        retired
    }

    /// Retires every idle instance (its function was deleted); returns how many.
    pub fn retire_all(&self) -> usize {
        let retired = std::mem::take(&mut *self.lock()).len();
        self.count.release(retired);
        retired
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(Warm, Instant)>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A warm instance of `function`, if one is idle.
    pub(crate) fn take(&self, function: &Compiled) -> Option<Warm> {
        if function.digest != self.digest {
            return None;
        }
        let (warm, _) = self.lock().pop()?;
        self.count.release(1);
        Some(warm)
    }

    /// Keeps an instance after an invocation that returned, unless the
    /// policy retires it.
    pub(crate) fn put(&self, function: &Compiled, warm: Warm, report: &Report, limits: Limits) {
        let retire = function.digest != self.digest
            || warm.served >= self.policy.invocations
            || report.memory_bytes > limits.memory_bytes / 4 * 3;
        if retire {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.policy.idle_max && self.count.acquire() {
            idle.push((warm, Instant::now()));
        }
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        self.count.release(self.lock().len());
    }
}

impl crate::Runtime {
    /// A place to keep `function`'s warm instances, under `policy`.
    pub fn instances(&self, function: &Compiled, policy: Reuse) -> Instances {
        Instances { digest: function.digest.clone(), policy, idle: Mutex::default(), count: self.idle.clone() }
    }
}
