"""Dead air: from the call's last note off to the answer's first note, through the engine as the daemon plays it.

Each call is played to ``improvd.core.engine.Engine`` in simulated time (improvd.core.simulate.perform, the
daemon's loop without the waiting) at ``--bpm`` (100), with the shipped model: the first 4 bars of tunes of
models/essen/model.json's ``test_tunes`` (real Essen phrases from music21's corpus: most end on a bar line) and
hand-made phrases that end on a bar line and off it. Three ways to take turns:

* ``silence``: ``phrase_end = "silence"`` (before: ``phrase_end_steps`` of silence, the answer from the next bar line);
* ``music``: ``phrase_end = "music"``, the default (the phrase end the music tells: a call that fills 4 or 8 bars is
  answered from their bar line at its grace, 10 ms with exact playing; other calls by the next beat);
* ``bars``: ``turns = 4`` (the player's 4 bars, then improvd's from the next bar line).

For each, ``first_call`` (the call played to a fresh engine: a call off the white keys waits for the spare LSTM's
priming) and ``call_again`` (the same call played a second time in the session, ``AGAIN_BARS`` bars after the
first: improvd already hears it in its key): the dead air's median, p90 and max in beats (quarter notes) and
seconds, split by where the call ends (``on_bar_line``: its last note off on a bar line), how many answers came in
the middle of a call (a barge-in: the phrase end came too soon) and which calls had no answer note after their
end, and for ``bars`` the extra bars: how many bars after the player's 4th bar the answer's first note from there (a
16th's pickup at most before it) came (goal 0).

``bars_followed``: ``turns = 4`` with ``clock = "follow"`` and ``bpm`` 100, the same calls played at ``FOLLOWED``
tempi off it (the engine ticked where it says its next boundary is, as the daemon does): the extra bars, counted in
the player's bars from the player's bar line after its 4th (goal 0: the answer's first note on that bar line, or a
16th's pickup before it), and the player's 16ths the turn was cut short by (the last 16th or two are not heard).

``false_ends`` (``silence`` and ``music``): the first 8 bars of ``--validation`` tunes of the model's validation
split (never its test tunes), each played whole as one call with its own rests, legato as written (``gate`` 1) and
detached (each note released at ``gate`` 0.75 or 0.5 of its length, a 16th early for a quarter at 0.75): the share of
calls whose phrase end came before their last note off (the answer barging in on a player who had not finished);
``jitter``, the same legato and detached with each onset and release moved off the grid by up to ``JITTER`` (uniform,
seeded): a late note after a phrase's bar line is what the bar line's grace must wait for.
Prints one JSON object. Goals (issue 28): ``music`` median <= 1 beat, ``bars`` extra bars 0. About 100 s.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from improvd.core.engine import Engine, Settings
from improvd.core.grid import bar_steps
from improvd.core.model import DEFAULT_MODEL_DIR, load_model
from improvd.core.notes import PlayedNote
from improvd.core.simulate import call_messages, drive, notes_of, perform

CALL_BARS = 4
PLAYED_BARS = 8  # false ends: each validation tune's first 8 bars, one call
GATES = (1.0, 0.75, 0.5)  # false ends: each note sounds this share of its written length
JITTER = 0.015  # seconds: false ends played by a human too: each onset and release this far off the grid at most
AGAIN_BARS = 8  # the second playing of a call starts this many bars after the first one's end
MODES = {"silence": {"phrase_end": "silence"}, "music": {"phrase_end": "music"}, "bars": {"turns": CALL_BARS}}
FOLLOWED = (88.0, 112.0)  # bars_followed: the tempi the calls are played at, with ``bpm`` 100


def hand_made() -> list[tuple[str, list[tuple[int, int, int]]]]:
    """(name, notes as (pitch, first 16th, 16ths)) in 4/4: phrases ending on a bar line and off it."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    quarters = [(scale[k % 8], 4 * k, 4) for k in range(15)] + [(60, 60, 4)]  # 4 bars of quarters
    long_end = [(scale[k % 8], 4 * k, 4) for k in range(12)] + [(67, 48, 16)]  # 3 bars, then a whole note
    eighths = [(scale[(k * 2) % 8], 2 * k, 2) for k in range(30)] + [(60, 60, 2)]  # ends on the last 8th of bar 4
    half_end = [(scale[k % 8], 4 * k, 4) for k in range(13)] + [(64, 52, 8)]  # a half note to beat 4 of bar 4
    arpeggio = [(p, 2 * k, 2) for k, p in enumerate([60, 64, 67, 72, 67, 64] * 4)] + [(60, 48, 8)]  # ends mid-bar
    dotted = [(scale[k % 8], 6 * k, 6) for k in range(10)] + [(72, 60, 3)]  # ends a 16th before the bar line
    held = [*quarters[:-1], (60, 60, 8)]  # its last note held a beat past the bar line
    return [
        ("quarters_to_bar_line", quarters),
        ("whole_note_to_bar_line", long_end),
        ("eighths_to_bar_line", eighths),
        ("half_note_to_beat_4", half_end),
        ("arpeggio_to_beat_3", arpeggio),
        ("dotted_to_a_16th_before", dotted),
        ("held_a_beat_past_the_bar_line", held),
    ]


def calls(bpm: float, tunes: int) -> list[tuple[str, str, list[PlayedNote], int]]:
    """(name, meter, notes in seconds at ``bpm``, the grid step of the bar line after the 4th bar)."""
    step = 60.0 / bpm / 4
    found = [
        (name, "4/4", [PlayedNote(p, s * step, (s + n) * step, 80) for p, s, n in notes], 64)
        for name, notes in hand_made()
    ]
    if tunes:
        from training.as_played import test_calls  # music21: only when Essen phrases are asked for

        idents = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())["test_tunes"]
        for case in test_calls(idents[: tunes * 3])[:tunes]:
            call, scale = case.call, case.call.bpm / bpm
            notes = [PlayedNote(n.pitch, n.start * scale, n.end * scale, n.velocity) for n in call.notes]
            turn_end = call.bar_start_step + CALL_BARS * call.steps_per_bar
            found.append((case.ident, case.meter, notes, turn_end))
    return found


def measure(model, mode: dict, bpm: float, tunes: int, seed: int, again: bool) -> dict:
    """The dead air of each call in one mode, summed up: the call played once to a fresh engine, or (``again``) a
    second time in the same session, whole bars after the first answer (improvd already hears it in its key)."""
    beat = 60.0 / bpm
    on_bar, off_bar, extra, early, unanswered = [], [], [], 0, []
    for name, meter, notes, turn_end in calls(bpm, tunes):
        engine = Engine(model, Settings(bpm=bpm, meter=meter, min_call_steps=8, response_bars=4, **mode), seed=seed)
        step, bar = engine.step_seconds(), bar_steps(meter)
        if again:
            notes, turn_end, response, events = _played_again(engine, notes, turn_end)
        else:
            performance = perform(engine, notes)
            response, events = performance.response, performance.events
        early += any(e.name == "barge_in" for e in events)
        last_off = max(n.end for n in notes)
        after = [n.start for n in response if n.start >= last_off - 1e-9]
        if not after:  # the whole answer came inside the call
            unanswered.append(name)
            continue
        first = min(after)
        (on_bar if round(last_off / step) % bar == 0 else off_bar).append(first - last_off)
        entry = min((n.start for n in response if n.start >= (turn_end - 1) * step - 1e-9), default=first)
        extra.append(round((round(entry / step) - turn_end) / bar, 3))
    both = on_bar + off_bar
    result = {"calls": len(both), "answered_mid_call": early, "no_answer_after_the_call": unanswered}
    result |= _figures("all", both, beat)
    result |= _figures("on_bar_line", on_bar, beat) | _figures("off_bar_line", off_bar, beat)
    if "turns" in mode:
        result |= {"extra_bars_max": max(extra), "extra_bars_min": min(extra)}
    return result


def _played_again(engine: Engine, notes: list[PlayedNote], turn_end: int) -> tuple:
    """Play ``notes``, then the same again ``AGAIN_BARS`` bars after the call's end (the first answer over by
    then): (the second call's notes, its turn's end, every note improvd played, every event)."""
    step, bar = engine.step_seconds(), bar_steps(engine.settings.meter)
    shift = (math.ceil(max(n.end for n in notes) / step / bar) + AGAIN_BARS) * bar
    second = [PlayedNote(n.pitch, n.start + shift * step, n.end + shift * step, n.velocity) for n in notes]
    sent, events = [], []
    for boundary in drive(engine, call_messages(notes + second), shift + 2 * AGAIN_BARS * bar):
        sent += boundary.sent
        events += boundary.events
    sent += engine.pop_due(math.inf)
    return second, turn_end + shift, notes_of(sent), events


def followed_bars(model, tempo: float, tunes: int, seed: int) -> dict:
    """``turns = 4`` under ``clock = "follow"`` from ``bpm`` 100, each call played at ``tempo``: the extra bars and
    the 16ths the turn was cut short by, in the player's own (``calls`` at ``tempo``), apart for calls that start on
    their bar line and those with a pickup (follow counts bar 1 from the first note); the calls heard at a tempo
    more than 2% off ``tempo``."""
    step = 60.0 / tempo / 4
    found: dict[str, dict] = {"on_bar_line": {}, "pickup": {}}
    heard_at = {}
    for name, meter, notes, turn_end in calls(tempo, tunes):
        settings = Settings(bpm=100.0, meter=meter, follow_tempo=True, turns=CALL_BARS, min_call_steps=8)
        bar = bar_steps(meter)
        bar_line = turn_end * step  # the player's bar line after its 4th bar
        sent, events = _followed(
            Engine(model, settings, seed=seed), call_messages(notes), bar_line + 2 * CALL_BARS * bar * step
        )
        ends = [e.time for e in events if e.name == "phrase_end"]
        answer = [n.start for n in notes_of(sent) if ends and n.start >= ends[0]]
        bpm = next((e.data["bpm"] for e in events if e.name == "tempo"), None)
        if bpm is not None and abs(bpm / tempo - 1) > 0.02:
            heard_at[name] = bpm
        kind = found[
            "pickup" if round(min(n.start for n in notes) / step) < turn_end - CALL_BARS * bar else "on_bar_line"
        ]
        kind[name] = (
            (round((min(answer) - bar_line) / (bar * step), 3), round((bar_line - ends[0]) / step, 2))
            if answer
            else None
        )
    report = {name: _bars_figures(measured) for name, measured in found.items()}
    return report | {"heard_at": heard_at}


def _bars_figures(measured: dict) -> dict:
    """The extra bars and 16ths cut of ``measured`` (name: (extra bars, 16ths cut) or None: no answer)."""
    answered = {name: value for name, value in measured.items() if value is not None}
    if not answered:
        return {"calls": 0}
    extra, cut = zip(*answered.values(), strict=True)
    return {
        "calls": len(answered),
        "no_answer": [name for name, value in measured.items() if value is None],
        "late": [name for name, (bars, _) in answered.items() if bars > 0],
        "extra_bars_max": max(extra),
        "extra_bars_min": min(extra),
        "cut_16ths_max": max(cut),
        "cut_16ths_min": min(cut),
    }


def _followed(engine: Engine, messages: list, until: float) -> tuple[list, list]:
    """``messages`` played to ``engine`` ticked where it says its next boundary is (a followed grid moves), as the
    daemon's loop does: (what it sent, its events) up to ``until``."""
    pending, sent, events = list(messages), [], []
    engine.start(0.0)
    boundary = 0.0
    while boundary < until:
        while pending and pending[0][0] < boundary:
            time, message = pending.pop(0)
            sent += engine.feed(message, time)
        sent += engine.pop_due(boundary)
        engine.tick(boundary)
        events += engine.drain_events()
        boundary = engine.next_boundary()
    return sent + engine.pop_due(math.inf), events


def played_tunes(model, bpm: float, tunes: int) -> list[tuple[str, str, list[PlayedNote]]]:
    """(ident, meter, notes in seconds at ``bpm``): the first PLAYED_BARS bars of the first ``tunes`` tunes of the
    model's validation split that have a metre the engine takes."""
    from improvd.offline.call_reader import CallError, call_from_score
    from improvd.offline.notation import ScoreError, collection_tune
    from training.compare import DEFAULT_CACHE_DIR, split_of

    collection, idents, _ = split_of(model, "validation", DEFAULT_CACHE_DIR)
    found = []
    for ident in idents:
        try:
            whole = call_from_score(collection_tune(collection, ident).score, None, ident, ident)
        except (ScoreError, CallError):
            continue
        call, scale = whole.first_bars(PLAYED_BARS), whole.bpm / bpm
        meter = f"{call.time_signature[0]}/{call.time_signature[1]}"
        try:
            Settings(meter=meter).validate()
        except ValueError:
            continue  # a metre the engine does not take
        notes = [PlayedNote(n.pitch, n.start * scale, n.end * scale, n.velocity) for n in call.notes]
        found.append((ident, meter, notes))
        if len(found) == tunes:
            break
    return found


def false_ends(model, mode: dict, bpm: float, played: list, seed: int, jitter: float = 0.0) -> dict:
    """For each gate in GATES, the share of ``played`` calls whose first phrase end came before their last note
    off, and which; with ``jitter``, each onset and release moved by up to that many seconds (seeded)."""
    result = {}
    for gate in GATES:
        early = []
        rng = random.Random(seed)
        for ident, meter, notes in played:
            detached = _keyboard([_played(n, gate, jitter, rng) for n in notes])
            engine = Engine(model, Settings(bpm=bpm, meter=meter, min_call_steps=8, response_bars=4, **mode), seed=seed)
            last_off = max(n.end for n in detached)
            for boundary in drive(engine, call_messages(detached), round(last_off / engine.step_seconds()) + 2):
                ends = [e.time for e in boundary.events if e.name == "phrase_end"]
                if ends:
                    if ends[0] < last_off - 1e-9:
                        early.append(ident)
                    break
        result[f"gate_{gate}"] = {"calls": len(played), "false_end_rate": round(len(early) / len(played), 3)}
        result[f"gate_{gate}"]["false_ends"] = early
    return result


def _played(note: PlayedNote, gate: float, jitter: float, rng: random.Random) -> PlayedNote:
    """``note`` sounding ``gate`` of its length, its onset and release each moved by up to ``jitter`` seconds."""
    start = note.start + rng.uniform(-jitter, jitter)
    end = max(start + 0.01, note.start + gate * (note.end - note.start) + rng.uniform(-jitter, jitter))
    return PlayedNote(note.pitch, max(0.0, start), end, note.velocity)


def _keyboard(notes: list[PlayedNote]) -> list[PlayedNote]:
    """``notes`` as a keyboard plays them: a key is released before it is struck again (a release moved past the
    next onset of its pitch comes 1 ms before it)."""
    ordered = sorted(notes, key=lambda n: n.start)
    played = []
    for k, note in enumerate(ordered):
        again = next((n.start for n in ordered[k + 1 :] if n.pitch == note.pitch), math.inf)
        played.append(PlayedNote(note.pitch, note.start, min(note.end, again - 0.001), note.velocity))
    return played


def _figures(name: str, gaps: list[float], beat: float) -> dict:
    if not gaps:
        return {}
    ordered = sorted(gaps)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    median = statistics.median(ordered)
    return {
        f"{name}_n": len(gaps),
        f"{name}_median_beats": round(median / beat, 3),
        f"{name}_p90_beats": round(p90 / beat, 3),
        f"{name}_max_beats": round(ordered[-1] / beat, 3),
        f"{name}_median_s": round(median, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpm", type=float, default=100.0)
    parser.add_argument("--tunes", type=int, default=10, help="Essen test tunes (0: the hand-made phrases only)")
    parser.add_argument("--validation", type=int, default=60, help="validation tunes played whole (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    model = load_model(DEFAULT_MODEL_DIR)
    played = played_tunes(model, args.bpm, args.validation) if args.validation else []
    report = {"bpm": args.bpm, "seed": args.seed}
    for name, mode in MODES.items():
        report[name] = {
            "first_call": measure(model, mode, args.bpm, args.tunes, args.seed, again=False),
            "call_again": measure(model, mode, args.bpm, args.tunes, args.seed, again=True),
        }
        if played and "turns" not in mode:
            report[name]["false_ends"] = false_ends(model, mode, args.bpm, played, args.seed)
            report[name]["false_ends_jitter"] = false_ends(model, mode, args.bpm, played, args.seed, JITTER)
    report["bars_followed"] = {
        f"at_{tempo:g}": followed_bars(model, tempo, args.tunes, args.seed) for tempo in FOLLOWED
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
