"""A model heard in one transposition against as its card has it (``minor_tonic``: essen's minor tunes sit in C
minor, so the call is heard in C minor too and the better one answers), on the playing path, on a split's calls.

    PYTHONPATH=. .venv/bin/python bench/transposition_bits.py [--model models/essen] [--split validation] [--calls 300]

Each call (bars 1-4 of each tune of the split with 8 whole bars, played to the engine as training/as_played.py
plays it, a seed of its own) is answered by the engine as ``improvd continue`` answers it: ``one`` with the card
without ``minor_tonic`` (the engine's LSTM hears the call on the white keys alone), ``card`` as the card says. At
the phrase end the state handed over (the call and its silence heard in the chosen transposition: what the answer
is drawn from) hears the tune's real bars 5-8 in that transposition: ``continuation_bits`` is the mean -log2 of the
probability the LSTM gave each of their onset pitches among the pitches (no song cache); ``call_bits`` the same on
the call's own onset pitches as the chosen transposition heard them (improvd.core.styles, up to the closing
silence). Minor calls are those ``keys.call_key`` (the engine's reading of the call's key) calls minor. The
answers' as-played figures (``in_key_signature``, ``cadence``) and the two-sample test on all of them
(training.twosample, one answer a call) beside. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from improvd.core.encoding import HOLD, REST
from improvd.core.engine import Engine
from improvd.core.grid import bar_steps
from improvd.core.keys import call_key
from improvd.core.model import MINOR_TONIC_KEY, Model, load_model
from improvd.core.runtime import LSTMRuntime
from improvd.core.styles import Styles
from training import as_played, twosample
from training.compare import _calls, split_of
from training.corpus import DEFAULT_CACHE_DIR

LOG2 = np.log(2)


class Heard(Engine):
    """The engine, keeping at its phrase end what it handed over: (state, logits, transposition, the call's mode, the
    call's onset-pitch bits, the transposition's offset from the white keys)."""

    heard: tuple | None = None

    def _load(self, model, handover=None) -> None:
        super()._load(model, handover)
        if handover is not None:
            call = self._buffer.last_note_symbols()
            bar = bar_steps(self.settings.meter)
            mode = call_key(call, -(self._grid.step - len(call)) % bar, bar)[1]
            bits = self._styles.bits()[model.name][1]
            self.heard = (handover.runtime.snapshot(), handover.logits.copy(), self._shift, mode, bits, handover.offset)


def real_symbols(case: as_played.CallCase) -> list[str]:
    """The tune's bars 5-8 on the call's 16th grid: a pitch where a note starts, a hold while one sounds, else a
    rest."""
    call = case.call
    step = call.step_seconds
    first = call.bar_start_step + as_played.CALL_BARS * call.steps_per_bar
    symbols = [REST] * (as_played.CALL_BARS * call.steps_per_bar)
    for note in sorted(case.real, key=lambda n: n.start):
        start, end = round(note.start / step) - first, round(note.end / step) - first
        if 0 <= start < len(symbols):
            symbols[start] = str(note.pitch)
            for k in range(start + 1, min(end, len(symbols))):
                symbols[k] = HOLD
    return symbols


def continuation_bits(model: Model, heard: tuple, symbols: list[str]) -> list[float]:
    state, logits, shift = heard[:3]
    runtime = LSTMRuntime(model)
    runtime.restore(state)
    onsets = np.array([s.isdigit() for s in model.vocabulary.symbols])
    bits = []
    for symbol in symbols:
        index = model.vocabulary.played_index(symbol, shift)
        if symbol.isdigit():
            pitches = logits[onsets].astype(np.float64)
            top = pitches.max()
            bits.append(float((top + np.log(np.exp(pitches - top).sum()) - logits[index]) / LOG2))
        logits = runtime.step(index)
    return bits


def way(model: Model, calls: list[as_played.CallCase], one: bool) -> dict:
    """The figures of ``model`` (heard in one transposition with ``one``) on ``calls``."""
    answers, rows = [], []

    def make(settings, seed):
        engine = Heard(model, settings, seed=seed)
        if one:  # the candidates' path with one transposition: note for note the engine's own LSTM
            engine.set_styles(Styles({model.name: model}))
        made.append(engine)
        return engine

    for case in calls:
        made: list[Heard] = []
        answers.append(as_played.answer(case, make, as_played.seed_of(case.ident, 0)))
        heard = made[0].heard
        rows.append((heard[3] == "minor", heard[5], continuation_bits(model, heard, real_symbols(case)), heard[4]))
    result = {}
    for name, kept in (("all", [True] * len(calls)), ("minor", [row[0] for row in rows])):
        chosen = [row for row, keep in zip(rows, kept, strict=True) if keep]
        picked = [c for c, keep in zip(calls, kept, strict=True) if keep]
        played = as_played.figures(picked, [a for a, keep in zip(answers, kept, strict=True) if keep])
        result[name] = {
            "calls": len(chosen),
            "continuation_bits": round(float(np.mean([b for row in chosen for b in row[2]])), 4),
            "call_bits": round(float(np.mean(np.concatenate([row[3] for row in chosen]))), 4),
            "in_key_signature": played["in_key_signature"],
            "cadence": played["cadence"],
        }
    result["minor_transposition"] = sum(row[1] != 0 for row in rows)  # calls answered in it
    real = np.array([twosample.describe(case, as_played.real(case)) for case in calls])
    answered = np.array([twosample.describe(case, answer) for case, answer in zip(calls, answers, strict=True)])
    test = twosample.compare(real, answered, [case.ident for case in calls])
    result["two_sample"] = {key: test[key] for key in ("balanced_accuracy", "ci95", "auc")}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="models/essen", help="a model directory (default: %(default)s)")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--calls", type=int, default=300, help="calls at most (default: %(default)s)")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="parsed-corpus cache")
    args = parser.parse_args()
    model = load_model(args.model)
    collection, idents, _ = split_of(model, args.split, args.cache_dir)
    calls = _calls(idents, collection, args.calls)
    started = time.process_time()
    one = dataclasses.replace(model, card={k: v for k, v in model.card.items() if k != MINOR_TONIC_KEY})
    report = {"split": args.split, "one": way(one, calls, True), "card": way(model, calls, False)}
    report["cpu_seconds"] = round(time.process_time() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
