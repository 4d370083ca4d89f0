"""improvd-train corpus|fit|export|evaluate|compare: the offline pipeline from scores to a model directory.

corpus parses (and caches) the scores; fit trains on the train split and exports models/NAME; export turns a run
folder's best checkpoint into a model directory; evaluate measures a model on the test split; compare measures
several models and style auto on each one's test split.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from improvd.core.model import INPUTS, ModelError, size_problem
from improvd.offline.notation import COLLECTIONS

from .corpus import DEFAULT_CACHE_DIR
from .train import Settings

DEFAULTS_DIR = Path("models")
DEFAULT = Settings()  # the defaults of fit's options


def _add_corpus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="a folder of .krn/.abc/.mid/.musicxml/.mxl files (default: music21's collection --corpus)"
    )
    parser.add_argument(
        "--corpus",
        choices=tuple(COLLECTIONS),
        default="essen",
        help="without --data: music21's Essen songs (essenFolksong) or British-Isles dance tunes and airs "
        "(british: ryansMammoth, airdsAirs, miscFolk) (default: %(default)s)",
    )
    parser.add_argument(
        "--files", nargs="*", default=[], help="only these file stems, e.g. erk5 kinder0 (default: all)"
    )
    parser.add_argument("--max-tunes", type=int, help="at most this many tunes per file (default: all)")
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-corpus cache (default: %(default)s)"
    )


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    _add_corpus_options(parser)
    split = parser.add_argument_group("split and stream")
    split.add_argument(
        "--seed", type=int, default=DEFAULT.seed, help="split and initialisation seed (default: %(default)s)"
    )
    split.add_argument(
        "--validation",
        type=float,
        default=DEFAULT.validation,
        help="fraction of tunes for validation (default: %(default)s)",
    )
    split.add_argument(
        "--test",
        type=float,
        default=DEFAULT.test,
        help="fraction of tunes for test, used by evaluate (default: %(default)s)",
    )
    split.add_argument(
        "--sequence-length",
        type=int,
        default=DEFAULT.sequence_length,
        help="16th steps in each training window (default: %(default)s)",
    )
    split.add_argument(
        "--song-gap", type=int, default=DEFAULT.song_gap, help="song-end symbols between songs (default: %(default)s)"
    )
    net = parser.add_argument_group("network")
    net.add_argument(
        "--input-kind",
        choices=INPUTS,
        default=DEFAULT.input_kind,
        help="how symbols enter the LSTM; lookback: with each step's place in the bar and what sounded one and two "
        "bars back (default: %(default)s)",
    )
    net.add_argument(
        "--init-from",
        help="a one-hot model's folder (with model.keras) of the same LSTM sizes that this one-hot or lookback "
        "model starts from: its weights, symbol by symbol where the vocabularies differ (a symbol it lacks starts "
        "fresh; a lookback model's lookback weights at zero) (default: a new model)",
    )
    net.add_argument(
        "--embedding-dim",
        type=int,
        default=DEFAULT.embedding_dim,
        help="size of the embedding with --input-kind embedding (default: %(default)s)",
    )
    net.add_argument(
        "--lstm-units",
        type=int,
        nargs="+",
        default=DEFAULT.lstm_units,
        help=f"units of each LSTM layer (default: {' '.join(map(str, DEFAULT.lstm_units))})",
    )
    net.add_argument(
        "--dropout", type=float, default=DEFAULT.dropout, help="dropout after each LSTM layer (default: %(default)s)"
    )
    run = parser.add_argument_group("training")
    run.add_argument(
        "--learning-rate", type=float, default=DEFAULT.learning_rate, help="Adam's learning rate (default: %(default)s)"
    )
    run.add_argument(
        "--batch-size", type=int, default=DEFAULT.batch_size, help="windows per batch (default: %(default)s)"
    )
    run.add_argument(
        "--epochs", type=int, default=DEFAULT.epochs, help="at most this many epochs (default: %(default)s)"
    )
    run.add_argument(
        "--patience",
        type=int,
        default=DEFAULT.patience,
        help="epochs without a better validation loss before stopping (default: %(default)s)",
    )
    run.add_argument(
        "--max-minutes", type=float, help="stop after the epoch that passes this wall-clock budget (default: none)"
    )
    run.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multiworker"),
        default=DEFAULT.strategy,
        help="default (one device), mirrored (every GPU here) or multiworker (the machines named in TF_CONFIG; "
        "see the README) (default: %(default)s)",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--name", default="essen", help="model directory name under --models-dir (default: %(default)s)")
    out.add_argument("--models-dir", default=str(DEFAULTS_DIR), help="where models go (default: %(default)s)")
    out.add_argument("--run-dir", help="checkpoints, log.csv, curve.png (default: runs/NAME)")
    out.add_argument("--resume", help="a model.keras to continue training from (default: a new model)")
    out.add_argument("--no-keras", action="store_true", help="export without model.keras")


def _settings(args: argparse.Namespace) -> Settings:
    names = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in vars(args).items() if k in names})


def cmd_corpus(args: argparse.Namespace) -> int:
    from .corpus import load_corpus

    corpus = load_corpus(args.data, args.files or None, args.corpus, args.max_tunes, args.cache_dir)
    print(json.dumps(corpus.summary(), indent=2))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .export import export_model
    from .train import card_of, fit, prepare

    settings = _settings(args)
    prepared = prepare(settings, args.cache_dir)
    too_big = size_problem(len(prepared.vocabulary), list(settings.lstm_units), settings.sequence_length)
    if too_big:
        raise ValueError(f"improvd would refuse this model: {too_big}")
    print(json.dumps({k: v for k, v in prepared.corpus.summary().items() if k != "files"}), file=sys.stderr)
    run_dir = Path(args.run_dir or Path("runs") / args.name)
    model, summary = fit(settings, run_dir, prepared, args.resume)
    if not summary["chief"]:  # another worker of a multi-worker cluster: the chief exports
        print(json.dumps({"model": None, **summary}))
        return 0
    target = Path(args.models_dir) / args.name
    export_model(
        model,
        prepared.vocabulary,
        target,
        settings.sequence_length,
        card_of(settings, prepared, summary),
        save_keras=not args.no_keras,
    )
    print(json.dumps({"model": str(target), **summary}))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export a run folder's best checkpoint (for a run that was stopped before it exported)."""
    import keras

    from .export import export_model
    from .train import Settings, card_of, prepare

    run_dir = Path(args.run_dir)
    settings = Settings(**json.loads((run_dir / "settings.json").read_text(encoding="utf-8")))
    prepared = prepare(settings, args.cache_dir)
    model = keras.models.load_model(run_dir / "checkpoint.keras")
    target = Path(args.models_dir) / args.name
    card = card_of(settings, prepared, {"exported_from": str(run_dir / "checkpoint.keras")})
    export_model(model, prepared.vocabulary, target, settings.sequence_length, card, save_keras=not args.no_keras)
    print(json.dumps({"model": str(target), "settings": asdict(settings)}))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_directory

    report = evaluate_directory(
        args.model_dir, args.cache_dir, args.max_continuations, args.seeds, save=args.save, progress=not args.json
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_directories

    report = compare_directories(
        args.model_dirs,
        cache_dir=args.cache_dir,
        max_calls=args.max_calls,
        seeds=args.seeds,
        two_sample=not args.no_two_sample,
        progress=True,
        max_tunes=args.max_tunes,
        only=args.split,
        calibration=args.calibrate,
    )
    print(json.dumps(report, indent=2))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="improvd-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    about = "parse (and cache) a corpus; print what was kept and dropped, and why"
    corpus = commands.add_parser("corpus", help=about, description=about)
    _add_corpus_options(corpus)
    corpus.set_defaults(run=cmd_corpus)
    about = "train on the train split and export models/NAME"
    fit = commands.add_parser("fit", help=about, description=about)
    _add_fit_options(fit)
    fit.set_defaults(run=cmd_fit)
    about = "export a run folder's best checkpoint as models/NAME"
    export = commands.add_parser("export", help=about, description=about)
    export.add_argument("run_dir", help="a run folder of fit (settings.json, checkpoint.keras)")
    export.add_argument("--name", default="essen", help="model directory name (default: %(default)s)")
    export.add_argument("--models-dir", default=str(DEFAULTS_DIR), help="where models go (default: %(default)s)")
    export.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-corpus cache (default: %(default)s)"
    )
    export.add_argument("--no-keras", action="store_true", help="export without model.keras")
    export.set_defaults(run=cmd_export)
    about = "figures on the test split, against an n-gram baseline"
    evaluate = commands.add_parser("evaluate", help=about, description=about)
    evaluate.add_argument("model_dir", help="a model directory (model.json + weights.npz)")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout, no progress")
    evaluate.add_argument(
        "--max-continuations",
        type=int,
        default=300,
        help="test calls played through the engine (default: %(default)s)",
    )
    evaluate.add_argument("--seeds", type=int, default=3, help="answers played per call (default: %(default)s)")
    evaluate.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-corpus cache (default: %(default)s)"
    )
    evaluate.add_argument("--save", action="store_true", help="also write the figures into model.json")
    evaluate.set_defaults(run=cmd_evaluate)
    about = "every model and style auto on every model's test split, on the same calls"
    compare = commands.add_parser("compare", help=about, description=about)
    compare.add_argument("model_dirs", nargs="+", help="model directories (each with its corpus in model.json)")
    compare.add_argument("--max-calls", type=int, default=150, help="test calls per split (default: %(default)s)")
    compare.add_argument(
        "--max-tunes", type=int, default=100, help="test tunes scored per split (default: %(default)s)"
    )
    compare.add_argument("--seeds", type=int, default=2, help="answers played per call (default: %(default)s)")
    compare.add_argument("--split", nargs="*", help="only these corpora's test splits, e.g. british (default: all)")
    compare.add_argument("--no-two-sample", action="store_true", help="leave out the two-sample test")
    compare.add_argument(
        "--calibrate",
        action="store_true",
        help="instead: choose style auto's priors (style_prior_bits of each card) and each model's echo (echo_odds) "
        "on the validation splits' calls",
    )
    compare.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-corpus cache (default: %(default)s)"
    )
    compare.set_defaults(run=cmd_compare)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError, ModelError) as error:  # bad input: one line naming it, no traceback
        print(f"improvd-train: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
