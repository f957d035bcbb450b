"""Path-selection policies: `static:<path>` baselines and `mprec`."""

from __future__ import annotations

from hotrec.errors import HotrecError
from hotrec.serving.paths import ServingPath
from hotrec.serving.policies.base import Decision, Pending, Policy
from hotrec.serving.policies.mprec import MPRecPolicy
from hotrec.serving.policies.static import StaticPolicy
from hotrec.serving.profile import Profile

__all__ = ["Decision", "MPRecPolicy", "Pending", "Policy", "StaticPolicy", "make_policy"]


def make_policy(
    spec: str,
    paths: list[ServingPath],
    profile: Profile | None,
    target_ms: float = 25.0,
    percentile: float = 95.0,
) -> Policy:
    """'mprec' or 'static:<representation>@<device>' over the served `paths`, fitted."""
    if spec == "mprec":
        if profile is None:
            raise HotrecError("the mprec policy needs a profile (hotrec serve-profile)")
        return MPRecPolicy(target_ms, percentile, paths).fit(profile)
    kind, _, name = spec.partition(":")
    if kind == "static" and name:
        by_name = {p.name: p for p in paths}
        if "@" not in name:
            name += "@cpu"
        if name not in by_name:
            raise HotrecError(f"no path {name!r} to serve statically (paths: {', '.join(by_name)})")
        return StaticPolicy(by_name[name], target_ms, percentile).fit(profile)
    raise HotrecError(f"unknown policy {spec!r}: use mprec or static:REPRESENTATION@DEVICE")
