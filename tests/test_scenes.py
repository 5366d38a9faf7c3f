"""scenes (bench): generated scenes are deterministic and every variant is the edit its name says."""

import numpy as np
from scenes import VARIANTS, crop, jpeg, scene


def test_scenes_are_deterministic_and_distinct():
    one, again, other = (scene(np.random.default_rng(seed), (120, 90)) for seed in (1, 1, 2))
    assert one.size == (120, 90) and np.array_equal(np.asarray(one), np.asarray(again))
    assert not np.array_equal(np.asarray(one), np.asarray(other))


def test_variants_change_what_their_names_say():
    image = scene(np.random.default_rng(3), (200, 100))
    assert VARIANTS["half"](image).size == (100, 50) and VARIANTS["double"](image).size == (400, 200)
    assert crop(image, 0.9, 1.0, 1.0, 0.0).size == (180, 100)
    assert np.array_equal(np.asarray(crop(image, 0.9, 0.9, 0, 0)), np.asarray(image)[:90, :180])
    assert np.asarray(VARIANTS["brighter15"](image)).mean() > np.asarray(image).mean()
    assert jpeg(image, 60).size == image.size
