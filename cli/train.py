"""``sigma train``, ``sigma backtest``, ``sigma models trained|review`` and ``sigma publish|unpublish|discard``."""

from __future__ import annotations

import argparse
import sys
from datetime import date

from cli._common import actor, name, pack_and_model, print_json, workspace
from engine.errors import ConfigError


def register(commands: argparse._SubParsersAction, models: argparse._SubParsersAction) -> None:
    train = commands.add_parser(
        "train",
        help="train chosen leaderboard rows as calibrated ONNX models",
        description="Each row (PASS or MARGINAL) trains its own XGBoost model in its own process: a hyperparameter "
        "grid by purged out-of-fold log loss, isotonic or sigmoid calibration by Brier score, ONNX export checked "
        "against the native model to 1e-5. The row's policy is then re-run on the model's own calibrated "
        "probabilities and judged by the row's gates; a model that no longer passes is marked not publishable "
        "(exit status 1). Checkpoints after every grid point: Ctrl-C (or --cancel from another "
        "shell) stops, and the same command resumes.",
    )
    train.add_argument("sweep", type=name("sweep"), help="the sweep whose leaderboard rows to train")
    train.add_argument("--rows", required=True, help="leaderboard ranks, e.g. 1,3,4")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--workers", type=int, help="parallel trainings (default: one per row, up to the cores)")
    train.add_argument("--cancel", action="store_true", help="ask the running training of these rows to stop")
    train.set_defaults(handler=_train)

    test = commands.add_parser("backtest", help="backtest a trained model's ONNX artifact as it will run live")
    test.add_argument("trained", type=name("trained"), help="a trained model id (`sigma models trained`)")
    test.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (YYYY-MM-DD), default: all")
    test.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (YYYY-MM-DD), default: all")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=_backtest)

    listing = models.add_parser("trained", help="trained models and whether they are published")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_trained)
    look = models.add_parser("review", help="a trained model's metrics, and review.png (calibration, equity, importance)")
    look.add_argument("trained", type=name("trained"))
    look.set_defaults(handler=_review)

    for verb, text in (("publish", "switch a trained model on for alerting (the live flow picks it up without a restart)"),
                       ("unpublish", "switch a published model off"),
                       ("discard", "delete an unpublished trained model and its artifact")):  # fmt: skip
        action = commands.add_parser(verb, help=text)
        action.add_argument("trained", type=name("trained"))
        action.set_defaults(handler=_act, verb=verb)
        if verb == "publish":
            action.add_argument("--force", action="store_true",
                                help="publish a model that training marked not publishable, or without a passing paper record "
                                "(`sigma sim run`); recorded in the audit log with --reason")  # fmt: skip
            action.add_argument("--reason", help="why it is forced: kept in the audit log")
    kill = commands.add_parser("kill", help="kill switch: a published model opens no new position (exits still alert)")
    kill.add_argument("trained", type=name("trained"))
    kill.add_argument("--off", action="store_true", help="turn the kill switch off again")
    kill.set_defaults(handler=_kill)


def _ranks(text: str) -> list[int]:
    try:
        ranks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError("--rows", f"{text!r} is not a list of ranks", "write e.g. --rows 1,3,4") from None
    if not ranks:
        raise ConfigError("--rows", "no rows given", "write e.g. --rows 1,3,4")
    return ranks


def _train(args: argparse.Namespace) -> int:
    from research import review, training

    ranks = _ranks(args.rows)
    with workspace() as space:
        if args.cancel:
            for rank in ranks:
                training.cancel(space, training.trained_id(args.sweep, rank))
            print(f"cancel requested for rows {args.rows} of {args.sweep}; each stops after its current fit")
            return 0
        pack, spec = pack_and_model(space, space.sweep(args.sweep).model)
        _, warnings = training.select(space, args.sweep, ranks)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        shown: dict[str, str] = {}

        def report(trained: str, progress: dict) -> None:
            line = f"{trained}: {progress.get('stage', '')} ({progress.get('step', 0)}/{progress.get('total', '?')})"
            if shown.get(trained) != line:
                shown[trained] = line
                print(line, file=sys.stderr)

        try:
            trained = training.train(space, pack, spec, args.sweep, ranks, actor=actor(), seed=args.seed,
                                     workers=args.workers, report=report)
        except training.Cancelled as stopped:
            print(stopped, file=sys.stderr)
            return 130
        refused = [trained_id for trained_id in trained if space.trained(trained_id).refusal]
        for trained_id in trained:
            print(review.render(space.trained(trained_id).manifest))
            then = f"NOT publishable (`sigma publish {trained_id} --force` overrides, audited)" if trained_id in refused else \
                f"publish: `sigma publish {trained_id}`"
            print(f"review: `sigma models review {trained_id}`; {then}\n")
    # Registered, but a model whose policy no longer does what its row promised is not a success to build on.
    return 1 if refused else 0


def _backtest(args: argparse.Namespace) -> None:
    from research import review

    with workspace() as space:
        record = space.trained(args.trained)
        pack, spec = pack_and_model(space, record.model)
        result = review.backtest(space, pack, spec, args.trained, args.start, args.end)
    if args.json:
        print_json(result)
        return
    print(f"{args.trained} as exported, {result['bars']:,} bars ({result['scored']:,} scored): Sharpe {result['sharpe']:.2f}, "
          f"return {result['total_return']:.1%}, trades {result['trades']:.0f}, max drawdown {result['max_drawdown']:.1%}, "
          f"win rate {result['win_rate']:.0%}")


def _trained(args: argparse.Namespace) -> None:
    from replay.gate import stage

    with workspace() as space:
        records = space.trained_models()
        home = space.home
    if args.json:
        print_json([{"id": r.id, "model": r.model, "sweep": r.sweep, "rank": r.rank, "artifact_sha": r.artifact_sha,
                     "published_at": r.published_at, "not_publishable": r.refusal, "stage": stage(home, r.id, r.published_at is not None)}
                    for r in records])  # fmt: skip
        return
    for r in records:
        holdout = r.manifest["metrics"]["backtest_holdout"]["sharpe"]
        state = f"published {r.published_at} by {r.published_by}" if r.published_at else "not published"
        state += f" (not publishable: {r.refusal})" if r.refusal else ""
        print(f"{r.id}  {r.model}  holdout Sharpe {holdout:.2f}  {stage(home, r.id, r.published_at is not None)}, {state}")


def _review(args: argparse.Namespace) -> None:
    from research import review

    with workspace() as space:
        print(review.render(space.trained(args.trained).manifest))
        print(f"report: {review.report(space, args.trained)}")


def _kill(args: argparse.Namespace) -> None:
    with workspace() as space:
        version = space.kill(args.trained, not args.off, actor=actor())
    state = "off" if args.off else "on"
    print(f"kill switch {state} for {args.trained}; registry version {version} (the live flow picks it up at its next poll)")


def _act(args: argparse.Namespace) -> None:
    with workspace() as space:
        if args.verb == "discard":
            freed = space.discard(args.trained, actor=actor())
            print(f"discarded {args.trained}; freed {freed:,} bytes")
            return
        if args.verb == "publish":
            from replay.gate import publish

            version, overridden = publish(space, args.trained, actor=actor(), force=args.force, reason=args.reason)
            for what in overridden:  # said once the publication is recorded: a refused publish audits nothing
                print(f"warning: published {args.trained} {what}; recorded in the audit log", file=sys.stderr)
        else:
            version = space.unpublish(args.trained, actor=actor())
    print(f"{args.verb}ed {args.trained}; registry version {version} (the live flow picks it up at its next poll)")
