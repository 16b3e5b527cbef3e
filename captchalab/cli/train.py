"""``train``, ``compare`` and ``audit``: commands that train models."""

from __future__ import annotations

import argparse
from pathlib import Path

from captchalab.cli.options import (
    COUNT,
    EXIT_ERROR,
    FRACTION,
    HEIGHT,
    POSITIVE,
    POSITIVE_INT,
    CommandError,
    add_constraints,
    add_family_options,
    add_training_options,
    constraints,
    counts,
    family_help,
    family_names,
    family_options,
    log,
    names,
    train_config,
)


def add(commands: argparse._SubParsersAction) -> None:
    _add_train(commands)
    _add_distill(commands)
    _add_compare(commands)
    _add_audit(commands)
    _add_base_model(commands)


def _add_train(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import (
        DEFAULT_PSEUDO_THRESHOLD,
        DEFAULT_SELF_TRAINING_ROUNDS,
        FINE_TUNE_RATE,
        FINE_TUNE_STEPS,
        PRETRAIN_STEPS,
        TrainConfig,
    )

    defaults = TrainConfig()
    p = commands.add_parser(
        "train", help="train a recognizer on a folder of labelled captchas",
        description="Train a recognizer on DATA, a folder of images named by their label "
        "(226md.png, 226md_2.png) or listed in labels.csv/labels.txt. OUT receives "
        "model.safetensors (the best model by validation accuracy), metrics.jsonl, curves.png, "
        "summary.json and a checkpoint for --resume.")
    p.add_argument("data", type=Path, nargs="*", metavar="DATA",
                   help="folder(s) of labelled images, read as one (the original set and "
                   "newly labelled images, say); none with --scheme")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--model", help=family_help() + f" (default: {defaults.model}, or the "
                   "family of --init)")
    add_training_options(p)
    add_constraints(p, stored=True)
    group = p.add_argument_group("starting from another model (few labels)")
    group.add_argument("--pretrain", metavar="SCHEME",
                       help="first pretrain on synthetic captchas of SCHEME (a built-in name "
                       "or a .toml file) drawn with DATA's symbols and size, then fine-tune "
                       "on DATA; the pretrained model is cached and reused")
    group.add_argument("--pretrain-steps", type=POSITIVE_INT, default=PRETRAIN_STEPS, metavar="N",
                       help="optimiser steps of pretraining (default: %(default)s)")
    group.add_argument("--scheme", metavar="SCHEME",
                       help="train on synthetic captchas of SCHEME drawn on the fly, no DATA "
                       "(fresh images every epoch)")
    group.add_argument("--init", type=Path, metavar="MODEL",
                       help="start from this model file's weights and preprocessing; its "
                       "alphabet may differ (shared symbols carry over, new ones start fresh); "
                       "`base`: the packaged base model's weights, DATA's own input size "
                       "and symbols (what a crnn run does by default)")
    group.add_argument("--from-scratch", action="store_true",
                       help="start from fresh weights, not from the packaged base model (the "
                       "default start of a crnn run)")
    group.add_argument("--fine-tune", action="store_true",
                       help=f"the short recipe for a live model given with --init (new labels "
                       f"added): about {FINE_TUNE_STEPS} steps at {FINE_TUNE_RATE:g} x --lr, "
                       "each DATA folder weighing the same")
    group.add_argument("--balance-folders", action=argparse.BooleanOptionalAction,
                       help="with several DATA folders, repeat the smaller folders' images so "
                       "that each folder weighs as much as the largest (default: on with "
                       "--fine-tune, off otherwise)")
    group.add_argument("--freeze-epochs", type=COUNT, default=defaults.freeze_epochs,
                       metavar="N", help="keep the backbone fixed for the first N epochs "
                       "(default: %(default)s)")
    group.add_argument("--backbone-lr", type=POSITIVE, default=defaults.backbone_lr, metavar="F",
                       help="the backbone's learning rate as a fraction of --lr, e.g. 0.1 "
                       "(default: %(default)s)")
    group = p.add_argument_group(
        "staged restarts (seed 002)",
        "Against unlucky starts: train N1 runs from seeds SEED, SEED+1, ... to the first "
        "stage's epoch, keep the N2 with the lowest validation loss, continue them, and so "
        "on; the last stage trains to the full schedule and its best run is the model. Each "
        "run follows the full schedule and is paused between stages, not restarted. OUT "
        "gets the winner's model and curves, restarts.json (each stage's runs and the "
        "spread between seeds) and restarts.png (every run's curves on one plot); the runs "
        "are kept in OUT/restarts/seed-N/.")
    group.add_argument("--restarts", type=counts, metavar="N1,N2,...",
                       help="runs in each stage, e.g. 20,10,1")
    group.add_argument("--restart-epochs", type=counts, metavar="E1,E2,...",
                       help="the epoch each stage but the last ends at, e.g. 10,100 (default: "
                       "each stage ends at twice the previous one's epoch, the last at the "
                       "full schedule)")
    group = p.add_argument_group(
        "self-training (seed 002)",
        "Read unlabelled images with the model, add the readings it is sure of to the "
        "training set, retrain with the same recipe, and repeat. Each round is checked on "
        "DATA's held-out validation images (labelled by people, never pseudo-labelled) and "
        "the rounds stop when that accuracy drops; the best round's model (ties: the later "
        "round) goes to OUT, every round to OUT/round-N/, the record to "
        "OUT/self_training.json.")
    group.add_argument("--unlabelled", type=Path, metavar="DIR",
                       help="folder of unlabelled images of the same scheme")
    group.add_argument("--pseudo-threshold", type=FRACTION, default=DEFAULT_PSEUDO_THRESHOLD,
                       metavar="P", help="confidence (P of the whole reading) a pseudo-label "
                       "needs (default: %(default)s)")
    group.add_argument("--self-training-rounds", type=POSITIVE_INT,
                       default=DEFAULT_SELF_TRAINING_ROUNDS, metavar="N",
                       help="rounds of pseudo-labelling at most (default: %(default)s)")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from captchalab.runtime.model_file import read_card
    from captchalab.training import train

    model = args.model or (read_card(args.init).family if args.init else "crnn")
    config = train_config(
        args, model, scheme=args.scheme, init=str(args.init) if args.init else None,
        pretrain=args.pretrain, pretrain_steps=args.pretrain_steps,
        freeze_epochs=args.freeze_epochs, backbone_lr=args.backbone_lr, restarts=args.restarts,
        fine_tune=args.fine_tune, balance_folders=args.balance_folders,
        from_scratch=args.from_scratch,
        restart_epochs=args.restart_epochs,
        unlabelled=str(args.unlabelled) if args.unlabelled else None,
        pseudo_threshold=args.pseudo_threshold,
        self_training_rounds=args.self_training_rounds,
        constraints=constraints(args).to_dict())
    data = args.data[0] if len(args.data) == 1 else (args.data or None)
    return _report(train(data, args.out, config, log=log, show_progress=not args.quiet))


def _report(result) -> int:
    """The run's notes and its last line: validation, epochs, minutes, how it ended."""
    if result.reading is None:
        return 0  # under torchrun, rank 0 reports
    for note in result.notes:
        print(note)
    validation = (f"validation: {result.describe()} ({result.metrics['count']} images); "
                  if result.metrics else "")
    print(f"{validation}{result.epochs} epochs in {result.minutes:.1f} min "
          f"({_how_it_ended(result)}) -> {result.model_path}")
    return 0


def _add_distill(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import DEFAULT_PSEUDO_THRESHOLD, TrainConfig

    defaults = TrainConfig()
    p = commands.add_parser(
        "distill", help="train a smaller student on a trained model's soft outputs",
        description="Train a student of TEACHER (a .safetensors model of the crnn, multihead "
        "or slice family) on DATA: the student reads like the teacher (its preprocessing, "
        "alphabet and family) with fewer channels, and learns the labels and, at every "
        "position, the teacher's distribution over symbols. Unlabelled images (--unlabelled) "
        "join with the teacher's confident readings as labels. OUT receives what train writes.")
    p.add_argument("teacher", type=Path, metavar="TEACHER", help="the trained model file")
    p.add_argument("data", type=Path, nargs="+", metavar="DATA",
                   help="folder(s) of labelled images, read as one")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--unlabelled", type=Path, metavar="DIR",
                   help="images without labels, read by the teacher")
    p.add_argument("--pseudo-threshold", type=FRACTION, default=DEFAULT_PSEUDO_THRESHOLD,
                   metavar="P", help="keep the teacher's readings of unlabelled images with "
                   "at least this confidence (default: %(default)s)")
    p.add_argument("--distill-weight", type=POSITIVE, default=defaults.distill_weight,
                   metavar="W", help="weight of the teacher's outputs beside the labels "
                   "(default: %(default)s)")
    add_training_options(p)
    p.set_defaults(run=run_distill, width_multiplier=0.5)


def run_distill(args: argparse.Namespace) -> int:
    from captchalab.runtime.model_file import read_card
    from captchalab.training import distill

    given = [flag for flag, value in (("--height", args.height is not None),
                                      ("--alphabet", args.alphabet is not None),
                                      ("--case-insensitive", args.case_insensitive)) if value]
    if given:
        raise CommandError(f"{', '.join(given)}: the student reads like {args.teacher} (its "
                           "input size, alphabet and case); drop them")
    config = train_config(args, read_card(args.teacher).family,
                          pseudo_threshold=args.pseudo_threshold,
                          distill_weight=args.distill_weight)
    data = args.data[0] if len(args.data) == 1 else args.data
    return _report(distill(args.teacher, data, args.out, config, args.unlabelled, log=log,
                           show_progress=not args.quiet))


def _how_it_ended(result) -> str:
    share = result.steps / result.steps_planned if result.steps_planned else 1.0
    if result.ended == "budget":
        return (f"stopped by its time budget ({result.why})" if result.cycles > 1 else
                f"stopped by its time budget after {share:.0%} of the schedule")
    if result.ended == "paused":
        return f"paused after {share:.0%} of the schedule"
    if result.ended == "converged":
        return f"stopped: converged ({result.why})" if result.why else "stopped: converged"
    return f"the whole schedule ({result.why})" if result.why else "the whole schedule"


def _add_compare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare", help="train several model families on the same split and compare them",
        description="Train each family in --models on DATA with the same split and budget, "
        "then write OUT/compare.md, compare.json and compare.png: accuracy (the best "
        "epoch's, beside the last epoch's), character accuracy, training time, parameters, "
        "file size and CPU images/s. Each model is kept in OUT/<family>/. A heatmap on a "
        "folder without centres trains on centres derived from the crnn's alignment.")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--models", type=names, help="comma-separated families (default: every "
                   "family: " + ", ".join(family_names()) + ")")
    add_training_options(p, per_family=True)
    p.set_defaults(run=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from captchalab.experiments.compare import compare

    if args.resume:
        raise CommandError("compare trains every model afresh; --resume does not apply")
    if (args.out / "compare.json").exists() and not args.overwrite:
        raise CommandError(f"{args.out / 'compare.json'}: already exists; pass --overwrite to "
                           "train and compare again")
    models = args.models or family_names()
    entries = compare(args.data, args.out, models, train_config(args, models[0]),
                      log=log, show_progress=not args.quiet)
    print((args.out / "compare.md").read_text(encoding="utf-8"), end="")
    return EXIT_ERROR if all(e.error for e in entries) else 0


def _add_audit(commands: argparse._SubParsersAction) -> None:
    from captchalab.experiments import AUDIT_MINUTES, AUDIT_SEEDS, AUDIT_SIZES, AUDIT_VAL_SPLIT

    p = commands.add_parser(
        "audit", help="how many labelled captchas break this scheme: a learning curve",
        description="Train the default recipe on growing subsets of DATA (the same validation "
        "images for every run, several seeds for small subsets) and write OUT/audit.md, "
        "audit.json and audit.png: accuracy against the number of labels, the labels needed "
        "for 50/90/99% of whole captchas, the most confused characters and a verdict. Runs "
        "that the budget stops before half of their schedule are marked, and then the audit "
        "gives no verdict but the budget it would need.")
    p.add_argument("data", type=Path, help="folder of labelled images")
    p.add_argument("--out", type=Path, help="output folder (default: audit_<DATA name>)")
    p.add_argument("--sizes", default=AUDIT_SIZES,
                   help="training subset sizes, 'all' for every training image "
                   "(default: %(default)s)")
    p.add_argument("--seeds", type=POSITIVE_INT, default=AUDIT_SEEDS,
                   help="runs per size below 200 labels (default: %(default)s)")
    p.add_argument("--max-minutes", type=POSITIVE, default=AUDIT_MINUTES,
                   help="training budget of the whole audit in minutes, shared out by subset "
                   "size (default: %(default)s; pretraining comes on top, once, then is "
                   "cached)")
    p.add_argument("--pretrain", metavar="SCHEME_OR_MODEL",
                   help="start every run from a model file, or from a model pretrained on "
                   "this synthetic scheme (built-in name or .toml)")
    p.add_argument("--init", metavar="MODEL",
                   help="start every run from this model file; `base`: the packaged base "
                   "model, the cheap strong attacker (default: fresh weights, the attacker "
                   "with labels alone)")
    p.add_argument("--self-train", action="store_true",
                   help="every run also self-trains (train --unlabelled) on the other training "
                   "images with their labels unseen: the attacker who downloads unlabelled "
                   "captchas, which cost nothing (the rounds share each run's budget)")
    p.add_argument("--model", default="crnn", help=family_help() + " (default: %(default)s)")
    add_family_options(p)
    p.add_argument("--val-split", type=FRACTION, default=AUDIT_VAL_SPLIT,
                   help="share of images held out for validation (default: %(default)s)")
    p.add_argument("--seed", type=COUNT, default=0,
                   help="seed of the split and the subsets (default: %(default)s)")
    p.add_argument("--height", type=HEIGHT, help="input height in pixels (default: the "
                   "training default)")
    p.add_argument("--case-insensitive", action="store_true", help="fold labels to lower case")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable files")
    p.add_argument("--device", default="auto",
                   help="auto (a GPU when there is one), cpu or cuda (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing audit")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_audit)


def run_audit(args: argparse.Namespace) -> int:
    from captchalab.experiments.audit import audit
    from captchalab.training.config import TrainConfig

    out = args.out or Path(f"audit_{args.data.resolve().name}")
    if (out / "audit.json").exists() and not args.overwrite:
        raise CommandError(f"{out / 'audit.json'}: already exists; pass --overwrite to audit "
                           "again")
    config = TrainConfig(model=args.model, val_split=args.val_split, seed=args.seed,
                         device=args.device, case_insensitive=args.case_insensitive,
                         skip_bad=args.skip_bad, model_options=family_options(args),
                         **({"height": args.height} if args.height else {}))
    audit(args.data, out, args.sizes, config.validate(), args.max_minutes, args.seeds,
          args.pretrain, log=log, show_progress=not args.quiet, init=args.init,
          self_training=args.self_train)
    print((out / "audit.md").read_text(encoding="utf-8"), end="")
    return 0


def _add_base_model(commands: argparse._SubParsersAction) -> None:
    from captchalab.training.config import BASE_EPOCH_IMAGES, BASE_EPOCHS

    p = commands.add_parser(
        "base-model", help="train the general base model on the synthetic universe",
        description="Train the general base model: the default crnn on the synthetic "
        "universe (every image its own random scheme; `generate universe` shows samples). "
        "On a CPU plan for hours (use --minutes; an interrupted run continues with --resume); "
        "on a GPU the drawing of the images sets the pace (about 21 minutes for the whole "
        "schedule with 16 cores). OUT receives what train writes; --install copies the "
        "model into the package, where `predict base` and `train` find it.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--minutes", "--max-minutes", dest="minutes", type=POSITIVE, metavar="M",
                   help="time budget: the schedule anneals to end within it (default: the "
                   "whole schedule; --max-minutes is the same, as train names it)")
    p.add_argument("--epochs", type=POSITIVE_INT, default=BASE_EPOCHS,
                   help=f"epochs of {BASE_EPOCH_IMAGES} fresh captchas (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu or "
                   "cuda (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue OUT's interrupted run")
    p.add_argument("--init", metavar="MODEL",
                   help="continue training a base model (a file, or `base` for the packaged "
                   "one) with a new schedule; its card counts the earlier steps and images")
    p.add_argument("--lr", type=POSITIVE, metavar="RATE",
                   help="peak learning rate (default: 3e-3 from scratch, 1e-3 with --init)")
    p.add_argument("--install", action="store_true",
                   help="copy the trained model into the package as the base model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run_base_model)


def run_base_model(args: argparse.Namespace) -> int:
    from captchalab.training.base_model import base_config, install_base_model, train_base_model

    config = base_config(args.minutes, args.device, args.seed, args.epochs, init=args.init,
                         learning_rate=args.lr)
    path = train_base_model(args.out, config, log, not args.quiet, args.resume)
    if args.install:
        print(f"installed the base model: {install_base_model(path)}")
    return 0
