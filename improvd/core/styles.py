"""Which model answers with ``style = auto``: the one that predicted the call best.

Every candidate model has an LSTM runtime of its own that hears the call as the engine's does: from its song
start, a song end, then the call's steps moved by the transposition it will be answered in (the call's diatonic
collection on the white keys, as every model's major tunes were trained in C major) and folded into the
candidate's own vocabulary. A model whose minor tunes were trained on another tonic than A (its card's
``minor_tonic``: Essen's abc keys name only a tonic, so its minor tunes sit in C minor) is a candidate twice, the
second hearing the call moved so that the collection's A lies on that tonic; the transposition that predicted the
call better counts for the model, and the answer is drawn there (``Handover.offset``) and moved back. A model that
answers alone (any style but auto) is its own candidates in its transpositions (``own_styles``): the engine hears
and chooses its transposition by the same code (improvd.core.engine). Each
candidate keeps, for each step it heard, what it had predicted for it. At the phrase end ``choose`` hands over
the model whose score is lowest: the bits it spent on the call up to its closing silence (-log2 of the
probability it gave each step that came, summed: the call's likelihood under the model, as Bayes' rule weighs it)
plus its prior, the model card's ``style_prior_bits``
(-log2 of the prior probability of its style, up to a constant; 0 when the card has none). The closing silence
(from the first rest after the call's last onset) is the player leaving improvd its turn, not the style: its first
step costs every model some 12 bits, and it only blurs the choice. The priors are chosen on the collections'
validation calls (``improvd-train compare --calibrate``, models/README.md). Ties go by name. The handed-over state
is the one the engine's own LSTM would have after hearing the call, so the switch needs no re-prime.

The timing thread hears the candidate steps the engine gives leave for a tick (``advance``): a call that moved the
key is heard again, moved, a slice a tick (a few steps a candidate while it is played, at least ``STYLE_STEPS`` in
its closing silence), as improvd.core.priming hears it for the engine's own model. In the daemon those steps are
handed to its aside thread instead (``Styles.aside``), a slice a job, with the same outcome, and the bits of each
step are counted there too. ``choose`` hears what is left at once, but only for the candidates that may still lead:
bits are never negative, so one that spent more on the call so far than another on the whole call cannot
(``_Candidate.bound``); the choice is the one every candidate heard to the end would make. The daemon makes a
``Styles`` off the timing thread (loading and priming the candidates is slow).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from improvd.core.encoding import HOLD, REST, SONG_END, is_pitch
from improvd.core.lookback import Place
from improvd.core.model import MODEL_JSON, Model, ModelError, load_model, minor_tonic, shown
from improvd.core.runtime import LSTMRuntime
from improvd.core.schema import AUTO, MODEL_NAME

LOG2 = math.log(2)
STYLE_STEPS = 32  # candidate LSTM steps a tick of the silence at least, all candidates together (0.02-0.05 ms each)
SCORED_STEPS = 256  # a call's last steps scored (16 bars of 4/4): a call that goes on and on costs no more
Heard = tuple[np.ndarray, int, float | None]  # the logits before a call step, the index that came, the bits spent
# on it (None until counted: a step heard on the timing thread is counted when the call is scored)
PRIOR_KEY = "style_prior_bits"  # the model card's key of a candidate's prior
MINOR_ON_WHITE_KEYS = 9  # A: the tonic of a minor call moved onto the white keys


def prior_of(model: Model) -> float:
    """The bits added to ``model``'s score of a call (its card's ``style_prior_bits``, else 0); ModelError for one
    that is no finite number."""
    prior = model.card.get(PRIOR_KEY, 0.0)
    if isinstance(prior, bool) or not isinstance(prior, (int, float)) or not math.isfinite(prior):
        raise ModelError(f"{model.path / MODEL_JSON}: {PRIOR_KEY} must be a finite number of bits, got {shown(prior)}")
    return float(prior)


def transpositions(model: Model) -> tuple[int, ...]:
    """The semitones, beside the call's move onto the white keys, ``model`` hears a call in: 0, and for a model whose
    card's ``minor_tonic`` is not A the move that takes the white keys' A there (-6..5: C is +3); ModelError for a
    ``minor_tonic`` that names no tonic."""
    offset = moved(minor_tonic(model.card, model.path / MODEL_JSON) - MINOR_ON_WHITE_KEYS, 0)
    return (0,) if offset == 0 else (0, offset)


def own_styles(model: Model) -> Styles | None:
    """The candidates of ``model`` answering alone (any style but auto): the model itself in each of its
    ``transpositions``, heard and chosen as style auto hears and chooses each model; None for a model heard in one
    (the engine's own LSTM hears the call). Slow (primes a runtime for each): the daemon makes it off the timing
    thread."""
    return Styles({model.name: model}) if len(transpositions(model)) > 1 else None


def moved(shift: int, offset: int) -> int:
    """The transposition ``offset`` semitones from ``shift``, as the smallest move (-6..5)."""
    return (shift + offset + 6) % 12 - 6


@dataclass
class Handover:
    """What the engine needs to answer with a candidate at once: a runtime in the state the engine's own would be
    in after hearing the call, a second one for its key changes, the state after a song's leading song ends, the
    logits of the next step, and the semitones its transposition lies from the call's white keys (``moved``)."""

    model: Model
    runtime: LSTMRuntime
    spare: LSTMRuntime
    song_start: Any
    logits: np.ndarray
    offset: int = 0


class _Job:
    """Steps of one candidate heard on the daemon's aside thread (improvd.daemon.aside), on a twin of its runtime:
    the candidate takes the result (``state``, ``logits``, ``heard``, each step's bits already counted there) once
    ``done``, and never one ``cancelled``."""

    def __init__(
        self, runtime: LSTMRuntime, logits: np.ndarray | None, indices: list[int], retired: object = None
    ) -> None:
        """``runtime``: the candidate's, whose state now (taken here) the job starts from, on a twin of it;
        ``retired``: what the candidate no longer needs, let go on the aside thread (freeing a call's steps heard,
        a few hundred arrays, held a call's first tick for 50 microseconds)."""
        self.retired = retired
        self.cancelled = False
        self.done = False
        self.runtime, self.state, self.logits, self.indices = runtime, runtime.snapshot(), logits, indices
        self.heard: list[Heard] = []

    def slices(self) -> Iterator[None]:
        """One LSTM step a slice."""
        self.retired = None
        runtime = self.runtime.twin(self.state)
        logits = self.logits
        for index in self.indices:
            if logits is not None:
                self.heard.append((logits, index, float(_bits_of(logits[None], np.array([index]))[0])))
            logits = runtime.step(index)
            yield
        self.state, self.logits = runtime.snapshot(), logits
        self.done = True


class _Candidate:
    """One model's runtime following the call in one of its transpositions (``offset`` semitones from the call's
    white keys), and what it predicted for each step of it."""

    def __init__(self, name: str, model: Model, offset: int = 0) -> None:
        self.name, self.model, self.offset = name, model, offset
        self.prior = prior_of(model)
        self.runtime = LSTMRuntime(model)
        self.song_end = model.vocabulary.index[SONG_END]
        self.runtime.prime([self.song_end] * model.song_gap)  # a call starts as a song does in training
        self.song_start = self.runtime.snapshot()
        # a call's first song end, heard once: the same state for every call where the place in the bar is not heard
        self._opened = (
            None if model.input == "lookback" else (self.runtime.step(self.song_end), self.runtime.snapshot())
        )
        self._onset = np.array([is_pitch(s) for s in model.vocabulary.symbols])
        self._rest, self._hold = model.vocabulary.index[REST], model.vocabulary.index[HOLD]
        self.logits: np.ndarray | None = None
        self.pending: deque[int] = deque()
        self._heard: deque[Heard] = deque(maxlen=SCORED_STEPS)  # the call's last SCORED_STEPS
        self._retired: deque[Heard] | None = None  # the last call's, until a job lets it go (``hand``)
        self.job: _Job | None = None  # steps handed to the aside thread, their result not taken yet

    def restart(self, indices: list[int], place: Place) -> None:
        """Hear, from the song start, a song end and then ``indices``, the first at ``place`` in its bar (queued for
        ``advance``; the song end is heard at once for a model that does not hear the place in the bar)."""
        if self.job is not None:
            self.job.cancelled = True  # its result is never taken
            self.job = None
        self._retired, self._heard = self._heard, deque(maxlen=SCORED_STEPS)
        if self._opened is None:
            self.runtime.restore(self.song_start)
            self.runtime.seat(place)
            self.logits = None
            self.pending = deque([self.song_end, *indices])
        else:
            logits, opened = self._opened
            self.runtime.restore(opened)
            self.logits = logits.copy()
            self.pending = deque(indices)

    def advance(self, steps: int) -> int:
        """Hear at most ``steps`` of what is queued; returns how many."""
        self._retired = None
        done = min(steps, len(self.pending))
        for _ in range(done):
            index = self.pending.popleft()
            if self.logits is not None:
                self._heard.append((self.logits, index, None))
            self.logits = self.runtime.step(index)
        return done

    def hand(self, aside: Callable[[_Job], None]) -> None:
        """Take the result of the job handed aside before, if it is done; then, unless it goes on, hand ``aside``
        everything queued."""
        self._take()
        if self.job is None and self.pending:
            indices = list(self.pending)
            self.pending.clear()
            self.job = _Job(self.runtime, self.logits, indices, self._retired)
            self._retired = None
            aside(self.job)

    def recall(self) -> None:
        """The job handed aside: its result taken if it is done, else its steps queued here again, before those
        queued since (it goes on for nothing)."""
        self._take()
        if self.job is not None:
            self.job.cancelled = True
            self.pending.extendleft(reversed(self.job.indices))
            self.job = None

    def _take(self) -> None:
        job = self.job
        if job is not None and job.done:
            self.runtime.restore(job.state)
            self.logits = job.logits
            self._heard.extend(job.heard)
            self.job = None

    def bits(self) -> tuple[np.ndarray, np.ndarray]:
        """(the bits spent on each of the call's last ``SCORED_STEPS`` steps up to its closing silence, those spent on
        each onset pitch among them: -log2 of its probability among the pitches, as improvd-train evaluate counts
        them)."""
        logits, indices, came = self._scored()
        onsets = self._onset[indices]
        pitch_logits = logits[onsets][:, self._onset]
        return (_logsumexp(logits) - came) / LOG2, (_logsumexp(pitch_logits) - came[onsets]) / LOG2

    def _scored(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(the logits before each step scored, the index that came, its logit) up to the closing silence."""
        heard = list(self._heard)[: self._closing_silence()]
        if not heard:
            return np.zeros((0, len(self._onset))), np.zeros(0, int), np.zeros(0)
        logits = np.stack([logits for logits, *_ in heard]).astype(np.float64)
        indices = np.array([index for _, index, _ in heard])
        return logits, indices, logits[np.arange(len(indices)), indices]

    def _closing_silence(self) -> int:
        """Where the call's closing silence starts among the steps heard: its first rest after the last onset (the
        length of what was heard when the call ends on a sounding note)."""
        start = len(self._heard)
        for k in range(len(self._heard) - 1, -1, -1):
            index = self._heard[k][1]
            if index == self._rest:
                start = k
            elif index != self._hold:
                break
        return start

    def score(self) -> float:
        """The bits spent on the call heard up to its closing silence (``bits``' first), plus the prior."""
        return self._sum(0, self._closing_silence())

    def bound(self) -> float:
        """At most what ``score`` will be once what is pending is heard too (``score`` when nothing is): the steps
        heard up to their closing silence, less those the window will drop. Bits are never negative, and hearing
        more only moves the closing silence on."""
        if not self.pending:
            return self.score()
        drop = max(0, len(self._heard) + len(self.pending) - SCORED_STEPS)
        return self._sum(drop, self._closing_silence())

    def _sum(self, start: int, stop: int) -> float:
        """The bits spent on the steps heard from ``start`` to ``stop``, plus the prior: those heard aside were
        counted there, the rest are counted now (and kept, for the next sum)."""
        heard = self._heard
        missing = [k for k in range(start, stop) if heard[k][2] is None]
        if missing:
            logits = np.array([heard[k][0] for k in missing], np.float64)
            counted = _bits_of(logits, np.array([heard[k][1] for k in missing])).tolist()
            for k, bits in zip(missing, counted, strict=True):
                heard[k] = (heard[k][0], heard[k][1], bits)
        return float(np.array([heard[k][2] for k in range(start, stop)], np.float64).sum()) + self.prior


def _bits_of(logits: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The bits each row of ``logits`` spent on the index of ``indices`` that came after it (float64; a row's
    bits are the same whatever rows are counted with it)."""
    logits = np.asarray(logits, np.float64)
    return (_logsumexp(logits) - logits[np.arange(len(indices)), indices]) / LOG2


def _logsumexp(logits: np.ndarray) -> np.ndarray:
    top = logits.max(axis=1, initial=-np.inf) if logits.size else np.zeros(len(logits))
    return top + np.log(np.exp(logits - top[:, None]).sum(axis=1))


class Styles:
    """The candidate models of ``style = auto``, each hearing the call as the player plays it.

    With ``aside`` (the daemon's thread for work off the timing thread, set by the engine) ``advance`` hands the
    steps to that thread instead of taking them, each candidate's as a job on a copy of its state, taken back at a
    later ``advance`` once done. What the candidates hear, and when the engine deems them caught up (``caught_up``:
    the steps ``advance`` was given leave for), are the same either way: the thread's timing only decides how much
    ``choose`` has left to hear itself."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        """``models`` by name (at least one); each gets a runtime primed with its song ends for each of its
        ``transpositions`` (slow)."""
        if not models:
            raise ValueError("style auto needs at least one model under the models path")
        self._candidates = [
            _Candidate(name, model, offset)
            for name, model in sorted(models.items())
            for offset in transpositions(model)
        ]
        self.shift: int | None = None  # the transposition the call is heard in; None: no call heard yet
        self.aside: Callable[[_Job], None] | None = None
        self._behind = 0  # steps queued that no ``advance`` has given leave for yet

    @property
    def names(self) -> list[str]:
        return list(dict.fromkeys(candidate.name for candidate in self._candidates))

    @property
    def hearings(self) -> int:
        """How many runtimes hear each step of the call: each model once for each of its ``transpositions``."""
        return len(self._candidates)

    def restart(self, shift: int, call: list[str], place: Place) -> None:
        """A call heard afresh: every candidate, from its song start, hears a song end and ``call`` (the player's
        symbols so far, the first at ``place`` in its bar) moved by ``shift``, in slices (``advance``)."""
        self.shift = shift
        for candidate in self._candidates:
            moves = moved(shift, candidate.offset)
            candidate.restart([candidate.model.vocabulary.played_index(symbol, moves) for symbol in call], place)
        self._behind = sum(len(candidate.pending) for candidate in self._candidates)

    def feed(self, symbol: str) -> None:
        """One more step of the call, heard after those given (in the transposition of the last ``restart``)."""
        for candidate in self._candidates:
            moves = moved(self.shift or 0, candidate.offset)
            candidate.pending.append(candidate.model.vocabulary.played_index(symbol, moves))
        self._behind += len(self._candidates)

    def advance(self, steps: int = STYLE_STEPS) -> None:
        """Give leave to hear at most ``steps`` of what is queued (``behind``: the engine's decisions hang on it, the
        same with ``aside`` or without), the candidates furthest behind first, heard here; with ``aside``, each
        candidate's whole queue is handed to it instead (``_Candidate.hand``; a step a slice there, keeping off the
        interpreter around each send: improvd.daemon.aside), ahead of the leave: a call heard again from a key moved
        in its last 16ths is heard there by the phrase end, not in ``choose`` on the timing thread (up to 159 steps,
        11 ms with the shipped models, paced). Where that thread has fallen behind by more than ``steps`` (its job not
        done), here, as without it."""
        self._behind -= min(steps, self._behind)
        for candidate in sorted(self._candidates, key=lambda c: -len(c.pending)):
            behind = candidate.job is not None and not candidate.job.done and len(candidate.pending) > steps
            share = min(max(steps, 0), len(candidate.pending))
            if self.aside is not None and not behind:
                candidate.hand(self.aside)
                steps -= share
            else:
                candidate.recall()
                steps -= candidate.advance(max(steps, 0))

    @property
    def behind(self) -> int:
        """Steps given that ``advance`` has not given leave for yet."""
        return self._behind

    @property
    def caught_up(self) -> bool:
        """``advance`` has given leave for every step given so far (all heard, without ``aside``)."""
        return self._behind == 0

    @property
    def busy_aside(self) -> bool:
        """A job handed aside is not done yet."""
        return any(c.job is not None and not c.job.done for c in self._candidates)

    def _best(self) -> dict[str, tuple[float, _Candidate]]:
        """Each model's (score, transposition) that spent the fewest bits on the call (the first of its
        ``transpositions`` on a tie), by name, with all that is queued heard."""
        best: dict[str, tuple[float, _Candidate]] = {}
        for candidate in self._candidates:
            candidate.recall()
            candidate.advance(len(candidate.pending))
            score = candidate.score()
            if candidate.name not in best or score < best[candidate.name][0]:
                best[candidate.name] = (score, candidate)
        return best

    def bits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each model's bits on each step of the call heard and on each of its onset pitches (``_Candidate.bits``),
        in its best transposition, by name: what ``scores`` sums, for choosing the priors (training/compare.py)."""
        return {name: candidate.bits() for name, (_, candidate) in self._best().items()}

    def scores(self) -> dict[str, float]:
        """Each model's score of the call so far (its bits in its best transposition plus its prior; lower is
        better)."""
        return {name: score for name, (score, _) in self._best().items()}

    def _leader(self) -> _Candidate:
        """The candidate of the model with the lowest score (the first by name, then of its ``transpositions``, on a
        tie), as ``_best`` finds it, but hearing what is queued only for the candidates that may still lead: the
        one with the lowest ``bound`` hears the rest, until the lowest is a candidate heard to the end."""
        keys = {candidate: (candidate.bound(), candidate.name, k) for k, candidate in enumerate(self._candidates)}
        while (leader := min(keys, key=keys.__getitem__)).pending:
            leader.advance(len(leader.pending))
            keys[leader] = (leader.score(), *keys[leader][1:])
        return leader

    def choose(self) -> Handover:
        """At the phrase end: hand over the model with the lowest score (the first by name on a tie) in its best
        transposition, with the call heard to its end (``_leader``: a candidate that cannot lead is not). The
        candidates then wait for the next ``restart``."""
        for candidate in self._candidates:
            candidate.recall()
        self._behind = 0
        best = self._leader()
        self.shift = None
        spare = best.runtime.twin()
        spare.reset()
        return Handover(best.model, best.runtime.twin(), spare, best.song_start, best.logits, best.offset)


def models_under(root: Path) -> dict[str, Model]:
    """Every model directory (a folder holding model.json) right under ``root``, loaded, by folder name; a folder
    that fails to load raises ModelError naming it, and a root without any model is a ModelError too."""
    try:
        folders = sorted(p for p in Path(root).iterdir() if (p / MODEL_JSON).is_file())
    except OSError as error:
        raise ModelError(f"{root}: cannot list the models path ({error.strerror or error})") from None
    if not folders:
        raise ModelError(f"{root}: no model directories (folders holding {MODEL_JSON}) for style auto")
    return {folder.name: load_model(folder) for folder in folders}


def load_style(style: str | None, model: Path, models_path: Path) -> tuple[Model, Styles | None]:
    """(the model that answers first, the candidates of style auto or None) for ``style``: None (the model at
    ``model``), ``auto`` (every model under ``models_path``; the one at ``model`` until a call chooses) or a
    model's folder name under ``models_path``. Errors are ModelErrors naming what is missing."""
    if style is None:
        return load_model(model), None
    if style == AUTO:
        return load_model(model), Styles(models_under(models_path))
    if not MODEL_NAME.fullmatch(style) or not (Path(models_path) / style / MODEL_JSON).is_file():
        raise ModelError(f"style {style!r}: no such model under {models_path} (give auto or a model's folder name)")
    return load_model(Path(models_path) / style), None
