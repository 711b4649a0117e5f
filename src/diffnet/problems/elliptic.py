"""Elliptic families on [0, 1]^2 with a random diffusivity, trained on their Ritz energy (the seed talk's
backup slides).

- ``Poisson``: -div(nu grad u) = 0, u = 1 at x = 0, u = 0 at x = 1, zero flux on y = 0 and y = 1.
- ``ReactionDiffusion``: -div(nu grad u) + kappa^2 u = f, u = 0 on the boundary,
  f = (2 pi^2 + kappa^2) sin(pi x) sin(pi y), so u = sin(pi x) sin(pi y) exactly when nu = 1.

log nu(x, y) = sum_i omega_i sqrt(lambda_i) phi_i(x) phi_i(y) with the exponential-covariance KL modes
(``numerics.kl``). The loss is the Q1 energy with nu at the 2x2 Gauss points (``numerics.energy``),
whose minimiser over the nodal values is the Q1 FEM solution on the same grid: network vs same-grid
FEM is pure learning error, same-grid FEM vs the refined FEM pure discretisation error.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from diffnet.numerics import energy, kl, q1
from diffnet.problems.base import Axis, Ladder, Metric, ReferenceSolution, Solvers, Variable

_UNIT = {"units": "1"}


@dataclass(frozen=True)
class Poisson:
    n: int
    modes: int = 4
    eta: float = 0.5
    omega_max: float = 3.0
    sampler: str = "sobol"
    fine_refine: int = 2
    tolerance: float = 1e-10
    name: str = "poisson"

    @classmethod
    def from_config(cls, exp) -> Poisson:
        p, r = exp.problem, exp.reference
        extra = {k: getattr(p, k) for k in ("kappa_min", "kappa_max") if k in p.fields}
        return cls(n=exp.grid.nx, modes=p.modes, eta=p.eta, omega_max=p.omega_max, sampler=p.sampler,
                   fine_refine=r.fine_refine, tolerance=r.tolerance, **extra)

    # --- declarations -------------------------------------------------------------------------------
    @property
    def axes(self) -> tuple[Axis, Axis]:
        nodes = np.linspace(0.0, 1.0, self.n)
        return (Axis("y", nodes, {"long_name": "dimensionless position y", **_UNIT}),
                Axis("x", nodes.copy(), {"long_name": "dimensionless position x", **_UNIT}))

    @property
    def parameters(self) -> dict[str, Variable]:
        return {"omega": Variable(("mode",), {"long_name": "Karhunen-Loeve coefficients of log nu", **_UNIT},
                                  shape=(self.modes,), low=-self.omega_max, high=self.omega_max)}

    @property
    def inputs(self) -> dict[str, Variable]:
        return {"nu": Variable(("y", "x"), {"long_name": "diffusivity nu", **_UNIT})}

    @property
    def loss_names(self) -> tuple[str, ...]:
        return ("energy",)

    @property
    def solvers(self) -> Solvers:
        return Solvers({"fem": "Q1 FEM on the same grid (scikit-fem, AMG-preconditioned CG)",
                        "fine": f"Q1 FEM on a {self.fine_refine}x refined grid, injected to this grid"},
                       truth="fine", discrete="fem")

    @property
    def field_attrs(self) -> dict[str, str]:
        return {"long_name": "solution u of -div(nu grad u) = 0", **_UNIT}

    @property
    def input_channels(self) -> int:
        return 3  # log nu, x, y

    def reach(self) -> int:
        return self.n - 1

    # --- parameters and inputs ----------------------------------------------------------------------
    def _unit_samples(self, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
        if self.sampler == "uniform":
            return rng.uniform(size=(n, d))
        from scipy.stats import qmc  # scipy.stats costs a second of import time; only sampling needs it

        with warnings.catch_warnings():
            # Sobol prefers powers of two; any prefix of a scrambled sequence is still low-discrepancy.
            warnings.simplefilter("ignore", UserWarning)
            return qmc.Sobol(d, scramble=True, seed=rng).random(n)

    def sample_parameters(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        unit = self._unit_samples(n, self.modes, rng)
        return {"omega": self.omega_max * (2.0 * unit - 1.0)}

    def log_nu(self, omega: np.ndarray) -> np.ndarray:
        nodes = self.axes[1].values
        return kl.log_diffusivity(np.asarray(omega, dtype=np.float64), nodes, nodes, self.eta)

    def input_fields(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"nu": np.exp(self.log_nu(params["omega"]))}

    def condition(self, record: Mapping[str, np.ndarray]) -> np.ndarray:
        return np.asarray(record["omega"], dtype=np.float64).reshape(-1, self.modes)

    def summary(self, params: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray, dict[str, str]]:
        log_nu = self.log_nu(params["omega"])
        contrast = (log_nu.max(axis=(1, 2)) - log_nu.min(axis=(1, 2))) / math.log(10.0)
        return "log10_contrast", contrast, {"long_name": "log10 of max(nu)/min(nu) on the grid", **_UNIT}

    # --- what the network sees and is trained on -----------------------------------------------------
    @functools.cached_property
    def _modes(self) -> dict[str, torch.Tensor]:
        """sqrt(lambda) and the KL modes at the nodes and at the Gauss points, computed once (float64)."""
        lam, at_nodes = kl.kl_eigenpairs(self.axes[1].values, self.modes, self.eta)
        gauss = energy.gauss_points(self.n)
        _, at_gauss = kl.kl_eigenpairs(gauss, self.modes, self.eta)
        sin = np.sin(np.pi * gauss)
        return {"sqrt_lam": torch.tensor(np.sqrt(lam)), "nodes": torch.tensor(at_nodes),
                "gauss": torch.tensor(at_gauss), "source_shape": torch.tensor(sin[:, None] * sin[None, :])}

    def _log_nu_torch(self, omega: torch.Tensor, where: str) -> torch.Tensor:
        m = self._modes
        phi = m[where].to(omega.dtype)
        coeff = omega * m["sqrt_lam"].to(omega.dtype)
        return torch.einsum("bi,iy,ix->byx", coeff, phi, phi)

    def _coordinates(self, cond: torch.Tensor) -> torch.Tensor:
        b = cond.shape[0]
        s = torch.linspace(0.0, 1.0, self.n, dtype=cond.dtype)
        return torch.stack([s[:, None].expand(self.n, self.n), s[None, :].expand(self.n, self.n)])[None].expand(
            b, 2, self.n, self.n)

    def network_input(self, cond: torch.Tensor) -> torch.Tensor:
        # log nu rather than nu: the contrast spans decades, and the solution responds to its logarithm.
        log_nu = self._log_nu_torch(cond[:, : self.modes], "nodes")
        return torch.cat([log_nu[:, None], self._coordinates(cond)], dim=1)

    def _dirichlet(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(lift, free): u = lift + free * raw meets the Dirichlet data exactly on the masked nodes."""
        x = torch.linspace(0.0, 1.0, self.n, dtype=dtype)
        free = torch.ones(self.n, self.n, dtype=dtype)
        free[:, 0] = 0.0
        free[:, -1] = 0.0
        # The linear lift is the solution for constant nu: the network learns only the deviation.
        return (1.0 - x)[None, :].expand(self.n, self.n), free

    def assemble(self, raw: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        lift, free = self._dirichlet(raw.dtype)
        return lift + free * raw[:, 0]

    def _nu_at_gauss(self, cond: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.exp(self._log_nu_torch(cond[:, : self.modes].to(dtype), "gauss"))

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        h = 1.0 / (self.n - 1)
        e = energy.dirichlet_energy(u, self._nu_at_gauss(cond, u.dtype), h, h)
        return {"energy": e, "total": e}

    def residual(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Self-check of a prediction: the mean square, over the free nodes, of the discrete PDE residual.

        The energy's gradient with respect to a free nodal value is h^2 times the Q1 residual of
        -div(nu grad u) (+ kappa^2 u - f) at that node, zero exactly at the same-grid FEM solution.
        Dividing by h^2 nu at the node gives the residual of the equation divided by nu,
        -lap u - grad(log nu).grad u (...): independent of the grid spacing, and not dominated by the
        regions of largest nu (a Jacobi-scaled residual). One backward pass of the energy alone.
        """
        h = 1.0 / (self.n - 1)
        free = (self.assemble(torch.ones_like(u)[:, None], cond) != self.assemble(torch.zeros_like(u)[:, None], cond))
        with torch.enable_grad():
            field = u.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.loss_terms(field, field, cond)["total"].sum(), field)
        r = torch.where(free, grad / (h**2 * self._nu_at_nodes(cond, grad.dtype)), torch.zeros_like(grad))
        return r.square().sum(dim=(1, 2)) / free.sum(dim=(1, 2))

    def _nu_at_nodes(self, cond: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """nu (sample, ny, nx) at the nodes, from the condition: the residual's Jacobi scaling."""
        return torch.exp(self._log_nu_torch(cond[:, : self.modes].to(dtype), "nodes"))

    # --- classical reference --------------------------------------------------------------------------
    def _solve(self, row: Mapping[str, np.ndarray], n: int, solver: str = "amg", assembly: str = "skfem"
               ) -> tuple[np.ndarray, float]:
        # scikit-fem and pyamg are imported where they are used: training ranks never load them.
        from diffnet.numerics import q1_fem as fem

        log_nu = kl.kl_log_nu_function(row["omega"], self.eta)
        u, timing = fem.solve_poisson(log_nu, n, tol=self.tolerance, solver=solver, assembly=assembly)
        return u, timing.assembly + timing.setup + timing.solve

    # --- quantity of interest and error measures ------------------------------------------------------
    @property
    def qoi_attrs(self) -> dict[str, str]:
        return {"long_name": "effective conductivity (flux through x = 1)", **_UNIT,
                "definition": "K = -int_{x=1} nu du/dx dy = int nu |grad u|^2 (the two agree at the FEM "
                              "solution); Q1 with nu at the 2 x 2 Gauss points of the field's own grid"}

    def nu_at_gauss_points(self, omega: np.ndarray, n: int) -> np.ndarray:
        """nu (sample, 2(n-1), 2(n-1)) at the 2 x 2 Gauss points of an n x n grid (any grid, numpy)."""
        g = q1.gauss_points(n)
        return np.exp(kl.log_diffusivity(np.asarray(omega, dtype=np.float64), g, g, self.eta))

    def qoi(self, u: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        return q1.dirichlet_integral(u, self.nu_at_gauss_points(params["omega"], u.shape[-1]))

    def lift(self) -> np.ndarray:
        """The Dirichlet data's linear lift 1 - x on the grid: the solution for constant nu."""
        x = self.axes[1].values
        return np.broadcast_to(1.0 - x, (self.n, self.n))

    @property
    def field_metrics(self) -> dict[str, Metric]:
        return {"rel_l2_deviation": Metric("relative L2 error of u - (1 - x), the part nu decides"),
                "rel_h1": Metric("relative H1-seminorm error (error of grad u, the flux)")}

    def field_errors(self, u: np.ndarray, truth: np.ndarray, params: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        e = (np.asarray(u, dtype=np.float64) - truth).reshape(len(u), -1)
        deviation = (truth - self.lift()).reshape(len(truth), -1)
        return {"rel_l2_deviation": np.linalg.norm(e, axis=1) / np.linalg.norm(deviation, axis=1),
                "rel_h1": q1.relative_h1_seminorm_error(u, truth)}

    # --- classical solves on a ladder of grids ---------------------------------------------------------
    def ladder_nodes(self, factors: tuple[float, ...]) -> tuple[int, ...]:
        """Node counts per axis of the rungs: factor times this grid's intervals, at least 3 nodes."""
        return tuple(sorted({max(3, round(f * (self.n - 1)) + 1) for f in factors}))

    @staticmethod
    def ladder_solver(n: int) -> str:
        # Stencil assembly always (scikit-fem's generic assembly costs more than the solve on these grids);
        # SuperLU below 257 nodes per side, AMG-CG above, where the direct solver's fill makes it the
        # slower one (measured: benchmarks/results/break_even.md names the solver of every rung).
        return "direct" if n <= 257 else "amg"

    def ladder(self, params: Mapping[str, np.ndarray], factors: tuple[float, ...]) -> Ladder:
        count = len(next(iter(params.values())))
        nodes = self.ladder_nodes(factors)
        fields = np.empty((len(nodes), count, self.n, self.n))
        seconds = np.empty((len(nodes), count))
        qoi = np.empty((len(nodes), count))
        # One untimed solve first: the first call pays for imports and caches, not for the grid.
        self._solve({name: np.asarray(v)[0] for name, v in params.items()}, nodes[0], solver="direct",
                    assembly="stencil")
        for r, m in enumerate(nodes):
            solver = self.ladder_solver(m)
            for k in range(count):
                row = {name: np.asarray(v)[k] for name, v in params.items()}
                u, secs = self._solve(row, m, solver=solver, assembly="stencil")
                start = time.perf_counter()
                fields[r, k] = q1.interpolate(u, self.n)
                seconds[r, k] = secs + time.perf_counter() - start
                qoi[r, k] = self.qoi(u[None], {name: np.asarray(v)[k : k + 1] for name, v in params.items()})[0]
        return Ladder(fields=fields, seconds=seconds, qoi=qoi,
                      solver=tuple(f"q1_{self.ladder_solver(m)}" for m in nodes), nodes=nodes)

    def reference(self, params: Mapping[str, np.ndarray], methods: tuple[str, ...] | None = None
                  ) -> ReferenceSolution:
        count = len(next(iter(params.values())))
        fine_n = self.fine_refine * (self.n - 1) + 1
        fields: dict[str, np.ndarray] = {}
        seconds: dict[str, np.ndarray] = {}
        qoi: dict[str, np.ndarray] = {}
        for method in methods or self.solvers.methods:
            out = np.empty((count, self.n, self.n))
            secs = np.empty(count)
            q = np.empty(count)
            for k in range(count):
                row = {name: np.asarray(v)[k] for name, v in params.items()}
                one = {name: np.asarray(v)[k : k + 1] for name, v in params.items()}
                if method == "exact":
                    start = time.perf_counter()
                    out[k] = self.exact_solution(one)[0]
                    secs[k] = time.perf_counter() - start
                    u = out[k]
                elif method == "fem":
                    # Each sample has its own nu: assembly + AMG set-up + solve is what a new field costs.
                    out[k], secs[k] = self._solve(row, self.n)
                    u = out[k]
                elif method == "fine":
                    u, secs[k] = self._solve(row, fine_n)
                    out[k] = u[:: self.fine_refine, :: self.fine_refine]
                else:
                    raise ValueError(f"unknown reference method '{method}' for {self.name}")
                q[k] = self.qoi(u[None], one)[0]  # on the method's own grid
            fields[method], seconds[method], qoi[method] = out, secs, q
        return ReferenceSolution(fields=fields, seconds=seconds, qoi=qoi)


@dataclass(frozen=True)
class ReactionDiffusion(Poisson):
    kappa_min: float = 1.0
    kappa_max: float = 8.0
    name: str = "reaction_diffusion"

    @property
    def parameters(self) -> dict[str, Variable]:
        return {**super().parameters,
                "kappa": Variable((), {"long_name": "reaction coefficient kappa", **_UNIT},
                                  low=self.kappa_min, high=self.kappa_max, valid="nonnegative")}

    @property
    def inputs(self) -> dict[str, Variable]:
        return {**super().inputs, "f": Variable(("y", "x"), {"long_name": "source term f", **_UNIT})}

    @property
    def solvers(self) -> Solvers:
        names = {"fem": "Q1 FEM on the same grid (scikit-fem, AMG-preconditioned CG)",
                 "fine": f"Q1 FEM on a {self.fine_refine}x refined grid, injected to this grid"}
        if self.omega_max == 0.0:
            # nu = 1 for every sample: the manufactured solution is the truth.
            return Solvers({"exact": "exact solution sin(pi x) sin(pi y)", **names}, truth="exact", discrete="fem")
        return Solvers(names, truth="fine", discrete="fem")

    @property
    def field_attrs(self) -> dict[str, str]:
        return {"long_name": "solution u of -div(nu grad u) + kappa^2 u = f", **_UNIT}

    @property
    def input_channels(self) -> int:
        return 4  # log nu, kappa, x, y

    def sample_parameters(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        unit = self._unit_samples(n, self.modes + 1, rng)
        return {"omega": self.omega_max * (2.0 * unit[:, : self.modes] - 1.0),
                "kappa": self.kappa_min + (self.kappa_max - self.kappa_min) * unit[:, self.modes]}

    @staticmethod
    def source(kappa: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """f(sample, y, x) = (2 pi^2 + kappa^2) sin(pi x) sin(pi y)."""
        k = np.asarray(kappa, dtype=np.float64).reshape(-1, 1, 1)
        return (2 * np.pi**2 + k**2) * np.sin(np.pi * y)[None, :, None] * np.sin(np.pi * x)[None, None, :]

    def input_fields(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        nodes = self.axes[1].values
        return {**super().input_fields(params), "f": self.source(params["kappa"], nodes, nodes)}

    def condition(self, record: Mapping[str, np.ndarray]) -> np.ndarray:
        kappa = np.asarray(record["kappa"], dtype=np.float64).reshape(-1, 1)
        return np.concatenate([super().condition(record), kappa], axis=1)

    def network_input(self, cond: torch.Tensor) -> torch.Tensor:
        # kappa as a constant channel, scaled to O(1) over the trained range.
        kappa = (cond[:, self.modes] / max(self.kappa_max, 1e-12))[:, None, None, None].expand(
            -1, 1, self.n, self.n)
        base = super().network_input(cond)
        return torch.cat([base[:, :1], kappa.to(base.dtype), base[:, 1:]], dim=1)

    def assemble(self, raw: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        free = torch.zeros(self.n, self.n, dtype=raw.dtype)
        free[1:-1, 1:-1] = 1.0
        return free * raw[:, 0]

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        h = 1.0 / (self.n - 1)
        kappa = cond[:, self.modes].to(u.dtype)
        f_q = (2 * math.pi**2 + kappa.square())[:, None, None] * self._modes["source_shape"].to(u.dtype)
        e = energy.reaction_diffusion_energy(u, self._nu_at_gauss(cond, u.dtype), kappa, f_q, h, h)
        return {"energy": e, "total": e}

    def exact_solution(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        if np.any(np.asarray(params["omega"]) != 0.0):
            raise ValueError("the exact solution sin(pi x) sin(pi y) holds only for nu = 1 (omega = 0)")
        nodes = self.axes[1].values
        count = len(params["kappa"])
        return np.broadcast_to(np.sin(np.pi * nodes)[:, None] * np.sin(np.pi * nodes)[None, :],
                               (count, self.n, self.n)).copy()

    def _solve(self, row: Mapping[str, np.ndarray], n: int, solver: str = "amg", assembly: str = "skfem"
               ) -> tuple[np.ndarray, float]:
        log_nu = kl.kl_log_nu_function(row["omega"], self.eta)
        kappa = float(row["kappa"])

        def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            return (2 * np.pi**2 + kappa**2) * np.sin(np.pi * x) * np.sin(np.pi * y)

        from diffnet.numerics import q1_fem as fem

        u, timing = fem.solve_reaction_diffusion(log_nu, kappa, f, n, tol=self.tolerance, solver=solver,
                                                 assembly=assembly)
        return u, timing.assembly + timing.setup + timing.solve

    @property
    def qoi_attrs(self) -> dict[str, str]:
        return {"long_name": "integral of u over the domain", **_UNIT,
                "definition": "int u dx dy of the Q1 interpolant on the field's own grid (trapezoidal rule)"}

    def qoi(self, u: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return q1.integral(u)

    @property
    def field_metrics(self) -> dict[str, Metric]:
        # No lift: the deviation from the boundary data is u itself, whose error rel_l2 already is.
        return {"rel_h1": Metric("relative H1-seminorm error (error of grad u)")}

    def field_errors(self, u: np.ndarray, truth: np.ndarray, params: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        return {"rel_h1": q1.relative_h1_seminorm_error(u, truth)}
