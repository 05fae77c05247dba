"""Slow, obvious twins for the tests: tile statistics of an element mask, tile by tile."""
import numpy as np


def tile_stats_brute(mask: np.ndarray, bp: int, bc: int) -> tuple:
    """(non-empty tiles, full tiles, max and min non-empty tiles of a query-tile row, query tiles,
    allowed pairs) of one [M, N] boolean mask at query tiles of bp x key tiles of bc."""
    m, n = mask.shape
    rows = -(-m // bp)
    per_row, full = [], 0
    for i in range(rows):
        count = 0
        for j in range(-(-n // bc)):
            tile = mask[i * bp:(i + 1) * bp, j * bc:(j + 1) * bc]
            count += bool(tile.any())
            full += bool(tile.all())
        per_row.append(count)
    return (float(sum(per_row)), float(full), float(max(per_row)), float(min(per_row)), rows, float(mask.sum()))


def as_tuple(s) -> tuple:
    return (float(s.tiles), float(s.full_tiles), float(s.max_row_tiles), float(s.min_row_tiles), int(s.rows),
            float(s.allowed))
