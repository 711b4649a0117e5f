"""Inviscid Burgers u_t + (u^2/2)_x = 0 on [0, 1] x [0, T] with u(0, t) = 0 and the cosine IC family
u0(x) = (1 - cos 2 pi c x)/2, c ~ U[c_min, c_max] (the seed talk's DiffNet problem).

Shocks form at t_b = 1/(pi c) < T for every c >= 1, so the solution is discontinuous and accuracy is
judged against the exact entropy solution (Lax-Oleinik), never against the training loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from diffnet.numerics import burgers_dg, exact, fv, marching, q1, residuals
from diffnet.problems.base import Axis, Grid, Ladder, Metric, ReferenceSolution, Solvers, Variable

_UNIT = {"units": "1"}


@dataclass(frozen=True)
class Burgers:
    grid: Grid
    c_min: float = 3.0
    c_max: float = 6.0
    scheme: str = "tvd2_cn"
    residual_form: str = "pointwise"
    constraint: str = "hard"
    penalty_weight: float = 1.0
    viscosity: float = 0.0
    fem_order: int = 1
    fem_refine: int = 4
    name: str = "burgers"

    @classmethod
    def from_config(cls, exp) -> Burgers:
        p = exp.problem
        return cls(
            grid=Grid(nx=exp.grid.nx, nt=exp.grid.nt, t_end=p.t_end),
            c_min=p.c_min,
            c_max=p.c_max,
            scheme=exp.loss.scheme,
            residual_form=exp.loss.residual_form,
            constraint=exp.loss.constraint,
            penalty_weight=exp.loss.penalty_weight,
            viscosity=exp.loss.viscosity,
            fem_order=exp.reference.fem_order,
            fem_refine=exp.reference.fem_refine,
        )

    @property
    def axes(self) -> tuple[Axis, Axis]:
        # Dimensionless space and time: CF's axis/standard_name attributes would demand metres and
        # "seconds since", so the coordinates carry only long_name and units "1".
        return (Axis("t", self.grid.t, {"long_name": "dimensionless time t", **_UNIT}),
                Axis("x", self.grid.x, {"long_name": "dimensionless position x", **_UNIT}))

    @property
    def parameters(self) -> dict[str, Variable]:
        return {"c": Variable((), {"long_name": "initial condition wavenumber", **_UNIT},
                              low=self.c_min, high=self.c_max, valid="positive")}

    @property
    def inputs(self) -> dict[str, Variable]:
        return {"u0": Variable(("x",), {"long_name": "initial condition u(x, 0)", **_UNIT})}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("pde", "ic", "bc")

    @property
    def solvers(self) -> Solvers:
        return Solvers({"exact": "exact entropy solution (Lax-Oleinik)",
                        "fem": "discontinuous Galerkin FEM solution"}, truth="exact")

    @property
    def field_attrs(self) -> dict[str, str]:
        return {"long_name": "solution u of the conservation law", **_UNIT}

    def sample_parameters(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"c": rng.uniform(self.c_min, self.c_max, size=n)}

    def input_fields(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"u0": self.initial_condition(params["c"])}

    def condition(self, record: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(record["u0"], dtype=np.float64)

    def summary(self, params: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray, dict[str, str]]:
        return "c", np.asarray(params["c"]), self.parameters["c"].attrs

    def reach(self) -> int:
        # u(x, t) is decided by u0 on [x - t max|u0|, x], and the cosine family has max|u0| = 1.
        return math.ceil(self.grid.t_end * (self.grid.nx - 1) - 1e-9)

    def initial_condition(self, params: np.ndarray) -> np.ndarray:
        c = np.asarray(params, dtype=np.float64)[:, None]
        return 0.5 * (1.0 - np.cos(2.0 * np.pi * c * self.grid.x[None, :]))

    @property
    def input_channels(self) -> int:
        return 3

    def network_input(self, u0: torch.Tensor) -> torch.Tensor:
        # The IC tiled along t, plus the normalised coordinates: zero-padded convolutions alone only
        # know where they are near the edges, and the field's shape depends strongly on t.
        b = u0.shape[0]
        nt, nx = self.grid.shape
        tt = torch.linspace(0.0, 1.0, nt, dtype=u0.dtype, device=u0.device)
        xx = torch.linspace(0.0, 1.0, nx, dtype=u0.dtype, device=u0.device)
        return torch.stack(
            [
                u0[:, None, :].expand(b, nt, nx),
                tt[None, :, None].expand(b, nt, nx),
                xx[None, None, :].expand(b, nt, nx),
            ],
            dim=1,
        )

    def assemble(self, raw: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
        u = raw[:, 0]
        if self.constraint == "hard":
            # Row t=0 is the IC and column x=0 the boundary value, exactly; the network only
            # supplies the unknowns, so no penalty weight has to be tuned.
            u = torch.cat([u0[:, None, :].to(u.dtype), u[:, 1:, :]], dim=1)
            u = torch.cat([torch.zeros_like(u[:, :, :1]), u[:, :, 1:]], dim=2)
        return u

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, u0: torch.Tensor) -> dict[str, torch.Tensor]:
        g = self.grid
        if self.residual_form == "preconditioned":
            # e = J1^{-1} r with J1 the Jacobian of the scheme's first-order twin at this field, held
            # fixed: the loss is |e|^2, about the squared distance from the discrete solution, and its
            # gradient in field space is e, a defect-correction step towards it.
            e = marching.newton_correction(self.scheme, u, g.dt, g.dx, self.viscosity,
                                           jacobian=residuals.FIRST_ORDER[self.scheme])
            unknowns = u[:, 1:, 1:]
            r = unknowns - (unknowns - torch.from_numpy(e).to(unknowns)).detach()
        else:
            r = residuals.residual(self.scheme, u, g.dt, g.dx, self.viscosity)
        if self.residual_form == "time_integrated":
            # Rows of r are u_j - u_{j-1} + dt(...): their running sum is u_j - u_0 + dt * sum(...), the
            # scheme in integral form. Same zero set, but an early row's error counts in every later row.
            r = torch.cumsum(r, dim=1)
        pde = r.square().mean(dim=(1, 2))
        ic = (u[:, 0, :] - u0).square().mean(dim=1)
        bc = u[:, :, 0].square().mean(dim=1)
        weight = self.penalty_weight if self.constraint == "penalty" else 0.0
        return {"pde": pde, "ic": ic, "bc": bc, "total": pde + weight * (ic + bc)}

    def residual(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Self-check of a prediction: the mean square of the scheme's residual and the IC/BC misfits."""
        terms = self.loss_terms(u, u, cond)
        return terms["pde"] + terms["ic"] + terms["bc"]

    def exact_solution(self, params: np.ndarray) -> np.ndarray:
        u0, primitive, du0 = exact.cosine_family(np.asarray(params, dtype=np.float64))
        return exact.lax_oleinik(u0, primitive, self.grid.x, self.grid.t, du0=du0)

    def fem_solution(self, params: np.ndarray) -> np.ndarray:
        u0, _, _ = exact.cosine_family(np.asarray(params, dtype=np.float64))
        return burgers_dg.dg_solve(u0, self.grid.x, self.grid.t, order=self.fem_order,
                            n_elements=self.fem_refine * (self.grid.nx - 1))

    def reference(self, params: Mapping[str, np.ndarray], methods: tuple[str, ...] | None = None
                  ) -> ReferenceSolution:
        solvers = {"exact": self.exact_solution, "fem": self.fem_solution}
        c = params["c"]
        fields, seconds, qoi = {}, {}, {}
        for method in methods or self.solvers.methods:
            start = time.perf_counter()
            fields[method] = solvers[method](c)
            # One batched solve of all samples; the per-sample time is its share of the wall time.
            seconds[method] = np.full(len(c), (time.perf_counter() - start) / len(c))
            qoi[method] = self.exact_qoi(c) if method == "exact" else self.qoi(fields[method], params)
        return ReferenceSolution(fields=fields, seconds=seconds, qoi=qoi)

    # --- quantity of interest and error measures ------------------------------------------------------
    @property
    def qoi_attrs(self) -> dict[str, str]:
        return {"long_name": "kinetic energy at t_end", **_UNIT,
                "definition": "E(T) = int_0^1 u(x, T)^2 / 2 dx: what the shocks have left of the initial "
                              "energy (the entropy condition decides it); trapezoidal rule on the field's "
                              "own nodes, cell sums for finite volumes, 65537 nodes for the exact solution"}

    def qoi(self, u: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        last = 0.5 * np.asarray(u, dtype=np.float64)[:, -1, :] ** 2
        return np.trapezoid(last, dx=1.0 / (last.shape[-1] - 1), axis=-1)

    def exact_qoi(self, c: np.ndarray) -> np.ndarray:
        """E(T) of the exact solution on 65537 nodes (at least 64 per grid interval): a shock costs the
        trapezoidal rule at most jump^2 h / 4, here below 1e-5."""
        x = np.linspace(0.0, 1.0, max(65537, 64 * (self.grid.nx - 1) + 1))
        u0, primitive, du0 = exact.cosine_family(np.asarray(c, dtype=np.float64))
        u = exact.lax_oleinik(u0, primitive, x, np.array([self.grid.t_end]), du0=du0)
        return np.trapezoid(0.5 * u[:, 0, :] ** 2, x, axis=-1)

    @property
    def field_metrics(self) -> dict[str, Metric]:
        return {}  # the generic rel L2, L1 and max errors against the exact solution

    def field_errors(self, u: np.ndarray, truth: np.ndarray, params: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        return {}

    # --- classical solves on a ladder of grids ---------------------------------------------------------
    # The network's own scheme, marched row by row with Newton, on grids up to 4x this one and at most this
    # many nodes per axis (its cost grows like nodes^2 x Newton iterations, and finite volumes are cheaper at
    # every error measured in benchmarks/results/break_even.md; they cover the finer rungs).
    MARCH_MAX_FACTOR = 4
    MARCH_MAX_NODES = 1024

    def ladder(self, params: Mapping[str, np.ndarray], factors: tuple[float, ...]) -> Ladder:
        """Two classical solvers on factor x this grid's intervals, each sampled at this grid's nodes and times:
        Godunov finite volumes (first order, explicit, CFL 0.9), the cheapest entropy-consistent solver of
        this family, and the network's own implicit scheme marched row by row (its discrete solution)."""
        c = np.asarray(params["c"], dtype=np.float64)
        initial, primitive, _ = exact.cosine_family(c)
        fields, seconds, qoi, solver, nodes = [], [], [], [], []
        fv.godunov_fv(np.zeros((1, 4)), 0.25, self.grid.t[:2])  # untimed: the first call pays for warm-up
        for m in sorted({max(4, round(f * (self.grid.nx - 1))) for f in factors}):
            start = time.perf_counter()
            edges = np.linspace(0.0, 1.0, m + 1)
            u_cells = fv.godunov_fv(fv.cell_averages(primitive, edges), 1.0 / m, self.grid.t)
            fields.append(fv.cells_to_nodes(u_cells, edges, self.grid.x))
            # One batched solve of all samples; the per-sample time is its share of the wall time.
            seconds.append(np.full(len(c), (time.perf_counter() - start) / len(c)))
            qoi.append(0.5 * np.sum(u_cells[:, -1, :] ** 2, axis=-1) / m)
            solver.append("godunov_fv")
            nodes.append(m)
        if self.scheme in marching.MARCHABLE:
            for f in sorted(set(factors)):
                nx, nt = round(f * (self.grid.nx - 1)) + 1, round(f * (self.grid.nt - 1)) + 1
                if f > self.MARCH_MAX_FACTOR or min(nx, nt) < 5 or max(nx, nt) > self.MARCH_MAX_NODES:
                    continue
                start = time.perf_counter()
                u0 = initial(np.linspace(0.0, 1.0, nx)[None, :])
                u = marching.march(self.scheme, u0, nt, self.grid.t_end / (nt - 1), 1.0 / (nx - 1), self.viscosity)
                fields.append(q1.interpolate(u, self.grid.shape))
                seconds.append(np.full(len(c), (time.perf_counter() - start) / len(c)))
                qoi.append(self.qoi(u, params))
                solver.append(f"march_{self.scheme}")
                nodes.append(nx)
        return Ladder(fields=np.stack(fields), seconds=np.stack(seconds), qoi=np.stack(qoi), solver=tuple(solver),
                      nodes=tuple(nodes))
