"""fae, hotline and fae with Slipstream on two ranks (torchrun, gloo, one thread each) against
one process: the same parameters, validation AUC and skip decisions; the hot-row replicas'
shared updates (negative control: replicas that apply only their own rank's updates must
differ); a fae run stopped on two ranks resumes on one as if uninterrupted."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.distributed.helpers import assert_close, hotrec, loopback, model, train_with_control

pytestmark = pytest.mark.skipif(not loopback(), reason="no loopback TCP for torch.distributed")

# a 1 KiB hot set (32 rows of D = 8) holds about 70% of the inputs: hot and cold batches both
PLACED = ["--preset", "tiny", "--threads", "1", "--hot-budget", "1KiB",
          "--set", "data.batch_size=64"]  # fmt: skip
SHORT = [*PLACED, "--max-steps", "12", "--eval-every", "6"]
SLIPSTREAM = [*PLACED, "--schedule", "fae", "--slipstream", "--epochs", "3",
              "--eval-every", "0", "--set", "data.shuffle=true"]  # fmt: skip


def result(run) -> dict:
    return json.loads((run / "result.json").read_text())


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """Each configuration trained once on one process and once on two ranks."""
    root = tmp_path_factory.mktemp("schedules")
    done: dict = {}

    def run(name: str, *opts) -> tuple:
        if name not in done:
            for world in ("1", "2"):
                out = root / f"{name}-{world}"
                r = hotrec("train", "--data", data, "--run-dir", out, "--nproc", world, *opts,
                           cwd=root)  # fmt: skip
                assert r.returncode == 0, r.stderr
                assert "Traceback" not in r.stderr and "Warning" not in r.stderr, r.stderr
            done[name] = (root / f"{name}-1", root / f"{name}-2")
        return done[name]

    return run


ADAGRAD = ["--set", "optim.sparse='adagrad'", "--set", "optim.dense='adam'"]


@pytest.mark.parametrize(
    "name, options, atol",
    [
        ("fae", ["--schedule", "fae"], 1e-6),  # SGD: every hot lookup to every rank
        ("hotline", ["--schedule", "hotline"], 1e-6),
        # per-row sums through the owners; Adam divides by the root of its second moment, so
        # the ranks' other summation order grows to about 2e-6 in 12 steps on some CPUs
        ("fae-adagrad", ["--schedule", "fae", *ADAGRAD], 1e-5),
    ],
)
def test_placement_schedules_on_two_ranks_train_as_one_process(runs, name, options, atol):
    one, two = runs(name, *SHORT, *options)
    assert_close(model(one), model(two), atol=atol)
    r1, r2 = result(one), result(two)
    assert r1["steps"] == r2["steps"] == 12 and r1["samples"] == r2["samples"]
    assert abs(r1["val"]["auc"] - r2["val"]["auc"]) < 1e-5
    p1, p2 = r1["placement"], r2["placement"]
    assert p1["hot_rows"] == p2["hot_rows"] == 32
    assert p1["hot_input_share"] == p2["hot_input_share"]
    assert 0.3 < p1["hot_input_share"] < 0.95  # hot and cold lookups both ran
    sent = r2["distributed"]["bytes_per_step"]
    assert sent["hot"] > 0 and sent["rows"] > 0  # the replica's updates and the cold rows


def test_slipstream_on_two_ranks_skips_what_one_process_skips(runs):
    one, two = runs("slipstream", *SLIPSTREAM)
    assert_close(model(one), model(two))
    r1, r2 = result(one), result(two)
    p1, p2 = r1["placement"], r2["placement"]
    assert p1["skipped_inputs"] > 0 and p1["skipped_inputs"] == p2["skipped_inputs"]
    assert p1["threshold"] == p2["threshold"]
    assert p1["slipstream_epochs"] == p2["slipstream_epochs"]
    assert r1["steps"] == r2["steps"] and r1["samples"] == r2["samples"]
    assert abs(r1["val"]["auc"] - r2["val"]["auc"]) < 1e-5


def test_negative_control_replicas_that_keep_their_own_updates_differ(tmp_path, data, runs):
    one, _ = runs("fae", *SHORT, "--schedule", "fae")
    run = train_with_control("HOTREC_TEST_LOCAL_HOT", "--data", data, "--run-dir", "local",
                             *SHORT, "--schedule", "fae", cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with pytest.raises(AssertionError):
        assert_close(model(one), model(tmp_path / "local"))


def test_a_fae_run_stopped_on_two_ranks_resumes_on_one_as_if_uninterrupted(tmp_path, data, runs):
    """The replica is pushed into the shards before the checkpoint and pulled from them at
    a resume, at any world size."""
    full, _ = runs("fae", *SHORT, "--schedule", "fae")
    first = hotrec("train", "--data", data, "--run-dir", "cut", "--nproc", 2, *SHORT,
                   "--schedule", "fae", "--max-steps", 5, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    shutil.copytree(tmp_path / "cut", tmp_path / "rest")
    rest = hotrec("train", "--resume", "rest", "--max-steps", 12, cwd=tmp_path)
    assert rest.returncode == 0, rest.stderr
    assert_close(model(full), model(tmp_path / "rest"))
