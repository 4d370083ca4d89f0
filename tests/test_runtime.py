"""The numpy LSTM's step: what it returns hangs on the state and the symbol alone (Keras parity: test_parity.py)."""

from __future__ import annotations

import numpy as np
import pytest

from improvd.core.model import DEFAULT_MODEL_DIR, load_model
from improvd.core.runtime import LSTMRuntime


@pytest.mark.parametrize("which", ["tiny", "shipped"])
def test_a_step_gives_the_same_logits_whichever_half_of_the_kernel_it_reads_first(tiny_model_dir, which):
    """The runtime reads each recurrent kernel's halves in turn in opposite orders (for the core's cache): a twin one
    step out of turn, and the runtime itself after a restore, must step to the very same logits, or the answer would
    hang on how many steps a runtime took before (the candidates' jobs aside step twins)."""
    model = load_model(tiny_model_dir if which == "tiny" else DEFAULT_MODEL_DIR)
    rng = np.random.default_rng(4)
    indices = [int(i) for i in rng.integers(0, len(model.vocabulary), 40)]
    runtime = LSTMRuntime(model)
    runtime.prime(indices[:7])  # an odd count: the twin below starts in the other order
    twin = runtime.twin()
    twin.step(indices[7])
    twin = twin.twin(runtime.snapshot())  # the runtime's state, reached after one more step than it took
    saved = runtime.snapshot()
    ours = [runtime.step(i) for i in indices[8:]]
    theirs = [twin.step(i) for i in indices[8:]]
    runtime.step(indices[0])
    runtime.restore(saved)
    again = [runtime.step(i) for i in indices[8:]]
    for a, b, c in zip(ours, theirs, again, strict=True):
        assert np.array_equal(a, b) and np.array_equal(a, c)
