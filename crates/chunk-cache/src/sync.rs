//! The synchronisation primitives of the slot protocol, swapped for loom's
//! model-checked versions when built with `--cfg chunk_cache_loom`.

#[cfg(chunk_cache_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(chunk_cache_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard, RwLock};

#[cfg(not(chunk_cache_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(chunk_cache_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Locks a mutex, ignoring poison: every critical section in this crate leaves
/// its data consistent before anything that could panic, so a poisoned lock
/// carries no torn state.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
