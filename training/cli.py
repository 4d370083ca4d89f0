"""``improvd-train corpus|fit|export|evaluate``: the offline pipeline from scores to a model directory."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, fields
from pathlib import Path

from improvd.model import ModelError
from training.corpus import DEFAULT_CACHE_DIR

DEFAULTS_DIR = Path("models")


def _add_corpus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help="a folder of .krn/.abc/.mid/.musicxml/.mxl files (default: music21's Essen)")
    parser.add_argument("--files", nargs="*", default=[], help="only these file stems (e.g. erk5 kinder0)")
    parser.add_argument("--max-tunes", type=int, help="at most this many tunes per file")
    parser.add_argument(
        "--cache-dir", default=str(DEFAULT_CACHE_DIR), help="parsed-corpus cache (default: %(default)s)"
    )


def _add_fit_options(parser: argparse.ArgumentParser) -> None:
    _add_corpus_options(parser)
    parser.add_argument("--seed", type=int, default=1, help="split and initialisation seed")
    parser.add_argument("--validation", type=float, default=0.05, help="fraction of tunes for validation")
    parser.add_argument("--test", type=float, default=0.05, help="fraction of tunes for test (used only by evaluate)")
    parser.add_argument("--sequence-length", type=int, default=64, help="steps of each training window")
    parser.add_argument("--song-gap", type=int, default=16, help="song-end symbols between songs in the stream")
    parser.add_argument("--input-kind", choices=("onehot", "embedding"), default="onehot")
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--lstm-units", type=int, nargs="+", default=[256], help="units of each LSTM layer")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--patience", type=int, default=5, help="early stopping on validation loss")
    parser.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this wall-clock budget")
    parser.add_argument("--strategy", choices=("default", "mirrored", "multiworker"), default="default")
    parser.add_argument("--name", default="essen", help="model directory name under --models-dir")
    parser.add_argument("--models-dir", default=str(DEFAULTS_DIR))
    parser.add_argument("--run-dir", help="checkpoints, log.csv, curve.png (default: runs/NAME)")
    parser.add_argument("--resume", help="a model.keras to continue training from")
    parser.add_argument("--no-keras", action="store_true", help="export without model.keras")


def _settings(args: argparse.Namespace):
    from training.train import Settings

    names = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in vars(args).items() if k in names})


def cmd_corpus(args: argparse.Namespace) -> int:
    from training.corpus import load_corpus

    corpus = load_corpus(args.data, args.files or None, args.max_tunes, args.cache_dir)
    print(json.dumps(corpus.summary(), indent=2))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from training.export import export_model
    from training.train import card_of, fit, prepare

    settings = _settings(args)
    prepared = prepare(settings, args.cache_dir)
    print(json.dumps({k: v for k, v in prepared.corpus.summary().items() if k != "files"}), file=sys.stderr)
    run_dir = Path(args.run_dir or Path("runs") / args.name)
    model, summary = fit(settings, run_dir, prepared, args.resume)
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

    from training.export import export_model
    from training.train import Settings, card_of, prepare

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
    from training.evaluate import evaluate_directory

    report = evaluate_directory(
        args.model_dir, args.cache_dir, args.max_continuations, args.seeds, save=args.save, progress=not args.json
    )
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="improvd-train", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="parse (and cache) a corpus; print what was kept and dropped")
    _add_corpus_options(corpus)
    corpus.set_defaults(run=cmd_corpus)
    fit = commands.add_parser("fit", help="train on the train split and export models/NAME")
    _add_fit_options(fit)
    fit.set_defaults(run=cmd_fit)
    export = commands.add_parser("export", help="export a run folder's best checkpoint as models/NAME")
    export.add_argument("run_dir")
    export.add_argument("--name", default="essen")
    export.add_argument("--models-dir", default=str(DEFAULTS_DIR))
    export.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    export.add_argument("--no-keras", action="store_true")
    export.set_defaults(run=cmd_export)
    evaluate = commands.add_parser("evaluate", help="figures on the test split, against an n-gram baseline")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("--json", action="store_true", help="one JSON object on stdout, no progress")
    evaluate.add_argument(
        "--max-continuations", type=int, default=300, help="test calls played through the engine (default 300)"
    )
    evaluate.add_argument("--seeds", type=int, default=3, help="answers played per call (default 3)")
    evaluate.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    evaluate.add_argument("--save", action="store_true", help="also write the figures into model.json")
    evaluate.set_defaults(run=cmd_evaluate)
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
