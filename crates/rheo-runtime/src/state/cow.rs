//! A vector whose chunks are shared with the checkpoints being written: taking a view of it for
//! a checkpoint copies one pointer per chunk, and a write copies a chunk only while a
//! checkpoint still reads it (Flink's heap backend does the same with its copy-on-write state
//! map, copying entries with the type serializer's `copy`, as `Clone` does here).

use std::sync::Arc;

/// Slots per chunk: a write during a checkpoint copies this many at most once.
const CHUNK: usize = 1024;

/// The slots of one chunk, behind one pointer (a slice inline in the `Arc`'s allocation, so a
/// read is two dependent loads, not three).
type Chunk<T> = Arc<[Option<T>]>;

/// Optional values by index, in chunks of [`CHUNK`] allocated as indexes reach them.
pub struct CowVec<T> {
    chunks: Vec<Chunk<T>>,
    /// Whether each chunk is known to be referenced by this vector alone: set when a write made
    /// it so, cleared when a view shares every chunk. A write to an owned chunk then needs no
    /// atomic check of the reference count, which on the per-record path stalls the loads of
    /// the records that follow.
    owned: Vec<bool>,
}

impl<T> Default for CowVec<T> {
    fn default() -> Self {
        Self { chunks: Vec::new(), owned: Vec::new() }
    }
}

impl<T: Clone> CowVec<T> {
    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?[index % CHUNK].as_ref()
    }

    /// The slot at `index` to write, its chunk made first if need be, and copied if a
    /// checkpoint still reads it.
    #[inline]
    pub fn slot_mut(&mut self, index: usize) -> &mut Option<T> {
        let chunk = index / CHUNK;
        if self.chunks.len() <= chunk {
            self.grow_to(chunk);
        }
        &mut self.chunk_mut(chunk)[index % CHUNK]
    }

    #[cold]
    fn grow_to(&mut self, chunk: usize) {
        while self.chunks.len() <= chunk {
            self.chunks.push((0..CHUNK).map(|_| None).collect());
            self.owned.push(true);
        }
    }

    /// The slot at `index` to write if there is a chunk for it.
    #[inline]
    pub fn existing_slot_mut(&mut self, index: usize) -> Option<&mut Option<T>> {
        let chunk = index / CHUNK;
        if chunk >= self.chunks.len() {
            return None;
        }
        Some(&mut self.chunk_mut(chunk)[index % CHUNK])
    }

    #[inline]
    fn chunk_mut(&mut self, chunk: usize) -> &mut [Option<T>] {
        let shared = &mut self.chunks[chunk];
        if !self.owned[chunk] {
            copy_if_shared(shared);
            self.owned[chunk] = true;
        }
        // SAFETY: `owned[chunk]` is set only when the chunk was just made or `make_mut` left this
        // `Arc` the only reference to it, and is cleared by `view`, the only place a chunk's
        // `Arc` is cloned (no `Weak` is ever made). So no other reference to the chunk exists, and
        // `&mut self` makes this one exclusive: what `Arc::get_mut` would check, without its
        // atomic read-modify-write. The pointer comes from the `Arc`'s own allocation.
        unsafe { &mut *(Arc::as_ptr(shared) as *mut [Option<T>]) }
    }

    /// The values as they are now, unchanged by later writes.
    pub fn view(&mut self) -> CowView<T> {
        self.owned.fill(false);
        CowView { chunks: self.chunks.clone() }
    }
}

/// Makes `chunk` the only reference to its slots, copying them if a view still reads them.
#[cold]
fn copy_if_shared<T: Clone>(chunk: &mut Chunk<T>) {
    Arc::make_mut(chunk);
}

/// What a [`CowVec`] held when the view was taken.
pub struct CowView<T> {
    chunks: Vec<Chunk<T>>,
}

impl<T> CowView<T> {
    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?[index % CHUNK].as_ref()
    }

    /// Every value with its index, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &T)> {
        self.chunks.iter().enumerate().flat_map(|(chunk, values)| {
            values.iter().enumerate().filter_map(move |(i, value)| Some((chunk * CHUNK + i, value.as_ref()?)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_keeps_the_values_of_its_moment_and_copies_only_the_chunks_written_after() {
        let mut values = CowVec::default();
        for i in 0..3 * CHUNK {
            *values.slot_mut(i) = Some(i);
        }
        let view = values.view();
        *values.slot_mut(5) = Some(1_000_000);
        *values.slot_mut(3 * CHUNK + 7) = Some(7);
        *values.existing_slot_mut(2 * CHUNK).expect("a chunk there") = None;
        assert_eq!(view.get(5), Some(&5));
        assert_eq!(view.get(2 * CHUNK), Some(&(2 * CHUNK)));
        assert_eq!(view.get(3 * CHUNK + 7), None, "written after the view");
        assert_eq!(view.iter().count(), 3 * CHUNK);
        assert!(view.iter().all(|(i, &v)| i == v));
        assert_eq!(values.get(5), Some(&1_000_000));
        assert_eq!(values.get(2 * CHUNK), None);
        assert!(Arc::ptr_eq(&values.chunks[1], &view.chunks[1]), "a chunk not written is shared");
        assert!(!Arc::ptr_eq(&values.chunks[0], &view.chunks[0]), "a written chunk was copied");
        drop(view);
        let before = Arc::as_ptr(&values.chunks[0]);
        *values.slot_mut(6) = Some(6);
        assert_eq!(Arc::as_ptr(&values.chunks[0]), before, "without a view, writes copy nothing");

        // A second view after writes to owned chunks: it sees them, and later writes copy again.
        let second = values.view();
        *values.slot_mut(6) = Some(60);
        assert_eq!(second.get(6), Some(&6));
        assert_eq!(values.get(6), Some(&60));
        drop(second);
        let third = values.view();
        drop(third);
        // Every view dropped: a write makes the chunk owned again without copying it.
        let before = Arc::as_ptr(&values.chunks[1]);
        *values.slot_mut(CHUNK + 1) = Some(0);
        assert_eq!(Arc::as_ptr(&values.chunks[1]), before);
    }
}
