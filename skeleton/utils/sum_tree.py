"""An array-based sum tree for proportional prioritized replay (Schaul et al., 2016, Appendix B.2.1).

Reference:
    Schaul, T., Quan, J., Antonoglou, I., Silver, D. (2016). Prioritized Experience Replay. ICLR.
    Appendix B.2.1: "a 'sum-tree' data structure, where every node is the sum of its children, with the
    priorities as the leaf nodes" - O(log N) updates and sampling.

Layout: a complete binary tree stored in one float64 array ``tree`` of length ``2 * L``, where ``L`` is
``capacity`` rounded up to a power of two. Node 1 is the root, node ``i`` has children ``2i`` and
``2i + 1``, leaf ``j`` (0-based data slot) is node ``L + j``; ``tree[0]`` is unused and the leaves past
``capacity`` stay 0. Rounding up to a power of two keeps all leaves on one level, so that a left-to-right
descent visits the leaves in slot order and ``find`` is the inverse of the cumulative sum over slots.
Internal nodes are *recomputed* as ``left + right`` (never incremented by a delta), so no rounding error
accumulates and the root always equals the sum of its leaves as computed by the tree.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from utils.checks import check_positive_int

__all__ = ["SumTree"]


class SumTree:
    """Binary tree whose internal nodes hold the sum of their children (priorities at the leaves).

    Args:
        capacity: number of leaves (data slots), >= 1.

    Example:
        >>> tree = SumTree(4)
        >>> tree.update(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
        >>> tree.total, tree.find(2.5)
        (10.0, 1)
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = check_positive_int("capacity", capacity)
        self.leaf_offset = 1 << max(0, (self.capacity - 1).bit_length())  # L: power of two >= capacity
        self.depth = self.leaf_offset.bit_length() - 1  # number of levels below the root
        self.tree = np.zeros(2 * self.leaf_offset, dtype=np.float64)

    # ------------------------------------------------------------------ queries
    @property
    def total(self) -> float:
        """Sum of all leaves (the root)."""
        return float(self.tree[1])

    def leaves(self) -> np.ndarray:
        """(capacity,) float64 view of the leaf values in slot order."""
        return self.tree[self.leaf_offset : self.leaf_offset + self.capacity]

    def get(self, idx: Any) -> np.ndarray | float:
        """Leaf value(s) at slot(s) ``idx`` (int -> float, array -> (B,) float64)."""
        values = self.tree[self.leaf_offset + np.asarray(idx, dtype=np.int64)]
        return float(values) if np.ndim(values) == 0 else values

    # ------------------------------------------------------------------ updates
    def _check_indices(self, idx: np.ndarray) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise ValueError(
                f"idx must be leaf slots in [0, {self.capacity}), got min {idx.min()} max {idx.max()}"
            )

    def update(self, idx: Any, priority: Any) -> None:
        """Set leaf ``idx`` to ``priority`` and recompute its ancestors, O(log N) per leaf.

        Args:
            idx: an int slot or (B,) int slots in [0, capacity). With repeated slots the last value wins.
            priority: a float >= 0 or (B,) floats (the *scaled* priority p^α for replay).

        Raises:
            ValueError: for slots out of range, negative/non-finite priorities or mismatched lengths.
        """
        idx = np.atleast_1d(np.asarray(idx, dtype=np.int64))
        priority = np.atleast_1d(np.asarray(priority, dtype=np.float64))
        if priority.shape != idx.shape:
            priority = np.broadcast_to(priority, idx.shape) if priority.size == 1 else priority
        if priority.shape != idx.shape:
            raise ValueError(f"idx and priority must have the same length, got {idx.shape} and {priority.shape}")
        self._check_indices(idx)
        if priority.size and (not np.all(np.isfinite(priority)) or priority.min() < 0):
            raise ValueError(f"priority must be finite and >= 0, got min {priority.min()}")
        nodes = self.leaf_offset + idx
        self.tree[nodes] = priority
        self._propagate(nodes)

    def _propagate(self, nodes: np.ndarray) -> None:
        """Recompute every ancestor of the changed leaf ``nodes`` ((B,) int64 tree positions) up to the root.

        All leaves sit on one level, so the ancestors of a batch move up together; a parent shared by several
        changed leaves is simply recomputed more than once (same value).
        """
        # TODO(student): walk up `depth` levels: parents = nodes // 2, tree[p] = tree[2p] + tree[2p+1], then parents //= 2 (up to the root, node 1).
        raise NotImplementedError("SumTree._propagate: walk up `depth` levels: parents = nodes // 2, tree[p] = tree[2p] + tree[2p+1], then parents //= 2 (up to the root, node 1).")

    # ------------------------------------------------------------------ sampling
    def find(self, prefix_sum: Any) -> np.ndarray | int:
        """Leaf slot whose cumulative-sum interval contains ``prefix_sum`` (vectorised over a batch).

        With leaves p_0..p_{N-1} and C_j = p_0 + ... + p_{j-1}, returns the slot j with
        C_j <= prefix_sum < C_j + p_j. Descent from the root: go left when ``prefix_sum`` < left sum,
        else subtract the left sum and go right. A subtree of sum 0 is never entered (so a leaf of
        priority 0 is never returned while the total is > 0; values >= total end in the last non-empty leaf).

        Args:
            prefix_sum: a float or (B,) floats, normally in [0, total).

        Returns:
            int slot for a float, (B,) int64 slots for an array.
        """
        scalar = np.ndim(prefix_sum) == 0
        values = np.atleast_1d(np.asarray(prefix_sum, dtype=np.float64)).copy()
        # TODO(student): descend `depth` levels from node 1: go to 2i if value < tree[2i] (or tree[2i+1] == 0), else value -= tree[2i] and go to 2i+1.
        raise NotImplementedError("SumTree.find: descend `depth` levels from node 1: go to 2i if value < tree[2i] (or tree[2i+1] == 0), else value -= tree[2i] and go to 2i+1.")
        return int(slots[0]) if scalar else slots

    def __len__(self) -> int:
        return self.capacity

    def __repr__(self) -> str:
        return f"SumTree(capacity={self.capacity}, total={self.total:.6g})"
