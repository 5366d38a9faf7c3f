"""What a user chooses not to train on: too small, too elongated, blank, or a copy of another image.

Every filter is off by default. An image a filter drops is not a row: it is a line of
``failures.tsv`` with stage ``filter`` and a reason naming the config key, so that every indexed
file is still accounted for, and the failure fraction (which counts what could not be read) leaves
them out. The size, aspect and blank filters run in the shard job (the size and aspect from the
file's header, upright, before any pixel is decoded); dropping duplicates needs every row's hash,
so the merge does it (:mod:`img2npz.duplicates`), keeping the first copy in the index order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

from img2npz.contract import FILTER_STAGE as STAGE
from img2npz.decode import ImageFailure

DROP_DUPLICATES = ("none", "exact", "near")


@dataclass(frozen=True)
class Filters:
    """The config's ``filters`` section (its defaults, all off, are the schema's)."""

    min_width: int | None = None
    min_height: int | None = None
    max_aspect: float | None = None
    drop_constant: bool = False
    drop_duplicates: str = "none"

    @classmethod
    def from_config(cls, section: Mapping) -> Filters:
        return cls(**{key: section[key] for key in asdict(cls()) if key in section})

    def shard_key(self) -> dict:
        """The filters the shard job applies: part of the key a kept row is reused under."""
        return {key: value for key, value in asdict(self).items() if key != "drop_duplicates"}

    @property
    def checks_size(self) -> bool:
        return self.min_width is not None or self.min_height is not None or self.max_aspect is not None

    def admit_size(self, size: tuple[int, int]) -> None:
        """Raise the ``filter`` failure of an upright source of ``size`` (width, height)."""
        width, height = size
        if self.min_width is not None and width < self.min_width:
            raise ImageFailure(STAGE, f"{width}x{height}: narrower than filters.min_width ({self.min_width})")
        if self.min_height is not None and height < self.min_height:
            raise ImageFailure(STAGE, f"{width}x{height}: lower than filters.min_height ({self.min_height})")
        if self.max_aspect is not None and min(size) > 0:
            aspect = max(size) / min(size)
            if aspect > self.max_aspect:
                raise ImageFailure(
                    STAGE, f"{width}x{height}: aspect {aspect:.3g} over filters.max_aspect ({self.max_aspect:g})"
                )

    def admit_pixels(self, counts: np.ndarray) -> None:
        """Raise the ``filter`` failure of a decoded row with these (3, 256) value counts."""
        if self.drop_constant and bool(((counts > 0).sum(axis=1) == 1).all()):
            raise ImageFailure(STAGE, "one colour throughout (filters.drop_constant)")


NO_FILTERS = Filters()
