"""``recipe.auto``: the choice between recipes, on cheap fake candidates (no backbone).

Each fake candidate is a two-layer Keras model (global average, then a fixed dense layer)
that classifies an image by its mean brightness against its own threshold, so which one is
right on which images is set by the test, not learned.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from ftutils import recipe, training
from ftutils.data import ImageData

SIZE = 8


def _images(means, labels) -> ImageData:
    """Two classes of uniform grey images of the given brightness."""
    pixels = (
        np.ones((len(means), SIZE, SIZE, 3), "uint8")
        * np.asarray(means, "uint8")[:, None, None, None]
    )
    return ImageData(pixels, np.asarray(labels, "int64"), ("dark", "bright"))


def _threshold_model(threshold: float) -> keras.Model:
    """Class 1 ("bright") when the image's mean brightness is above ``threshold``."""
    image = keras.Input((SIZE, SIZE, 3))
    mean = keras.layers.GlobalAveragePooling2D()(image)
    dense = keras.layers.Dense(2, activation="softmax")
    output = dense(mean)
    model = keras.Model(image, output)
    # logit_1 - logit_0 = 3 channels x 0.1 x mean - 0.3 x threshold
    dense.set_weights([np.array([[-0.05, 0.05]] * 3, "float32"),
                       np.array([0.15 * threshold, -0.15 * threshold], "float32")])  # fmt: skip
    return model


def _candidate(name, threshold, calls, seconds=1.0, clock=None):
    def train(train_data, val_data, work_dir):
        calls.append(name)
        if clock is not None:
            clock.now += seconds
        return _threshold_model(threshold), training.TrainingRecord()

    return recipe.Candidate(name, f"thresholds brightness at {threshold}", train)


class _Clock:
    now = 0.0

    def __call__(self):
        return self.now


# Images of brightness 150 decide: "strict" (threshold 200) calls them dark, "loose" (100)
# bright. On validation they are dark; on test they are bright.
TRAIN = _images([50, 250], [0, 1])
VAL = _images([50, 150, 150, 250], [0, 0, 0, 1])
TEST = _images([50, 150, 150, 150, 250], [0, 1, 1, 1, 1])


def test_the_model_better_on_validation_is_chosen_though_worse_on_test():
    calls = []
    strict, loose = _candidate("strict", 200, calls), _candidate("loose", 100, calls)
    model, choice = recipe.auto(TRAIN, VAL, candidates=[loose, strict])
    assert calls == ["loose", "strict"]  # both trained, in the order given
    assert choice.chosen.name == "strict"
    assert [t.val_accuracy for t in choice.tried] == [0.5, 1.0]
    assert "the highest validation accuracy (1.000 against loose 0.500) on 4" in choice.chosen.why
    assert choice.tried[0].status == "not chosen" and "below strict's 1.000" in choice.tried[0].why
    # on the test images the other one would have been better: the test set played no part
    assert training.accuracy(model, TEST) == 0.4
    assert training.accuracy(_threshold_model(100), TEST) == 1.0


def test_a_tie_goes_to_the_candidate_tried_first():
    calls = []
    first, second = _candidate("first", 200, calls), _candidate("second", 210, calls)
    _, choice = recipe.auto(TRAIN, VAL, candidates=[first, second])
    assert choice.chosen.name == "first"
    assert "a tie goes to the candidate tried first" in choice.chosen.why
    assert "tied with first" in choice.tried[1].why


def test_the_budget_skips_later_candidates_but_never_the_first():
    calls, clock = [], _Clock()
    slow = _candidate("slow", 100, calls, seconds=50, clock=clock)
    never = _candidate("never", 200, calls, seconds=50, clock=clock)
    _, choice = recipe.auto(TRAIN, VAL, candidates=[slow, never], budget_s=30, clock=clock)
    assert calls == ["slow"]
    assert choice.chosen.name == "slow" and "the only candidate trained" in choice.chosen.why
    skipped = choice.tried[1]
    assert skipped.status == "skipped" and skipped.val_accuracy is None
    assert "took 50 s, the budget (--budget-s) is 30 s" in skipped.why


def test_the_same_call_again_reuses_finished_candidates(tmp_path: Path):
    calls = []
    candidates = [_candidate("loose", 100, calls), _candidate("strict", 200, calls)]
    recipe.auto(TRAIN, VAL, candidates=candidates, run_dir=tmp_path)
    assert calls == ["loose", "strict"]
    (tmp_path / "strict" / recipe.CANDIDATE_RESULT).unlink()  # as if killed while training it
    model, choice = recipe.auto(TRAIN, VAL, candidates=candidates, run_dir=tmp_path)
    assert calls == ["loose", "strict", "strict"]  # only the unfinished one trained again
    assert [t.resumed for t in choice.tried] == [True, False]
    assert choice.chosen.name == "strict" and training.accuracy(model, VAL) == 1.0
    # a finished candidate's model is a plain Keras file
    again = keras.saving.load_model(tmp_path / "loose" / recipe.CANDIDATE_MODEL)
    assert training.accuracy(again, VAL) == 0.5


def test_candidates_must_be_named_apart():
    calls = []
    with pytest.raises(ValueError, match="must differ"):
        recipe.auto(TRAIN, VAL, candidates=[_candidate("a", 1, calls), _candidate("a", 2, calls)])
