"""Models that pass the file checks but broke the engine: each is refused at load with one line, or the engine copes.

Issue 29: a narrow vocabulary (the tests' own, 60..67) killed the timing loop on the first note outside it, a
vocabulary of "060" raised KeyError out of the model switch, black keys only emptied the answer's mask, one layer of
2,000 units made every answer late, and a weights.npz whose .npy header declared a deflated gigabyte took that much
memory before it was refused.
"""

from __future__ import annotations

import asyncio
import io
import json
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from improvd.core.encoding import EncodingError, Vocabulary
from improvd.core.engine import Engine, Settings
from improvd.core.model import (
    DEFAULT_MODEL_DIR,
    MAX_NPY_HEADER,
    MAX_STEP_MACS,
    ModelError,
    load_model,
    step_macs,
)
from tests.helpers import VOCABULARY, call, run, write_model
from tests.inprocess import make_daemon

STEP = 60 / 120 / 4


def edit_card(directory: Path, **changes) -> None:
    card = json.loads((directory / "model.json").read_text(encoding="utf-8"))
    card.update(changes)
    (directory / "model.json").write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.parametrize(
    ("symbols", "message"),
    [
        (["060", "62", "64", "65", "67"], r"bad vocabulary \(step 3: '060' is not a pitch"),
        (["\u0666\u0660", "62", "64", "65", "67"], r"bad vocabulary \(step 3: '\u0666\u0660' is not a pitch"),
        (["61", "63", "66", "68", "70"], r"vocabulary has no pitch on a white key"),
    ],
)
def test_a_vocabulary_the_engine_cannot_use_is_refused_at_load(tmp_path, symbols, message):
    """A vocabulary of "060" passed and raised KeyError('60') in the model switch; black keys only passed and
    emptied the answer's mask at the phrase end (ValueError('the mask allows no symbol'))."""
    directory = write_model(tmp_path / "m")
    edit_card(directory, vocabulary=["_", "r", "/", *symbols])
    with pytest.raises(ModelError, match=rf"model.json: {message}"):
        load_model(directory)


def test_a_model_too_slow_for_the_step_is_refused_before_its_weights_are_read(tmp_path):
    """One layer of 2,000 units made every answer's notes up to 745 ms late."""
    directory = write_model(tmp_path / "m")
    edit_card(directory, lstm_units=[2000])
    (directory / "weights.npz").write_bytes(b"never read")
    with pytest.raises(ModelError, match=r"lstm_units \[2000\] take 16016000 multiply-adds a step, over the limit"):
        load_model(directory)


def test_the_shipped_model_is_well_within_the_step_limit():
    model = load_model(DEFAULT_MODEL_DIR)
    assert step_macs(len(model.vocabulary), model.lstm_units) == 607_104 < MAX_STEP_MACS
    assert step_macs(8, [6, 5]) == 4 * 36 + 4 * 25 + 4 * 6 * 5 + 5 * 8


def test_a_narrow_vocabulary_takes_notes_outside_its_range():
    vocabulary = Vocabulary(VOCABULARY)  # 60 62 64 65 67: narrower than an octave
    assert vocabulary.fold("72") == "60"  # the nearest pitch of its class
    assert vocabulary.fold("55") == "67"
    assert vocabulary.fold("61") == "60"  # no pitch of its class: the nearest pitch (the lower of two)
    assert vocabulary.fold("66") == "65"
    with pytest.raises(EncodingError):
        Vocabulary(["_", "r", "/", "060"])


def test_an_engine_with_a_narrow_vocabulary_answers_a_call_above_it(tmp_path):
    """It died on the first note outside 60..67 (EncodingError: narrower than an octave): a crash loop."""
    model = load_model(write_model(tmp_path / "m"))
    engine = Engine(model, Settings(bpm=120, phrase_end_steps=4, min_call_steps=4), seed=1)
    phrase = [(79, 0, 2), (81, 2, 2), (83, 4, 2), (84, 6, 2), (86, 8, 4)]
    sent, events = run(engine, call(phrase), 64)
    assert [e.name for e in events].count("response_start") == 1
    assert any(t.message.type == "note_on" and t.message.velocity for t in sent)


def npz_member(path: Path, name: str, header: bytes, payload: bytes = b"") -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.npy", header + payload)


def test_a_huge_npy_header_is_refused_before_it_is_read(tmp_path):
    """numpy reads a header whole before it checks its length: 1 GiB of deflated header took 2.25 GB."""
    directory = write_model(tmp_path / "m")
    length = 32 << 20
    header = b"\x93NUMPY\x02\x00" + length.to_bytes(4, "little") + b" " * length
    npz_member(directory / "weights.npz", "dense_bias", header)
    assert (directory / "weights.npz").stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ModelError, match=rf"array dense_bias has a header of {length} bytes, over the limit"):
            load_model(directory)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MAX_NPY_HEADER * 256  # a megabyte: nothing near the header's size was held


def test_an_array_storing_more_than_its_header_declares_is_refused(tmp_path):
    """np.load reads what the header declares: data hidden after it would pass unseen."""
    directory = write_model(tmp_path / "m")
    with np.load(directory / "weights.npz") as archive:
        weights = {k: archive[k] for k in archive.files}
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, weights.pop("dense_bias"))
    with zipfile.ZipFile(directory / "weights.npz", "w") as archive:
        for key, array in weights.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, array)
            archive.writestr(f"{key}.npy", member.getvalue())
        archive.writestr("dense_bias.npy", buffer.getvalue() + bytes(1000))
    with pytest.raises(ModelError, match=r"array dense_bias stores \d+ bytes, but its header declares \d+"):
        load_model(directory)


def test_a_member_that_is_not_an_array_is_refused(tmp_path):
    directory = write_model(tmp_path / "m")
    with zipfile.ZipFile(directory / "weights.npz", "a") as archive:
        archive.writestr("notes.txt", b"x" * 100)
    with pytest.raises(ModelError, match=r"member 'notes.txt' is not an array of its own"):
        load_model(directory)


@pytest.mark.parametrize(
    ("symbols", "reason"),
    [
        (["060", "62", "64", "65", "67"], "bad vocabulary (step 3: '060' is not a pitch"),
        (["61", "63", "66", "68", "70"], "vocabulary has no pitch on a white key"),
    ],
)
def test_set_model_to_a_model_the_engine_cannot_use_keeps_the_running_one(tmp_path, caplog, symbols, reason):
    """Over MQTT the first ended the daemon (KeyError out of the switch), the second was taken and ended it at the
    phrase end."""
    directory = write_model(tmp_path / "models" / "bad")
    edit_card(directory, vocabulary=["_", "r", "/", *symbols])
    daemon = make_daemon({"models_path": str(tmp_path / "models")})
    running = daemon.engine.model
    events: list[tuple[str, dict]] = []
    daemon.controller.event = lambda name, data: events.append((name, data))

    async def switch() -> None:
        daemon._loop = asyncio.get_running_loop()
        daemon.controller.apply({"model": "bad"})
        for _ in range(3000):  # bounds a hang only
            if not daemon.controller._model_loading:
                break
            await asyncio.sleep(0.01)

    asyncio.run(switch())
    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["reason"].startswith(f"model 'bad': model.json: {reason}")  # not its path on this machine
    assert f"model not changed: {directory.resolve() / 'model.json'}: {reason}" in caplog.text  # the log has it
    assert daemon.engine.model is running and daemon.controller.model is running


@pytest.mark.parametrize("flaw", ["method", "encrypted"])
def test_a_member_numpy_would_not_write_is_refused(tmp_path, flaw):
    """zipfile raises NotImplementedError for an unknown method and RuntimeError for an encrypted member: out of
    the model switch, either ended the daemon."""
    directory = write_model(tmp_path / "m")
    data = bytearray((directory / "weights.npz").read_bytes())
    for signature, method_at, flags_at in ((b"PK\x03\x04", 8, 6), (b"PK\x01\x02", 10, 8)):
        at = data.find(signature)
        while at >= 0:
            if flaw == "method":
                data[at + method_at : at + method_at + 2] = (99).to_bytes(2, "little")
            else:
                data[at + flags_at] |= 1
            at = data.find(signature, at + 4)
    (directory / "weights.npz").write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"is encrypted or compressed other than as numpy does"):
        load_model(directory)


@pytest.mark.parametrize("odds", ["30", -1, float("nan"), float("inf"), True, 1e9, None])
def test_a_card_whose_echo_odds_is_no_number_in_range_is_refused_at_load(tmp_path, odds):
    directory = write_model(tmp_path / "m")
    edit_card(directory, echo_odds=odds)
    with pytest.raises(ModelError, match=r"m/model.json: echo_odds must be a number from 0 to 1000, got "):
        load_model(directory)


def test_a_card_s_echo_odds_is_its_model_s_and_the_default_without_one(tmp_path):
    from improvd.core.echo import ODDS

    directory = write_model(tmp_path / "m")
    assert load_model(directory).echo_odds == ODDS
    edit_card(directory, echo_odds=30)
    assert load_model(directory).echo_odds == 30.0
    assert load_model("models/british").echo_odds == 27.8


def test_a_card_with_a_number_python_will_not_read_is_refused_not_raised(tmp_path):
    """A play test: a 5,000-digit number in model.json raised ValueError (Python's limit on reading integers) out
    of the loader, and ``set/model`` to it stopped the daemon."""
    directory = write_model(tmp_path / "m")
    text = (directory / "model.json").read_text(encoding="utf-8")
    (directory / "model.json").write_text(text[:-1] + ', "echo_odds": ' + "9" * 5000 + "}", encoding="utf-8")
    with pytest.raises(ModelError, match=r"model.json: not readable JSON \(a number of over 4300 digits\)$"):
        load_model(directory)


def test_a_huge_value_in_a_card_is_quoted_short_in_its_error(tmp_path):
    """A play test: an echo_odds of 60,000 numbers gave a 720 kB "one line" error, on MQTT too."""
    directory = write_model(tmp_path / "m")
    edit_card(directory, echo_odds={"a": list(range(60_000))})
    with pytest.raises(ModelError) as refused:
        load_model(directory)
    assert len(str(refused.value)) < len(str(directory)) + 150
    assert str(refused.value).endswith("got {'a': [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10… (408897 characters)")
