"""`hotrec eval`: evaluate a run's checkpoint on a split of its (or another) dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hotrec.cli.report import print_results


def add_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a trained run",
        description="Load RUN's best checkpoint (best.pt: the best validation AUC; "
        "checkpoint.pt when the run kept none) and report AUC, log loss and accuracy on a split.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN", help="run directory of hotrec train")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--data", type=Path, default=None, help="dataset (default: the run's)")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda", "emulated"),
        help="where the model runs (default auto: cuda when present, else cpu)",
    )
    p.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="best: the best validation AUC's model (default); last: where training stopped",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.training import runlog
    from hotrec.training.runs import resume_run

    overrides = {"train": {"device": args.device}}
    if args.data:
        overrides["data"] = {"path": str(args.data.resolve())}
    checkpoint = runlog.kept_checkpoint(args.run_dir, args.checkpoint)
    trainer = resume_run(args.run_dir, overrides, save_config=False, checkpoint=checkpoint)
    metrics = trainer.eval_split(args.split)
    if metrics is None:
        from hotrec.errors import HotrecError

        raise HotrecError(f"the dataset has no {args.split!r} split")
    if args.json:
        print(json.dumps({"split": args.split, "step": trainer.state.step,
                          "checkpoint": checkpoint, **metrics}))  # fmt: skip
    else:
        title = (
            f"hotrec eval: {args.run_dir} ({args.split}, {checkpoint}, step {trainer.state.step})"
        )
        print_results({args.split: metrics}, title=title)
    return 0
