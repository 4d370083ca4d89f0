"""Session memory: the player's earlier calls of this session, mixed into the answer under the present call.

Each call is answered as a song of its own (improvd.core.songcache), so without this a motif played three
phrases ago is gone. As the Continuator learns a player, the memory keeps the player's last ``phrases`` calls
(never improvd's answers), each in the model's transposition of that call (the diatonic collection moved onto
the white keys), so calls in different keys meet in one key. While an answer is drawn it proposes what
followed the answer's present context (``MIN_ORDER`` to ``MAX_ORDER`` steps) in those calls, a call
``k`` phrases back counting ``FADE ** k`` as much as the last one, blended over the LSTM as the song cache
blends (Witten-Bell over the context lengths); the song cache (the present call) and the echo are mixed over
that, so the present call outweighs the memory. Like the echo it falls silent in the answer's last bar, which is
the cadence's (an earlier call's line would lead on past the cadence). The constants were chosen with bench/session_memory.py.

Bounded: at most ``phrases`` calls (64 at most by the settings table) of ``CALL_STEPS`` steps each, so a session
that runs for days holds a few hundred kilobytes; a step looks up one context per remembered call and follows
``MATCHES`` occurrences at most (a riff played over and over would otherwise make thousands).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence

import numpy as np

from improvd.core.encoding import HOLD, REST

MIN_ORDER = 3  # steps of context an earlier call must share with the answer's last steps
MAX_ORDER = 16
ALPHA = 1.0  # how much the memory doubts a context (the song cache's ALPHA, for the same role)
FADE = 0.7  # a call one phrase older counts this much as the one after it
CALL_STEPS = 256  # the steps of a call kept (its last ones): 16 bars of 4/4
MATCHES = 16  # earlier occurrences of a context looked at per step at most, the latest calls' first


class _Call:
    """One remembered call: its indices and, for each ``MIN_ORDER``-step context, the positions that followed it."""

    def __init__(self, indices: Sequence[int]) -> None:
        self.indices = tuple(indices[-CALL_STEPS:])
        self.followers: dict[tuple[int, ...], list[int]] = {}
        for position in range(MIN_ORDER, len(self.indices)):
            self.followers.setdefault(self.indices[position - MIN_ORDER : position], []).append(position)


class SessionMemory:
    """The player's last ``phrases`` calls (0: off, nothing kept), in the LSTM's indices of one vocabulary."""

    def __init__(self, phrases: int = 0) -> None:
        self._calls: deque[_Call] = deque(maxlen=max(phrases, 1))
        self._phrases = phrases
        self._vocabulary: tuple[str, ...] = ()
        self.quiet = False  # while True, ``mix`` proposes nothing (the answer's last bar, the cadence's)

    def __len__(self) -> int:
        """The calls held now."""
        return len(self._calls)

    def keep(self, phrases: int) -> None:
        """Hold the last ``phrases`` calls from now on (the oldest beyond them forgotten); 0 forgets all."""
        self._phrases = phrases
        kept = list(self._calls)[-phrases:] if phrases else []
        self._calls = deque(kept, maxlen=max(phrases, 1))

    def clear(self) -> None:
        """Forget every call (``cmd/forget``)."""
        self._calls.clear()

    def bind(self, vocabulary: Sequence[str]) -> None:
        """The model's vocabulary from now on: the calls are kept when it is the one they were indexed in."""
        if tuple(vocabulary) != self._vocabulary:
            self._vocabulary = tuple(vocabulary)
            self._calls.clear()

    def remember(self, call: Sequence[str], index_of: Callable[[str], int]) -> None:
        """Keep the player's ``call`` (symbols, from its first note) as ``index_of`` maps it into the model's
        transposition; its closing silence is left out. Nothing is kept while the memory is off."""
        played = _played(call)
        if self._phrases and len(played) > MIN_ORDER:
            self._calls.append(_Call([index_of(symbol) for symbol in played]))

    def mix(self, probabilities: np.ndarray, history: Sequence[int]) -> np.ndarray:
        """``probabilities`` with what followed the end of ``history`` (the song so far) in the remembered calls."""
        if self.quiet or not self._calls or len(history) < MIN_ORDER:
            return probabilities
        return interpolate(probabilities, self._match_lengths(history), MIN_ORDER, MAX_ORDER, ALPHA)

    def _match_lengths(self, history: Sequence[int]) -> list[tuple[int, int, float]]:
        """(symbol that followed, steps of context shared with ``history``'s end, the call's weight) per match."""
        tail = tuple(history[-MAX_ORDER:])
        context = tail[-MIN_ORDER:]
        matches = []
        for age, call in enumerate(reversed(self._calls)):
            weight = FADE**age
            for position in reversed(call.followers.get(context, ())[-(MATCHES - len(matches)) :]):
                length = MIN_ORDER
                while (
                    length < len(tail)
                    and position - length > 0
                    and call.indices[position - length - 1] == tail[-length - 1]
                ):
                    length += 1
                matches.append((call.indices[position], length, weight))
            if len(matches) >= MATCHES:
                break
        return matches


def _played(call: Sequence[str]) -> list[str]:
    """``call`` without its closing silence (the rest that ends it and the holds after)."""
    played = list(call)
    while played and played[-1] == HOLD:
        played.pop()
    if played and played[-1] == REST:
        played.pop()
    return played


def interpolate(
    probabilities: np.ndarray, matches: list[tuple[int, int, float]], low: int, high: int, alpha: float
) -> np.ndarray:
    """Witten-Bell over contexts of ``low`` to ``high`` steps, shortest first: at order k, what followed the
    ``matches`` (symbol, steps of context shared with now, weight) sharing at least k steps takes the share
    n / (n + alpha t) of the mixture (n their weight in all, t the symbols among them); the rest keeps what came
    before. The song cache (improvd.core.songcache) and the session memory both mix by it."""
    mixed = probabilities
    for k in range(low, high + 1):
        following: Counter[int] = Counter()
        for symbol, length, weight in matches:
            if length >= k:
                following[symbol] += weight
        if not following:
            break  # no longer context ending here was seen either
        total = sum(following.values())
        share = total / (total + alpha * len(following))
        mixed = mixed * (1.0 - share)
        for index, count in following.items():
            mixed[index] += share * count / total
    return mixed
