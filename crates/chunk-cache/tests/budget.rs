//! The shared memory budget: charges, waits, early frees, holds, the pool.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunk_cache::{
    Admission, CacheConfig, ChunkCache, MemoryBudget, ReadError, SlotKind, StreamWriter, WriteError,
};

const SLOT: usize = 1024;

fn shared(limit_slots: u64, admission: Admission) -> (Arc<MemoryBudget>, ChunkCache) {
    let budget = Arc::new(MemoryBudget::new(limit_slots * SLOT as u64, SLOT));
    let cache =
        ChunkCache::with_budget(CacheConfig::new(64, SLOT, 16), budget.clone(), admission).unwrap();
    (budget, cache)
}

async fn fill(w: &mut StreamWriter, byte: u8) -> Result<u64, WriteError> {
    let mut buf = w.buffer();
    buf.resize(SLOT, byte);
    w.append_buffer(buf).await
}

fn try_fill(w: &mut StreamWriter, byte: u8) -> Result<u64, WriteError> {
    let mut buf = w.buffer();
    buf.resize(SLOT, byte);
    w.try_append(buf.freeze())
}

#[tokio::test]
async fn two_caches_share_one_budget_and_a_writer_waits_for_a_release() {
    let budget = Arc::new(MemoryBudget::new(4 * SLOT as u64, SLOT));
    let config = CacheConfig::new(4, SLOT, 16);
    let a = ChunkCache::with_budget(config, budget.clone(), Admission::unlimited()).unwrap();
    let b = ChunkCache::with_budget(config, budget.clone(), Admission::unlimited()).unwrap();
    let mut wa = a.try_open().unwrap();
    wa.add(1, Bytes::new()).await.unwrap();
    for _ in 0..3 {
        fill(&mut wa, 1).await.unwrap();
    }
    let mut wb = b.try_open().unwrap();
    // A reader that has consumed nothing: `b` cannot free its own slot 2.
    let _rb = b.register_reader(wb.id()).unwrap();
    wb.add(1, Bytes::new()).await.unwrap();
    fill(&mut wb, 2).await.unwrap();
    assert_eq!(budget.used(), 4 * SLOT as u64);
    assert_eq!(try_fill(&mut wb, 2), Err(WriteError::BudgetSpent));
    // A reader of `a` would not help `b`: only a release does.
    let waiting = tokio::spawn(async move {
        fill(&mut wb, 2).await.unwrap();
        wb
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    assert_eq!(budget.waiting(), 1);
    drop(wa);
    let wb = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("writer woke up")
        .unwrap();
    assert_eq!(budget.waiting(), 0);
    assert_eq!(budget.used(), 2 * SLOT as u64);
    drop((wb, _rb));
    assert_eq!(budget.used(), 0);
    assert_eq!(a.bytes_held() + b.bytes_held(), 0);
}

#[tokio::test]
async fn a_short_writer_frees_its_own_consumed_slots_instead_of_waiting() {
    let (budget, cache) = shared(3, Admission::unlimited());
    let mut w = cache.try_open().unwrap();
    let mut r = cache.register_reader(w.id()).unwrap();
    w.add(1, Bytes::new()).await.unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..40u8 {
            fill(&mut w, i).await.unwrap();
        }
        w.end().await.unwrap();
        w
    });
    assert_eq!(r.next().await.unwrap().kind, SlotKind::Headers);
    for i in 0..40u8 {
        let slot = r.next().await.unwrap();
        assert!(slot.bytes.iter().all(|&b| b == i), "slot {}", slot.number);
        assert!(budget.used() <= budget.limit());
    }
    assert_eq!(r.next().await.unwrap().kind, SlotKind::End);
    let w = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("writer finished within the budget")
        .unwrap();
    // Slots freed early read as evicted, never as other bytes.
    let oldest = cache.oldest_retained(w.id()).unwrap();
    assert!(oldest > 2, "a 3-slot budget cannot hold 40 slots");
    assert!(matches!(
        cache.get(w.id(), 2),
        Err(ReadError::Evicted { slot: 2, .. })
    ));
}

#[tokio::test]
async fn freed_buffers_come_back_from_the_pool() {
    let (budget, cache) = shared(8, Admission::unlimited());
    let mut w = cache.try_open().unwrap();
    w.add(1, Bytes::new()).await.unwrap();
    let mut buf = w.buffer();
    buf.resize(SLOT, 7);
    let ptr = buf.as_ptr();
    w.append_buffer(buf).await.unwrap();
    w.end().await.unwrap();
    assert_eq!(budget.pooled(), 0);
    drop(w);
    assert_eq!(budget.pooled(), 1);
    assert_eq!(budget.buffer().as_ptr(), ptr);
    // A buffer a reader still holds is not reused under it.
    let mut w = cache.try_open().unwrap();
    w.add(1, Bytes::new()).await.unwrap();
    fill(&mut w, 9).await.unwrap();
    let kept = cache.get(w.id(), 2).unwrap().unwrap();
    drop(w);
    assert_eq!(budget.pooled(), 0);
    assert!(kept.bytes.iter().all(|&b| b == 9));
}

#[tokio::test]
async fn a_late_reader_starts_at_the_oldest_held_slot_and_never_blocks_the_writer() {
    let cache = ChunkCache::new(CacheConfig::new(1, SLOT, 4)).unwrap();
    let mut w = cache.try_open().unwrap();
    w.add(1, Bytes::from_static(b"h")).await.unwrap();
    for i in 0..10u8 {
        w.append(Bytes::from(vec![i; 8])).await.unwrap();
    }
    // Slots 2..=8 are gone (ring of 3 holds 9..=11); the late reader starts
    // at 10, leaving the writer the one position it may be overwriting.
    let mut late = cache.register_reader(w.id()).unwrap();
    assert_eq!(late.position(), 10);
    w.append(Bytes::from_static(b"more")).await.unwrap();
    assert_eq!(late.next().await.unwrap().number, 10);
    assert_eq!(
        cache.get(w.id(), 1).unwrap().unwrap().kind,
        SlotKind::Headers
    );
    // On a stream still intact, a new reader starts at the headers.
    drop((late, w));
    let mut w = cache.try_open().unwrap();
    w.add(1, Bytes::from_static(b"h")).await.unwrap();
    w.append(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(cache.register_reader(w.id()).unwrap().position(), 1);
}

#[tokio::test]
async fn unclaimed_streams_stay_under_their_cap_and_claimed_ones_go_on() {
    let admission = Admission {
        cache_max: 8 * SLOT as u64,
        unclaimed_max: 2 * SLOT as u64,
    };
    let (budget, cache) = shared(8, admission);
    let mut unclaimed = cache.try_open().unwrap();
    let hold = cache.register_hold(unclaimed.id()).unwrap();
    unclaimed.add(1, Bytes::new()).await.unwrap();
    fill(&mut unclaimed, 1).await.unwrap();
    fill(&mut unclaimed, 1).await.unwrap();
    assert_eq!(cache.unclaimed_bytes(), 2 * SLOT as u64);
    assert_eq!(cache.unclaimed_streams(), 1);
    assert_eq!(try_fill(&mut unclaimed, 1), Err(WriteError::BudgetSpent));
    // A claimed stream still has the rest of the budget.
    let mut claimed = cache.try_open().unwrap();
    claimed.add(1, Bytes::new()).await.unwrap();
    for _ in 0..6 {
        fill(&mut claimed, 2).await.unwrap();
    }
    assert_eq!(budget.used(), 8 * SLOT as u64);
    // The claim (the hold goes) moves the bytes to the claimed side.
    let reader = cache.register_reader(unclaimed.id()).unwrap();
    drop(hold);
    assert_eq!(cache.unclaimed_bytes(), 0);
    assert_eq!(cache.unclaimed_streams(), 0);
    drop((reader, claimed));
    fill(&mut unclaimed, 1).await.unwrap();
}

/// The admission argument, exercised: many unclaimed streams (holds, never
/// read) fill their share and wait; claimed streams on the same budget still
/// run to the end, however the writers interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_unclaimed_streams_never_starve_claimed_ones() {
    let admission = Admission {
        cache_max: 16 * SLOT as u64,
        unclaimed_max: 6 * SLOT as u64,
    };
    let (budget, cache) = shared(16, admission);
    let mut parked = Vec::new();
    for _ in 0..12 {
        let mut w = cache.try_open().unwrap();
        let hold = cache.register_hold(w.id()).unwrap();
        w.add(1, Bytes::new()).await.unwrap();
        let task = tokio::spawn(async move {
            loop {
                if fill(&mut w, 0).await.is_err() {
                    return;
                }
                // A write that completes at once never yields to the
                // runtime: once (1 run in about 50, under load) a parked writer
                // kept writing without waiting and held a worker thread
                // forever, so not even the 60 s timeout below could fire.
                // Yielding keeps that from hanging the suite; why the writer
                // did not wait is open (see the crate's known limits).
                tokio::task::yield_now().await;
            }
        });
        parked.push((hold, task));
    }
    let mut claimed = Vec::new();
    for s in 0..8u8 {
        let cache = cache.clone();
        claimed.push(tokio::spawn(async move {
            let mut w = cache.try_open().unwrap();
            let mut r = cache.register_reader(w.id()).unwrap();
            w.add(1, Bytes::new()).await.unwrap();
            let writer = tokio::spawn(async move {
                for i in 0..200u8 {
                    fill(&mut w, i ^ s).await.unwrap();
                }
                w.end().await.unwrap();
            });
            r.next().await.unwrap();
            for i in 0..200u8 {
                let slot = r.next().await.unwrap();
                assert!(slot.bytes.iter().all(|&b| b == i ^ s));
            }
            assert_eq!(r.next().await.unwrap().kind, SlotKind::End);
            writer.await.unwrap();
        }));
    }
    for task in claimed {
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("a claimed stream starved")
            .unwrap();
    }
    assert!(cache.unclaimed_bytes() <= admission.unclaimed_max);
    assert!(budget.used() <= budget.limit());
    for (hold, task) in parked {
        task.abort();
        drop(hold);
    }
}

/// Regression: a reader registering while a hold kept a full window (a worker
/// claiming an upload that filled its window while it waited) started at the
/// oldest position `last + 1` would leave, slot 3, and silently missed slot 2.
#[tokio::test]
async fn a_reader_registered_on_a_full_window_held_by_a_hold_starts_at_slot_1() {
    let (_budget, cache) = shared(1024, Admission::unlimited());
    let mut w = cache.try_open().unwrap();
    w.add(1, Bytes::from_static(b"head")).await.unwrap();
    let hold = cache.register_hold(w.id()).unwrap();
    // Ring of 15 body/end positions: fill every one, then the writer must wait.
    let mut written = 0u8;
    loop {
        let mut buf = w.buffer();
        buf.resize(SLOT, written);
        match w.try_append(buf.freeze()) {
            Ok(_) => written += 1,
            Err(_) => break,
        }
    }
    assert_eq!(written, 15, "the premise: the window is full");
    let mut reader = cache.register_reader(w.id()).unwrap();
    assert_eq!(reader.position(), 1);
    drop(hold);
    assert_eq!(reader.next().await.unwrap().kind, SlotKind::Headers);
    for byte in 0..written {
        let slot = reader.next().await.unwrap();
        assert_eq!(slot.kind, SlotKind::Body);
        assert!(slot.bytes.iter().all(|b| *b == byte), "slot of byte {byte}");
    }
}

/// Regression: freed slots whose bytes the writer brought from elsewhere (a
/// proxy appending its origin's frames) were kept in the pool up to the
/// limit; a 4 GiB proxy miss grew RSS by 675 MiB. Only buffers the pool
/// handed out come back to it.
#[tokio::test]
async fn bytes_that_did_not_come_from_the_pool_are_not_pooled() {
    let (budget, cache) = shared(1024, Admission::unlimited());
    for _ in 0..8 {
        let mut w = cache.try_open().unwrap();
        w.add(1, Bytes::from_static(b"head")).await.unwrap();
        for _ in 0..4 {
            let foreign = bytes::BytesMut::from(&[7u8; SLOT][..]).freeze();
            w.append(foreign).await.unwrap();
        }
        w.end().await.unwrap();
        drop(w);
    }
    assert_eq!(budget.pooled(), 0, "foreign buffers were pooled");
}
