"""The numbers every accuracy report prints, checked against values computed by hand.

``evaluate.error_norms`` (relative L2, L1 with the node-cell factor, max norm), ``all_errors`` (the cell
factor from the family's axes, the QoI's relative error) and the error-matched comparison (``match`` and
``_ladder_and_match``): each value below is worked out in the comment beside it, not recomputed with the
code under test. Written to kill the mutants of docs/mutation.md.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

from diffnet import evaluate
from diffnet.problems.base import Axis


def test_error_norms_per_sample_against_hand_computed_values():
    ref = np.array([[[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]],      # |ref| = 5
                    [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]])     # |ref| = sqrt(6)
    u = np.array([[[3.0, 0.0, 4.0], [1.0, -2.0, 0.0]],       # e = (0, 0, 0, 1, -2, 0): |e| = sqrt(5)
                  [[1.0, 1.0, 1.0], [1.0, 1.0, 4.0]]])       # e = (0, 0, 0, 0, 0, 3): |e| = 3
    norms = evaluate.error_norms(u, ref, cell=0.125)
    assert set(norms) == {"rel_l2", "l1", "linf"}
    np.testing.assert_allclose(norms["rel_l2"], [math.sqrt(5) / 5, 3 / math.sqrt(6)], rtol=1e-14)
    np.testing.assert_allclose(norms["l1"], [3 * 0.125, 3 * 0.125], rtol=1e-14)  # sum |e| times the cell
    np.testing.assert_allclose(norms["linf"], [2.0, 3.0], rtol=1e-14)
    # The L1 factor is the cell passed in, whatever it is: halving it halves the L1 and nothing else.
    halved = evaluate.error_norms(u, ref, cell=0.0625)
    np.testing.assert_allclose(halved["l1"], norms["l1"] / 2, rtol=1e-14)
    np.testing.assert_array_equal(halved["rel_l2"], norms["rel_l2"])


def test_error_norms_are_zero_for_the_reference_itself_and_scale_with_the_error():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(4, 5, 6))
    assert all(np.all(v == 0) for v in evaluate.error_norms(ref.copy(), ref, 0.1).values())
    e = rng.normal(size=ref.shape)
    one, two = evaluate.error_norms(ref + e, ref, 0.1), evaluate.error_norms(ref + 2 * e, ref, 0.1)
    for k in one:
        np.testing.assert_allclose(two[k], 2 * one[k], rtol=1e-12)
    # Each sample's norm only sees that sample.
    np.testing.assert_allclose(one["rel_l2"][1], np.linalg.norm(e[1]) / np.linalg.norm(ref[1]), rtol=1e-12)


class _Family:
    """The least a family must offer ``all_errors`` and ``_ladder_and_match``: axes, field errors, QoI attrs."""

    def __init__(self, hy: float = 0.5, hx: float = 0.25):
        self.axes = (Axis("y", np.array([0.0, hy]), {}), Axis("x", np.array([1.0, 1.0 + hx]), {}))
        self.field_metrics = {}
        self.qoi_attrs = {"long_name": "thing"}

    def field_errors(self, u, truth, params):
        return {}


def test_all_errors_take_the_cell_from_the_axes_and_the_qoi_error_relative_to_its_magnitude():
    family = _Family(hy=0.5, hx=0.25)  # cell 0.125, not the sum 0.75
    truth = np.array([[[1.0, 2.0], [2.0, 4.0]]])
    u = np.array([[[1.0, 2.0], [2.0, 2.0]]], dtype=np.float32)  # one error of -2
    got = evaluate.all_errors(family, u, np.array([-3.0]), truth, np.array([-2.0]), {})
    assert list(got) == ["rel_l2", "l1", "linf", "qoi_error"]
    assert got["rel_l2"][0] == pytest.approx(2 / 5)  # |truth| = sqrt(1 + 4 + 4 + 16) = 5
    assert got["l1"][0] == pytest.approx(2 * 0.125)
    assert got["linf"][0] == pytest.approx(2.0)
    assert got["qoi_error"][0] == pytest.approx(0.5)  # |-3 - (-2)| / |-2|: positive for a negative truth
    assert got["rel_l2"].dtype == np.float64


def test_all_errors_include_the_family_field_errors():
    family = _Family()
    family.field_errors = lambda u, truth, params: {"extra": params["k"] * (u - truth).sum(axis=(1, 2))}
    truth = np.ones((1, 2, 2))
    got = evaluate.all_errors(family, truth + 0.5, np.array([1.0]), truth, np.array([1.0]), {"k": 7.0})
    assert got["extra"][0] == pytest.approx(7.0 * 4 * 0.5) and got["qoi_error"][0] == 0.0


def test_metric_attrs_list_generic_family_and_qoi_measures_in_order():
    family = _Family()
    family.field_metrics = {"rel_h1": SimpleNamespace(units="1", long_name="H1 error")}
    attrs = evaluate.metric_attrs(family)
    assert list(attrs) == ["rel_l2", "l1", "linf", "rel_h1", "qoi_error"]
    assert attrs["rel_h1"] == {"units": "1", "long_name": "H1 error"}
    assert attrs["qoi_error"] == {"units": "1", "long_name": "relative error of the thing"}


# --- the error-matched comparison -------------------------------------------------------------------------
LADDER_ERRORS = np.array([
    [0.50, 0.50, 0.50],   # rung 0: median 0.5, too coarse
    [0.12, 0.00, 0.90],   # rung 1: median 0.12 == the network's median (mean 0.34): as accurate
    [0.05, 0.05, 0.05],   # rung 2
    [0.15, 0.15, 0.15],   # rung 3: cheapest of all but less accurate than the network's median
])
LADDER_SECONDS = np.array([
    [1.0, 1.0, 1.0],
    [4.0, 1.0, 1.0],      # mean 2 (median 1)
    [3.0, 3.0, 3.0],
    [0.5, 0.5, 0.5],
])


def test_match_takes_the_network_median_and_the_cheapest_rung_by_mean_seconds():
    network = np.array([0.10, 0.40, 0.12])  # median 0.12, mean 0.2067 (which would admit rung 3)
    got = evaluate.match(network, 0.5, LADDER_ERRORS, LADDER_SECONDS)
    assert got == {"rung": 1, "error": pytest.approx(0.12), "seconds": pytest.approx(2.0),
                   "ratio": pytest.approx(4.0), "network_error": pytest.approx(0.12)}
    assert isinstance(got["rung"], int) and isinstance(got["ratio"], float)
    # A network just less accurate than rung 1 is matched by it; just more accurate, by rung 2 at 3 s.
    assert evaluate.match(np.array([0.13]), 0.5, LADDER_ERRORS, LADDER_SECONDS)["rung"] == 1
    finer = evaluate.match(np.array([0.11]), 1.5, LADDER_ERRORS, LADDER_SECONDS)
    assert finer["rung"] == 2 and finer["error"] == pytest.approx(0.05) and finer["ratio"] == pytest.approx(2.0)


def test_match_when_the_network_beats_every_rung():
    got = evaluate.match(np.array([0.01, 0.02, 0.03]), 0.5, LADDER_ERRORS, LADDER_SECONDS)
    assert got["rung"] == -1 and got["network_error"] == pytest.approx(0.02)
    assert all(math.isnan(got[k]) for k in ("error", "seconds", "ratio"))
    assert set(got) == {"rung", "error", "seconds", "ratio", "network_error"}


def test_ladder_and_match_tabulates_every_rung_and_matches_each_measure():
    family = _Family(hy=0.5, hx=0.5)  # cell 0.25
    truth = np.ones((2, 2, 2))  # |truth| = 2 per sample
    u_ladder = np.stack([truth + np.array([0.2, 0.4])[:, None, None],      # rung 0: errors 0.2, 0.4 everywhere
                         truth + np.array([0.02, 0.04])[:, None, None],    # rung 1: 0.02, 0.04
                         truth + np.array([0.002, 0.004])[:, None, None]])  # rung 2: accurate but slow
    truth_qoi = np.array([2.0, 4.0])
    ref = xr.Dataset({
        "u_ladder": (("rung", "sample", "y", "x"), u_ladder),
        "qoi_ladder": (("rung", "sample"), np.array([[2.2, 4.8], [2.02, 4.04], [2.002, 4.004]])),
        "seconds_ladder": (("rung", "sample"), np.array([[1.0, 1.0], [3.0, 5.0], [100.0, 100.0]]),
                           {"units": "s", "long_name": "per solve"}),
    })
    attrs = evaluate.metric_attrs(family)
    network = {"rel_l2": np.array([0.3, 0.3]),       # rung 0 (median 0.3, as accurate, cheaper)
               "l1": np.array([1e-3, 1e-3]),         # beats every rung (rung 2: median 0.003): -1
               "linf": np.array([0.1, 0.1]),         # rung 1 (median 0.03)
               "qoi_error": np.array([0.2, 0.1])}    # median 0.15 == rung 0's median 0.15
    seen = []
    family.field_errors = lambda u, t, params: seen.append(params) or {}
    out = evaluate._ladder_and_match(family, ref, {"k": 1}, truth, truth_qoi, network, 0.25, attrs)
    assert seen == [{"k": 1}] * 3  # every rung is judged with the samples' parameters

    def values(name):
        return np.asarray(out[name][1])

    for k in attrs:
        assert out[f"ladder_{k}"][0] == ("rung", "sample")
        assert out[f"ladder_{k}"][2] == {**attrs[k], "long_name": f"{attrs[k]['long_name']} of the ladder rung"}
    per_rung = [[0.2, 0.4], [0.02, 0.04], [0.002, 0.004]]
    np.testing.assert_allclose(values("ladder_rel_l2"), per_rung, rtol=1e-10)  # |e| = 2 err, |truth| = 2
    np.testing.assert_allclose(values("ladder_l1"), per_rung, rtol=1e-10)  # 4 nodes x err x cell 0.25
    np.testing.assert_allclose(values("ladder_linf"), per_rung, rtol=1e-10)
    np.testing.assert_allclose(values("ladder_qoi_error"), [[0.1, 0.2], [0.01, 0.01], [0.001, 0.001]], rtol=1e-10)
    assert out["seconds_ladder"] == (("rung", "sample"), ref["seconds_ladder"].values,
                                     {"units": "s", "long_name": "per solve"})

    assert out["matched_rung"][0] == "metric" and values("matched_rung").dtype == np.int32
    np.testing.assert_array_equal(values("matched_rung"), [0, -1, 1, 0])
    np.testing.assert_allclose(values("matched_error"), [0.3, np.nan, 0.03, 0.15], rtol=1e-12)
    np.testing.assert_allclose(values("network_error"), [0.3, 1e-3, 0.1, 0.15], rtol=1e-12)
    np.testing.assert_allclose(values("matched_seconds"), [1.0, np.nan, 4.0, 1.0], rtol=1e-12)
    np.testing.assert_allclose(values("matched_ratio"), [4.0, np.nan, 16.0, 4.0], rtol=1e-12)
    assert out["network_seconds"][:2] == ((), 0.25)
    assert {k: v[2] for k, v in out.items() if not k.startswith("ladder_") and k != "seconds_ladder"} == {
        "matched_rung": {"long_name": "cheapest ladder rung at least as accurate as DiffNet (median over "
                                      "samples; -1: none is)"},
        "matched_error": {"units": "1", "long_name": "median error of the matched rung"},
        "network_error": {"units": "1", "long_name": "median error of DiffNet"},
        "matched_seconds": {"units": "s", "long_name": "mean wall time per solve of the matched rung"},
        "network_seconds": {"units": "s", "long_name": "DiffNet inference per solution"},
        "matched_ratio": {"units": "1", "long_name": "error-matched ratio t_classical / t_network (> 1: DiffNet "
                                                     "answers a query faster)"},
    }
    for name in ("matched_error", "network_error", "matched_seconds", "matched_ratio"):
        assert out[name][0] == "metric"
