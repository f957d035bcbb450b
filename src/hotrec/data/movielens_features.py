"""MovieLens dense features: time features from each rating's past, target statistics from
the train split only, and (--history) time-causal statistics. See data/movielens.py for the
tables and how a dataset is written."""

from __future__ import annotations

import numpy as np
import polars as pl

DAY_S = 86_400
YEAR_S = 365.25 * DAY_S
TIME_FEATURES = (
    "hour_of_day",
    "day_of_week",
    "days_since_user_first",
    "user_prior_ratings",
    "item_prior_ratings",
    "item_age_years",
)
TRAIN_FEATURES = (  # from the train split's labels only; out-of-fold for train rows
    "user_train_ratings",
    "item_train_ratings",
    "user_train_positive_rate",
    "item_train_positive_rate",
)
HISTORY_FEATURES = (  # --history: every earlier event, strictly before the row's timestamp
    "user_past_ratings",
    "item_past_ratings",
    "user_past_positive_rate",
    "item_past_positive_rate",
)
DENSE_NAMES = TIME_FEATURES + TRAIN_FEATURES
FOLDS = 5  # out-of-fold target statistics for train rows: row i is in fold i % FOLDS
PRIOR = 20.0  # smoothing: a rate is (positives + PRIOR * mean) / (ratings + PRIOR)


def dense_features(df: pl.DataFrame) -> np.ndarray:
    """[n, 6] float32 log1p time features of time-sorted ratings (past-only, no leakage)."""
    ts = pl.col("ts")
    feats = df.select(
        (ts // 3600 % 24).alias("hour_of_day"),
        ((ts // DAY_S + 3) % 7).alias("day_of_week"),  # 1970-01-01 was a Thursday
        ((ts - ts.first().over("user")) / DAY_S).alias("days_since_user_first"),
        pl.int_range(pl.len()).over("user").alias("user_prior_ratings"),
        pl.int_range(pl.len()).over("item").alias("item_prior_ratings"),
        ((ts - pl.col("release_ts")) / YEAR_S)
        .clip(lower_bound=0)
        .fill_null(0)
        .alias("item_age_years"),
    )
    return np.log1p(feats.to_numpy().astype(np.float64)).astype(np.float32)  # [n, 6]


def train_statistics(
    sparse: np.ndarray, label: np.ndarray, n_train: int, columns: tuple[int, int] = (0, 1)
) -> np.ndarray:
    """[n, 4] ratings and smoothed positive rates of each row's user and item, counted on the
    first n_train (train) rows only. A train row's rates come from the other FOLDS - 1 folds
    of train (out-of-fold), so its own label never reaches its features; val and test rows
    see all of train. Counts hold no labels and come from all of train."""
    n = len(sparse)
    out = np.zeros((n, 4))
    y = label[:n_train].astype(np.float64)
    mean = float(y.mean()) if n_train else 0.0
    fold = np.arange(n_train) % FOLDS
    for col, column in enumerate(columns):  # the user's and the item's ids
        ids = sparse[:, column]
        rows = int(ids.max()) + 1 if n else 1
        train = ids[:n_train]
        count = np.bincount(train, minlength=rows).astype(np.float64)
        pos = np.bincount(train, weights=y, minlength=rows)
        out[:, col] = count[ids]
        out[n_train:, 2 + col] = ((pos + PRIOR * mean) / (count + PRIOR))[ids[n_train:]]
        for f in range(FOLDS):
            held = fold == f
            c = count - np.bincount(train[held], minlength=rows)
            p = pos - np.bincount(train[held], weights=y[held], minlength=rows)
            m = float(y[~held].mean()) if (~held).any() else mean  # the prior: other folds too
            out[:n_train][held, 2 + col] = ((p + PRIOR * m) / (c + PRIOR))[train[held]]
    return out


def history_features(df: pl.DataFrame, label: np.ndarray) -> np.ndarray:
    """[n, 4] for each rating of time-sorted `df`: its user's and its item's ratings and
    smoothed positive rate over all ratings strictly before its timestamp, whatever their
    split, as an online feature store serves them (this assumes the labels of earlier events
    are known when a row is predicted). The smoothing prior is the positive rate of all
    ratings before the timestamp, so nothing from the row's own time or later is used."""
    d = df.select("user", "item", "ts").with_columns(
        y=pl.Series(label.astype(np.float64)), row=pl.int_range(pl.len())
    )

    def before(frame: pl.DataFrame, keys: list[str], n: str, p: str) -> pl.DataFrame:
        """Count and positives of `keys` groups at timestamps strictly before each one's."""
        group = [k for k in keys if k != "ts"]
        over = (lambda e: e.over(group)) if group else (lambda e: e)
        return (
            frame.group_by(keys)
            .agg(n_=pl.len(), p_=pl.col("y").sum())
            .sort(keys)
            .select(
                *keys,
                over(pl.col("n_").cum_sum() - pl.col("n_")).alias(n),
                over(pl.col("p_").cum_sum() - pl.col("p_")).alias(p),
            )
        )

    d = d.join(before(d, ["ts"], "all_n", "all_p"), on="ts", how="left")
    for key in ("user", "item"):
        d = d.join(before(d, [key, "ts"], f"{key}_n", f"{key}_p"), on=[key, "ts"], how="left")
    prior = pl.when(pl.col("all_n") > 0).then(pl.col("all_p") / pl.col("all_n")).otherwise(0.5)
    d = d.sort("row").with_columns(prior=prior)
    rate = lambda key: (pl.col(f"{key}_p") + PRIOR * pl.col("prior")) / (pl.col(f"{key}_n") + PRIOR)  # noqa: E731
    return d.select("user_n", "item_n", rate("user"), rate("item")).to_numpy().astype(np.float64)
