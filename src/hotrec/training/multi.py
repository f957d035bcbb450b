"""One model per representation over the same architecture and data, and the artifact of all.

`hotrec train --representations table,dhe,hybrid --run-dir RUN` trains RUN/<name>/ for each
name in turn (each a complete run directory, resumable on its own), then writes RUN/artifact/
(models/artifact.py) with every model and its validation and test metrics: the input of
`hotrec serve`. Running the same command again with --resume continues where it stopped:
finished representations are loaded from their checkpoints, an interrupted one resumes.
"""

from __future__ import annotations

import json
from pathlib import Path

from hotrec.config import RunConfig, config_from_dict, replace
from hotrec.errors import HotrecError
from hotrec.models.artifact import Entry, model_bytes, save_artifact
from hotrec.progress import console
from hotrec.training import runlog
from hotrec.training.runs import resume_run, start_run

ARTIFACT = "artifact"


def parse_representations(text: str) -> list[str]:
    """'table,dhe,hybrid' -> ['table', 'dhe', 'hybrid'], refusing unknown or repeated names."""
    from hotrec.config import CHOICES

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = CHOICES["model.embedding"]
    bad = [n for n in names if n not in known]
    if not names or bad:
        raise HotrecError(
            f"--representations takes a comma-separated list of {', '.join(known)}, got {text!r}"
        )
    if len(set(names)) != len(names):
        raise HotrecError(f"--representations lists a representation twice: {text!r}")
    return names


def train_representations(
    cfg: RunConfig, names: list[str], run_dir: Path, resume: bool = False, overwrite: bool = False
) -> dict:
    """Train (or resume, or reload) one run per representation, then write the artifact.

    Returns {"representations": {name: result}, "artifact": path, "stopped": reason}; the
    artifact is written only when every representation finished."""
    run_dir = Path(run_dir)
    if not resume and (run_dir / ARTIFACT).exists() and not overwrite:
        raise HotrecError(f"{run_dir} already holds an artifact: use --overwrite or --resume")
    results, entries = {}, []
    for i, name in enumerate(names):
        sub = run_dir / name
        console.print(f"[bold]representation {i + 1}/{len(names)}: {name}[/] ({sub})")
        emb_map = cfg.model.embedding_map if name == "hybrid" else ""  # the map is hybrid's
        one = replace(cfg, model={"embedding": name, "embedding_map": emb_map})
        trainer, result = _run_one(one, sub, resume, overwrite)
        results[name] = result
        if result["stopped"] == "interrupted":
            return {"representations": results, "artifact": None, "stopped": "interrupted"}
        model = trainer.model
        entries.append(
            Entry(name, trainer.cfg.model, result["val"], result["test"], model_bytes(model), model)
        )
    ds = trainer.dataset
    path = save_artifact(run_dir / ARTIFACT, ds.schema, cfg, entries, ds.path)
    console.print(f"artifact with {', '.join(names)}: {path}")
    return {"representations": results, "artifact": str(path), "stopped": "completed"}


def saved_config(run_dir: Path, names: list[str]) -> RunConfig:
    """The config of the first representation run found under run_dir (for --resume)."""
    for name in names:
        path = Path(run_dir) / name / runlog.CONFIG
        if path.is_file():
            return config_from_dict(json.loads(path.read_text()))
    raise HotrecError(f"{run_dir} holds no representation runs ({', '.join(names)}) to resume")


def _run_one(cfg: RunConfig, sub: Path, resume: bool, overwrite: bool):
    """A finished run reloaded, an unfinished one resumed, or a new one trained."""
    done = _finished_result(sub) if resume else None
    if done is not None:
        trainer = resume_run(sub, save_config=False, checkpoint=runlog.kept_checkpoint(sub))
        trainer.schedule.sync()
        console.print(f"already trained (val AUC {done['val']['auc']:.4f}): loaded its checkpoint")
        return trainer, done
    if resume and (sub / runlog.CHECKPOINT).exists():
        trainer = resume_run(sub)
    else:
        trainer = start_run(cfg, sub, overwrite=overwrite or resume)
    return trainer, trainer.fit()


def _finished_result(sub: Path) -> dict | None:
    path = sub / runlog.RESULT
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if result.get("stopped") == "interrupted" or not result.get("val"):
        return None
    return result
