//! One stream's ring and the slot publication protocol.
//!
//! Protocol (checked by `tests/loom.rs`):
//! * The single writer fills a slot under its write lock, stamping it with
//!   (generation, slot number), then publishes the new last slot with a
//!   release store/CAS on `head`.
//! * A reader acquire-loads `head`; a slot number at or below `last` is then
//!   guaranteed written, and it takes the slot's read lock and compares the
//!   stamp: equal means the right bytes, higher means the ring recycled it
//!   (`Evicted`), another generation means the stream is gone (`Stale`).
//! * Before overwriting a ring position the writer checks that every
//!   registered reader's cursor is past the slot it would destroy; if not it
//!   announces the slot in `writer_waiting` and sleeps on `space`. Readers
//!   store their cursor and then load `writer_waiting` (both SeqCst), so one
//!   of the two always sees the other: no lost wake-up.

use std::sync::OnceLock;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::config::{CacheConfig, MAX_SLOT};
use crate::error::{ReadError, StreamError, WriteError};
use crate::slot::{FREED, RingSlot, SlotData, hash, stamp};
use crate::sync::{Arc, AtomicU32, AtomicU64, AtomicUsize, Mutex, Ordering, lock};
use crate::{AbortReason, Slot, SlotKind, StreamId};

/// Ring positions are allocated in segments of this many slots, on first
/// use, so a small request does not pay for a ring sized for a 1 GiB one.
const SEGMENT: usize = 64;

pub(crate) const STATE_OPEN: u64 = 0;
pub(crate) const STATE_ENDED: u64 = 1;
pub(crate) const STATE_ABORTED: u64 = 2;

/// `head` packs generation (32 bits), state (2 bits) and last slot (30 bits)
/// so that `last()` and its staleness check are one atomic load.
pub(crate) fn pack(generation: u32, state: u64, last: u64) -> u64 {
    (u64::from(generation) << 32) | (state << 30) | last
}

pub(crate) fn unpack(head: u64) -> (u32, u64, u64) {
    ((head >> 32) as u32, (head >> 30) & 0b11, head & MAX_SLOT)
}

/// A registered reader's position: every slot below it has been consumed.
pub(crate) struct Cursor {
    pub(crate) id: u64,
    pub(crate) next: AtomicU64,
}

/// Ownership bookkeeping, touched only when handles are made or dropped.
pub(crate) struct Meta {
    pub(crate) generation: u32,
    pub(crate) leases: usize,
    pub(crate) live: bool,
    pub(crate) next_reader_id: u64,
}

/// The writer's private progress, kept in its handle.
pub(crate) struct WriterState {
    pub(crate) generation: u32,
    pub(crate) next: u64,
    /// Slots below this are known consumed by every registered reader.
    pub(crate) known_free: u64,
    /// Charge taken from slots this writer freed early (see
    /// [`Entry::free_oldest`]), kept for its next slot instead of going back
    /// to the shared budget. Counted in `Entry::charged`.
    pub(crate) credit: u64,
}

pub(crate) struct Entry {
    pub(crate) index: u32,
    ring_len: usize,
    slot_size: usize,
    pub(crate) head: AtomicU64,
    abort_code: AtomicU32,
    headers: RingSlot,
    segments: Box<[OnceLock<Box<[RingSlot]>>]>,
    /// Highest slot number written since the last reset (published or not: a
    /// write whose publish lost to an abort still left its bytes), so a reset
    /// clears only the positions this generation used.
    written: AtomicU64,
    pub(crate) meta: Mutex<Meta>,
    pub(crate) readers: Mutex<Vec<Arc<Cursor>>>,
    /// Set when a reader registers, so the writer recomputes `known_free`.
    readers_changed: AtomicU32,
    pub(crate) reader_count: AtomicUsize,
    /// Bytes this stream has charged to the budget (slots plus writer credit).
    /// Changed only under the budget's lock.
    pub(crate) charged: AtomicU64,
    /// Registered holds (readers that mark the stream unclaimed). Changed
    /// only under the budget's lock.
    pub(crate) holds: AtomicUsize,
    /// Oldest body slot not freed early (slots below it are gone even if the
    /// ring has not reached their positions yet).
    pub(crate) oldest_held: AtomicU64,
    pub(crate) writer_waiting: AtomicU64,
    pub(crate) data_ready: Notify,
    pub(crate) space: Notify,
}

impl Entry {
    pub(crate) fn new(index: u32, config: &CacheConfig) -> Self {
        let ring_len = config.ring_len();
        let segments = ring_len.div_ceil(SEGMENT);
        Self {
            index,
            ring_len,
            slot_size: config.slot_size,
            head: AtomicU64::new(pack(0, STATE_OPEN, 0)),
            abort_code: AtomicU32::new(0),
            headers: RingSlot::empty(),
            segments: (0..segments).map(|_| OnceLock::new()).collect(),
            written: AtomicU64::new(0),
            meta: Mutex::new(Meta {
                generation: 0,
                leases: 0,
                live: false,
                next_reader_id: 0,
            }),
            readers: Mutex::new(Vec::new()),
            readers_changed: AtomicU32::new(0),
            reader_count: AtomicUsize::new(0),
            charged: AtomicU64::new(0),
            holds: AtomicUsize::new(0),
            oldest_held: AtomicU64::new(2),
            writer_waiting: AtomicU64::new(u64::MAX),
            data_ready: Notify::new(),
            space: Notify::new(),
        }
    }

    fn ring_slot(&self, number: u64) -> &RingSlot {
        let pos = ((number - 2) % self.ring_len as u64) as usize;
        let (seg, off) = (pos / SEGMENT, pos % SEGMENT);
        let segment = self.segments[seg].get_or_init(|| {
            let len = SEGMENT.min(self.ring_len - seg * SEGMENT);
            (0..len).map(|_| RingSlot::empty()).collect()
        });
        &segment[off]
    }

    fn slot_for(&self, number: u64) -> &RingSlot {
        if number == 1 {
            &self.headers
        } else {
            self.ring_slot(number)
        }
    }

    pub(crate) fn id(&self, generation: u32) -> StreamId {
        StreamId::new(self.index, generation)
    }

    /// `last` after checking that `generation` is still this ring's.
    pub(crate) fn last(&self, generation: u32) -> Result<u64, StreamError> {
        let (g, _, last) = unpack(self.head.load(Ordering::Acquire));
        if g != generation {
            return Err(StreamError::Stale(self.id(generation)));
        }
        Ok(last)
    }

    pub(crate) fn state(&self, generation: u32) -> Result<(u64, u64), StreamError> {
        let (g, state, last) = unpack(self.head.load(Ordering::Acquire));
        if g != generation {
            return Err(StreamError::Stale(self.id(generation)));
        }
        Ok((state, last))
    }

    pub(crate) fn abort_reason(&self) -> AbortReason {
        AbortReason::from_code(self.abort_code.load(Ordering::Acquire) as u16)
    }

    /// Oldest body slot a reader can still get.
    pub(crate) fn oldest_retained(&self, last: u64) -> u64 {
        last.saturating_sub(self.ring_len as u64 - 1)
            .max(self.oldest_held.load(Ordering::SeqCst))
            .max(2)
    }

    /// Where a newly registered reader starts: slot 1 while every body slot
    /// is still held, else the oldest held one. `last + 1` because the
    /// writer may be overwriting one more position right now, unless a
    /// registered reader (`registered`: their cursors) still holds an older
    /// slot: the writer frees and overwrites nothing a registered reader has
    /// not consumed, so everything from the smallest cursor on is retained.
    /// Without that, a worker claiming a stream whose window filled while it
    /// waited (the ingress's hold at slot 1) started at slot 3 and silently
    /// missed slot 2. Caller holds `readers`, which the early free also
    /// takes, so the two agree.
    pub(crate) fn first_readable(&self, registered: &[Arc<Cursor>]) -> u64 {
        let (_, _, last) = unpack(self.head.load(Ordering::Acquire));
        let held = registered
            .iter()
            .map(|c| c.next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        match self.oldest_retained(last + 1).min(held) {
            ..=2 => 1,
            oldest => oldest,
        }
    }

    /// The charge held by the position slot `number` would overwrite.
    pub(crate) fn position_charge(&self, number: u64) -> u64 {
        let data = self
            .slot_for(number)
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner());
        data.charge
    }

    /// Frees the oldest held body slot early if every registered reader has
    /// consumed it (a writer short of budget shrinks its own window rather
    /// than take bytes from other streams). Returns its charge and bytes.
    pub(crate) fn free_oldest(&self, w: &WriterState) -> Option<(u64, Bytes)> {
        let last = w.next.checked_sub(1)?;
        let readers = lock(&self.readers);
        let oldest = self.oldest_retained(last);
        if oldest > last {
            return None;
        }
        let min = readers
            .iter()
            .map(|c| c.next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX);
        if min <= oldest {
            // Tell the readers which slot to consume to wake this writer.
            self.writer_waiting.store(oldest, Ordering::SeqCst);
            return None;
        }
        let mut data = self
            .ring_slot(oldest)
            .0
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if data.stamp != stamp(w.generation, oldest) {
            return None;
        }
        data.stamp |= FREED;
        let charge = std::mem::take(&mut data.charge);
        let bytes = std::mem::take(&mut data.bytes);
        self.oldest_held.store(oldest + 1, Ordering::SeqCst);
        Some((charge, bytes))
    }

    /// Reads slot `number` without waiting: `Ok(None)` if not written yet.
    pub(crate) fn try_read(&self, generation: u32, number: u64) -> Result<Option<Slot>, ReadError> {
        let (g, state, last) = unpack(self.head.load(Ordering::Acquire));
        if g != generation {
            return Err(StreamError::Stale(self.id(generation)).into());
        }
        if number == 0 {
            return Err(ReadError::Evicted {
                slot: 0,
                oldest: self.oldest_retained(last),
            });
        }
        if number > last {
            return match state {
                STATE_ENDED => Err(ReadError::PastEnd {
                    slot: number,
                    end: last,
                }),
                STATE_ABORTED => Err(ReadError::Aborted(self.abort_reason())),
                _ => Ok(None),
            };
        }
        let data = self
            .slot_for(number)
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let want = stamp(generation, number);
        let found = data.stamp;
        if found == want {
            let kind = match number {
                1 => SlotKind::Headers,
                _ if data.bytes.is_empty() => SlotKind::End,
                _ => SlotKind::Body,
            };
            return Ok(Some(Slot {
                number,
                kind,
                bytes: data.bytes.clone(),
                hash: data.hash,
            }));
        }
        drop(data);
        if data_generation(found) == generation && found > want {
            // Same stream, newer stamp: the ring moved past this slot. Both
            // the stamp found (possibly not yet published in `head`) and the
            // published last slot bound the oldest retained slot from below;
            // the larger bound is the answer.
            let (_, _, last_now) = unpack(self.head.load(Ordering::Acquire));
            let newest = (found & MAX_SLOT).max(last_now);
            return Err(ReadError::Evicted {
                slot: number,
                oldest: self.oldest_retained(newest),
            });
        }
        Err(StreamError::Stale(self.id(generation)).into())
    }

    /// Smallest cursor of the registered readers (`u64::MAX` when none).
    pub(crate) fn min_cursor(&self) -> u64 {
        lock(&self.readers)
            .iter()
            .map(|c| c.next.load(Ordering::SeqCst))
            .min()
            .unwrap_or(u64::MAX)
    }

    pub(crate) fn note_reader_registered(&self) {
        self.readers_changed.store(1, Ordering::SeqCst);
    }

    /// Checks that slot `number` may be written now. On a full ring returns
    /// the slot a registered reader still has to consume.
    pub(crate) fn check_space(&self, w: &mut WriterState, number: u64) -> Result<(), WriteError> {
        if number < 2 || number - 2 < self.ring_len as u64 {
            return Ok(());
        }
        let victim = number - self.ring_len as u64;
        if victim < w.known_free && self.readers_changed.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        // Cleared before the scan: a reader registering during it is either
        // in the scan or raises the flag again for the next check.
        self.readers_changed.store(0, Ordering::SeqCst);
        let min = self.min_cursor();
        if min > victim {
            w.known_free = min;
            Ok(())
        } else {
            Err(WriteError::WouldBlock(victim))
        }
    }

    /// Validates a slot before any waiting, so a bad write fails at once.
    pub(crate) fn check_write(
        &self,
        w: &WriterState,
        len: usize,
        end: bool,
    ) -> Result<(), WriteError> {
        if w.next > MAX_SLOT {
            return Err(WriteError::TooManySlots);
        }
        if len > self.slot_size {
            return Err(WriteError::TooLarge {
                len,
                max: self.slot_size,
            });
        }
        if len == 0 && !end && w.next != 1 {
            return Err(WriteError::Empty);
        }
        if end && w.next == 1 {
            return Err(WriteError::MissingHeaders);
        }
        let (g, state, _) = unpack(self.head.load(Ordering::Acquire));
        if g != w.generation || state != STATE_OPEN {
            return Err(WriteError::Finished);
        }
        Ok(())
    }

    /// Writes the next slot; the caller has run `check_write` and
    /// `check_space` and charged the budget. Returns the slot number and the
    /// charge and bytes the overwritten position held.
    pub(crate) fn try_write(
        &self,
        w: &mut WriterState,
        bytes: &Bytes,
        charge: u64,
        end: bool,
    ) -> Result<(u64, (u64, Bytes)), WriteError> {
        let number = w.next;
        let freed = {
            let mut data = self
                .slot_for(number)
                .0
                .write()
                .unwrap_or_else(|e| e.into_inner());
            let old = std::mem::replace(
                &mut *data,
                SlotData {
                    stamp: stamp(w.generation, number),
                    bytes: bytes.clone(),
                    hash: hash(bytes),
                    charge,
                },
            );
            let freed = (old.charge, old.bytes);
            self.written.fetch_max(number, Ordering::AcqRel);
            freed
        };
        let state = if end { STATE_ENDED } else { STATE_OPEN };
        let new = pack(w.generation, state, number);
        let old = pack(w.generation, STATE_OPEN, number - 1);
        // A CAS, not a store: someone may have aborted the stream meanwhile,
        // and that abort must not be overwritten by a clean-looking publish.
        if self
            .head
            .compare_exchange(old, new, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // The bytes stay in the slot (charged) until the reset.
            return Err(WriteError::Finished);
        }
        w.next += 1;
        self.data_ready.notify_waiters();
        Ok((number, freed))
    }

    /// Marks the stream aborted unless it already finished. Returns whether it did.
    pub(crate) fn abort(&self, generation: u32, reason: AbortReason) -> bool {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (g, state, last) = unpack(cur);
            if g != generation || state != STATE_OPEN {
                return false;
            }
            self.abort_code
                .store(u32::from(reason.code()), Ordering::Release);
            match self.head.compare_exchange(
                cur,
                pack(g, STATE_ABORTED, last),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.data_ready.notify_waiters();
        // A writer blocked on a full ring must wake up and see the abort.
        self.space.notify_one();
        true
    }

    /// Called after a reader consumed a slot: wakes the writer if it waits for it.
    pub(crate) fn reader_advanced(&self, cursor: u64) {
        if cursor > self.writer_waiting.load(Ordering::SeqCst) {
            self.space.notify_one();
        }
    }

    /// Returns the ring to the free state, handing every buffer it holds to
    /// `drop_bytes`. Caller holds `meta` and has bumped the generation, and
    /// releases `charged` afterwards.
    pub(crate) fn reset(&self, new_generation: u32, mut drop_bytes: impl FnMut(Bytes)) {
        self.head
            .store(pack(new_generation, STATE_OPEN, 0), Ordering::Release);
        self.abort_code.store(0, Ordering::Release);
        self.writer_waiting.store(u64::MAX, Ordering::SeqCst);
        self.oldest_held.store(2, Ordering::SeqCst);
        drop_bytes(clear(&self.headers));
        // Slots 2..=written sit at ring positions 0.. (wrapping at most once
        // over the whole ring). Clearing only those keeps a small request's
        // release O(its slots), not O(every position a big upload once
        // allocated on this ring): that sweep was the top symbol of a 1 KiB
        // request profile.
        let written = self.written.swap(0, Ordering::AcqRel);
        let used = usize::try_from(written.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(self.ring_len);
        for (seg, segment) in self.segments.iter().enumerate() {
            let from = seg * SEGMENT;
            if from >= used {
                break;
            }
            if let Some(segment) = segment.get() {
                let to = (used - from).min(segment.len());
                segment[..to].iter().map(clear).for_each(&mut drop_bytes);
            }
        }
        // Unregistered waiters of the old generation must wake up and see `Stale`.
        self.data_ready.notify_waiters();
    }
}

fn clear(slot: &RingSlot) -> Bytes {
    let mut data = slot.0.write().unwrap_or_else(|e| e.into_inner());
    // The stamp goes too: a reader that checked the generation just before
    // the release must see "stale", not an empty slot that looks valid.
    data.stamp = 0;
    data.charge = 0;
    std::mem::take(&mut data.bytes)
}

fn data_generation(stamp: u64) -> u32 {
    (stamp >> 32) as u32
}
