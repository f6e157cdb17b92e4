//! Exactly-once positions of parallel sources that split their input by index (record `i` goes
//! to subtask `i % parallelism`), restorable at any parallelism.
//!
//! Each subtask checkpoints how far it got. A run restored at another parallelism rebuilds what
//! every old subtask emitted (a [`Layer`]) and skips exactly those indices; a subtask carries a
//! layer forward in its own checkpoints until it has moved past it.

/// What the subtasks of one earlier run emitted: with `stride` subtasks, subtask `r` emitted
/// `r, r + stride, ...` below `next[r]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layer {
    pub stride: u64,
    pub next: Vec<u64>,
}

impl Layer {
    pub fn contains(&self, index: u64) -> bool {
        index < self.next[(index % self.stride) as usize]
    }

    /// Past this index the layer holds nothing.
    pub fn end(&self) -> u64 {
        self.next.iter().copied().max().unwrap_or(0)
    }
}

/// A subtask's checkpointed state: its own position (and, for files, the byte offset of index
/// `next`), plus the layers of earlier runs it has not yet moved past.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub first: u64,
    pub stride: u64,
    pub next: u64,
    pub offset: u64,
    pub earlier: Vec<Layer>,
}

/// Rebuilds what the checkpointed run (and the runs before it) emitted from all its subtasks'
/// positions.
pub fn emitted_layers(positions: &[Position]) -> Vec<Layer> {
    let mut layers: Vec<Layer> = Vec::new();
    if let Some(stride) = positions.first().map(|p| p.stride) {
        let mut next = vec![0; stride as usize];
        for p in positions.iter().filter(|p| p.stride == stride) {
            next[p.first as usize] = p.next;
        }
        layers.push(Layer { stride, next });
    }
    for layer in positions.iter().flat_map(|p| p.earlier.iter()) {
        if !layers.contains(layer) {
            layers.push(layer.clone());
        }
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Emits indices below `count` as subtask `first` of `stride` would, skipping `skip`.
    fn run(first: u64, stride: u64, from: u64, until: u64, skip: &[Layer]) -> Vec<u64> {
        (from..until).filter(|i| i % stride == first && !skip.iter().any(|l| l.contains(*i))).collect()
    }

    #[test]
    fn rescaling_twice_emits_every_index_exactly_once() {
        // Run 1 at parallelism 2 stops at next = [10, 7].
        let mut emitted: Vec<u64> = run(0, 2, 0, 10, &[]);
        emitted.extend(run(1, 2, 0, 7, &[]));
        let run1: Vec<Position> = [(0, 10), (1, 7)]
            .iter()
            .map(|&(first, next)| Position { first, stride: 2, next, offset: 0, earlier: vec![] })
            .collect();
        // Run 2 at parallelism 3 restores, gets to next = [12, 4, 14], checkpoints.
        let layers = emitted_layers(&run1);
        let stops = [12, 4, 14];
        let mut run2 = Vec::new();
        for first in 0..3 {
            emitted.extend(run(first, 3, 0, stops[first as usize], &layers));
            let earlier = layers.iter().filter(|l| stops[first as usize] < l.end()).cloned().collect();
            run2.push(Position { first, stride: 3, next: stops[first as usize], offset: 0, earlier });
        }
        // Run 3 at parallelism 1 restores and finishes at 30.
        let layers = emitted_layers(&run2);
        emitted.extend(run(0, 1, 0, 30, &layers));
        emitted.sort_unstable();
        assert_eq!(emitted, (0..30).collect::<Vec<_>>());
    }
}
