"""Darcy flow through rough, high-contrast media: -div(nu grad u) = f on [0, 1]^2 (issue 23).

Set-ups (config ``setup``):

- ``fno``: f = 1, u = 0 on the whole boundary (FNO's and PDEBench's problem). QoI: int u, which at the
  discrete solution equals the compliance int nu |grad u|^2.
- ``flow``: f = 0, u = 1 at x = 0, u = 0 at x = 1, zero flux on y = 0 and y = 1. QoI: the effective
  permeability int nu |grad u|^2 (= the flux through x = 1), as the Poisson family's.

The coefficient of each sample is one draw of a Gaussian random field g with covariance
(-Laplace + tau^2 I)^-alpha (``numerics.grf``, FNO's defaults tau = 3, alpha = 2), identified by a
per-sample seed: ``two_phase`` nu = nu_high where g > 0 and nu_low elsewhere (FNO's 12/3), or
``lognormal`` nu = exp(sigma g / std(g)) (sigma is the standard deviation of log nu). The draw is a
band-limited field defined everywhere, so nu at the 2 x 2 Gauss points of *any* grid comes from the same
image: the network's loss, the same-grid FEM and the refined FEM (and every ladder rung) see one medium.

The per-sample condition is [log nu at the nodes | log nu at the Gauss points], flattened. A user's own
field (``diffnet infer --inputs``) gives nu at the nodes only; its Gauss points then take the value of
their nearest node (the field read as constant on each node's dual cell), and its seed is -1.

Loss: the Q1 Ritz energy 1/2 int nu |grad u|^2 - int f u with nu at the Gauss points and the Dirichlet
data imposed exactly (``numerics.energy``); its minimiser is the same-grid Q1 FEM solution
(``numerics.q1_fem``, stencil assembly), so network vs same-grid FEM is pure learning error.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from diffnet.numerics import energy, grf, q1
from diffnet.problems.base import Metric, ParameterError, Solvers, Variable
from diffnet.problems.elliptic import Poisson

_UNIT = {"units": "1"}
# A user's lognormal field may reach this many standard deviations of log nu before it counts as outside
# the trained range: a Gaussian exceeds 6 sigma with probability 1e-9 per point, so the sampler's fields
# essentially never do.
_LOGNORMAL_SPAN = 6.0


@dataclass(frozen=True)
class Darcy(Poisson):
    setup: str = "fno"
    coefficient: str = "two_phase"
    nu_high: float = 12.0
    nu_low: float = 3.0
    sigma: float = 1.0
    tau: float = 3.0
    alpha: float = 2.0
    image: int = 256
    name: str = "darcy"

    @classmethod
    def from_config(cls, exp) -> Darcy:
        p, r = exp.problem, exp.reference
        return cls(n=exp.grid.nx, setup=p.setup, coefficient=p.coefficient, nu_high=p.nu_high, nu_low=p.nu_low,
                   sigma=p.sigma, tau=p.tau, alpha=p.alpha, image=p.image, fine_refine=r.fine_refine,
                   tolerance=r.tolerance)

    # --- declarations -------------------------------------------------------------------------------
    @functools.cached_property
    def field_law(self) -> grf.GaussianRandomField:
        return grf.GaussianRandomField(tau=self.tau, alpha=self.alpha, size=self.image)

    @property
    def nu_range(self) -> tuple[float, float]:
        """The range of nu the network is trained on."""
        if self.coefficient == "two_phase":
            return self.nu_low, self.nu_high
        span = _LOGNORMAL_SPAN * self.sigma
        return math.exp(-span), math.exp(span)

    @property
    def parameters(self) -> dict[str, Variable]:
        low, high = self.nu_range
        return {
            "seed": Variable((), {"long_name": "seed of the sample's Gaussian random field (-1: a user's field)",
                                  **_UNIT}),
            # Derived from the field; declared with the trained range so that a user's field of another
            # contrast is flagged (warning and untrusted) by the generic self-check.
            "nu_min": Variable((), {"long_name": "smallest nu on the grid's nodes", **_UNIT}, low=low, high=high,
                               valid="positive"),
            "nu_max": Variable((), {"long_name": "largest nu on the grid's nodes", **_UNIT}, low=low, high=high,
                               valid="positive"),
        }

    def generator_attrs(self) -> dict[str, str]:
        law = self.field_law
        rule = (f"nu = {self.nu_high:g} where g > 0, {self.nu_low:g} elsewhere" if self.coefficient == "two_phase"
                else f"nu = exp({self.sigma:g} g / {math.sqrt(law.variance()):.6g})")
        return {"generator": "Gaussian random field g, covariance (-Laplace + tau^2 I)^-alpha on the periodic "
                             "unit square, drawn by FFT (diffnet.numerics.grf, seeded per sample)",
                "generator_tau": f"{self.tau:g}", "generator_alpha": f"{self.alpha:g}",
                "generator_image": f"{self.image} x {self.image} Fourier modes",
                "coefficient": self.coefficient, "coefficient_rule": rule,
                "gauss_points": "nu at the 2 x 2 Gauss points of every grid is sampled from the same draw"}

    @property
    def inputs(self) -> dict[str, Variable]:
        return {"nu": Variable(("y", "x"), {"long_name": "permeability nu at the nodes", **_UNIT,
                                            **self.generator_attrs()}, valid="positive")}

    @property
    def solvers(self) -> Solvers:
        return Solvers({"fem": "Q1 FEM on the same grid (stencil assembly, AMG-preconditioned CG)",
                        "fine": f"Q1 FEM on a {self.fine_refine}x refined grid, injected to this grid"},
                       truth="fine", discrete="fem")

    @property
    def field_attrs(self) -> dict[str, str]:
        eq = "-div(nu grad u) = 1, u = 0 on the boundary" if self.setup == "fno" else \
            "-div(nu grad u) = 0, u = 1 at x = 0, u = 0 at x = 1"
        return {"long_name": f"pressure u of {eq}", **_UNIT}

    @property
    def input_channels(self) -> int:
        return 4  # log nu at the nodes, cell mean of log nu at the Gauss points, x, y

    # --- the medium ---------------------------------------------------------------------------------
    def _transform(self, g: np.ndarray) -> np.ndarray:
        """nu from g."""
        if self.coefficient == "two_phase":
            return np.where(g > 0.0, self.nu_high, self.nu_low)
        return np.exp(self.sigma * g / math.sqrt(self.field_law.variance()))

    def nu_at(self, seed: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """nu (len(y), len(x)) of the draw ``seed`` at the tensor points (y_j, x_i)."""
        if not (seed >= 0 and float(seed).is_integer()):
            raise ParameterError(f"seed {seed:g} names no generated field (a user's field, seed -1, has nu only "
                                 "at its nodes); classical references need a sampled field")
        coeff = self.field_law.coefficients(int(seed))
        return self._transform(self.field_law.evaluate(coeff, x, y))

    def nu_nodes(self, seeds: np.ndarray, n: int | None = None) -> np.ndarray:
        nodes = np.linspace(0.0, 1.0, n or self.n)
        return np.stack([self.nu_at(s, nodes, nodes) for s in np.asarray(seeds, dtype=np.float64).ravel()])

    def nu_gauss(self, params: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """nu (sample, 2(n-1), 2(n-1)) at the Gauss points of an n x n grid, from the samples' draws."""
        g = q1.gauss_points(n)
        return np.stack([self.nu_at(s, g, g) for s in np.asarray(params["seed"], dtype=np.float64).ravel()])

    @staticmethod
    def nearest_node_gauss(nu_nodes: np.ndarray) -> np.ndarray:
        """Gauss-point values of a field known at the nodes only: each point takes its nearest node's value.

        Points (q, p) of cell (j, i) lie at offsets 0.21 and 0.79 of the cell, nearest to nodes j + q, i + p.
        """
        nu = np.asarray(nu_nodes)
        rows = np.repeat(np.arange(nu.shape[-2] - 1), 2) + np.tile([0, 1], nu.shape[-2] - 1)
        cols = np.repeat(np.arange(nu.shape[-1] - 1), 2) + np.tile([0, 1], nu.shape[-1] - 1)
        return nu[..., rows[:, None], cols[None, :]]

    def sample_parameters(self, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        # Seeds below 2^31 are stored exactly in the file's float64.
        seeds = rng.integers(0, 2**31 - 1, size=n).astype(np.float64)
        nu = self.nu_nodes(seeds)
        return {"seed": seeds, "nu_min": nu.min(axis=(1, 2)), "nu_max": nu.max(axis=(1, 2))}

    def input_fields(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"nu": self.nu_nodes(params["seed"])}

    def from_inputs(self, fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Parameters of samples given by a user's own nu(sample, y, x) (already checked: finite, positive)."""
        nu = np.asarray(fields["nu"], dtype=np.float64)
        return {"seed": np.full(len(nu), -1.0), "nu_min": nu.min(axis=(1, 2)), "nu_max": nu.max(axis=(1, 2))}

    def condition(self, record: Mapping[str, np.ndarray]) -> np.ndarray:
        seeds = np.asarray(record["seed"], dtype=np.float64).ravel()
        nu = np.asarray(record["nu"], dtype=np.float64) if "nu" in record else self.nu_nodes(seeds)
        out = np.empty((len(seeds), self.n * self.n + (2 * (self.n - 1)) ** 2))
        gauss = q1.gauss_points(self.n)
        for k, seed in enumerate(seeds):
            at_gauss = self.nu_at(seed, gauss, gauss) if seed >= 0 else self.nearest_node_gauss(nu[k])
            out[k, : self.n**2] = np.log(nu[k]).ravel()
            out[k, self.n**2 :] = np.log(at_gauss).ravel()
        return out

    def summary(self, params: Mapping[str, np.ndarray]) -> tuple[str, np.ndarray, dict[str, str]]:
        if self.coefficient == "two_phase" and np.all(np.asarray(params["seed"]) >= 0):
            nu = self.nu_nodes(params["seed"])
            return "high_fraction", (nu > math.sqrt(self.nu_low * self.nu_high)).mean(axis=(1, 2)), \
                {"long_name": "fraction of the nodes in the high-permeability phase", **_UNIT}
        contrast = np.log10(np.asarray(params["nu_max"]) / np.asarray(params["nu_min"]))
        return "log10_contrast", contrast, {"long_name": "log10 of max(nu)/min(nu) on the grid", **_UNIT}

    # --- what the network sees and is trained on -----------------------------------------------------
    def _split(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = 2 * (self.n - 1)
        return cond[:, : self.n**2].reshape(-1, self.n, self.n), cond[:, self.n**2 :].reshape(-1, m, m)

    @property
    def _log_center_scale(self) -> tuple[float, float]:
        low, high = math.log(self.nu_range[0]), math.log(self.nu_range[1])
        if self.coefficient == "lognormal":
            return 0.0, max(self.sigma, 1e-12)
        return 0.5 * (low + high), max(0.5 * (high - low), 1e-12)

    def network_input(self, cond: torch.Tensor) -> torch.Tensor:
        # Normalised log nu: the two phases at -1 and +1 (lognormal: log nu / sigma). The cell means of the
        # Gauss-point values carry what the nodes miss (an interface crossing a cell), at node (j, i) of
        # the cell's lower-left corner; the last row and column repeat their neighbours.
        center, scale = self._log_center_scale
        nodes, gauss = self._split(cond)
        cells = torch.nn.functional.avg_pool2d(gauss[:, None], 2)
        cells = torch.nn.functional.pad(cells, (0, 1, 0, 1), mode="replicate")
        return torch.cat([(nodes[:, None] - center) / scale, (cells - center) / scale, self._coordinates(cond)],
                         dim=1)

    @property
    def _u_scale(self) -> float:
        # fno: max u of -lap u = 1 on the unit square is 0.074, divided by nu; the raw output is kept O(1).
        return 0.1 / math.exp(self._log_center_scale[0])

    def assemble(self, raw: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if self.setup == "flow":
            return super().assemble(raw, cond)
        free = torch.zeros(self.n, self.n, dtype=raw.dtype)
        free[1:-1, 1:-1] = 1.0
        return free * raw[:, 0] * self._u_scale

    def loss_terms(self, u: torch.Tensor, raw: torch.Tensor, cond: torch.Tensor) -> dict[str, torch.Tensor]:
        h = 1.0 / (self.n - 1)
        nu_q = torch.exp(self._split(cond)[1].to(u.dtype))
        e = energy.dirichlet_energy(u, nu_q, h, h)
        if self.setup == "fno":
            e = e - 0.25 * h * h * energy.q1_at_gauss(u).sum(dim=(-2, -1))  # - int f u, f = 1
        return {"energy": e, "total": e}

    def _nu_at_nodes(self, cond: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # The residual is Poisson's (Jacobi-scaled Q1), with nu at the nodes read from the condition.
        return torch.exp(self._split(cond)[0].to(dtype))

    # --- classical reference --------------------------------------------------------------------------
    def solve_field(self, nu_q: np.ndarray, n: int, solver: str = "amg") -> tuple[np.ndarray, float]:
        """Q1 FEM on the n x n grid with nu given at its Gauss points (2(n-1), 2(n-1)); (u, seconds).

        Stencil assembly (the same matrix as scikit-fem's, which would need nu as a function of the
        coordinates). The time covers assembly, AMG set-up and solve, not sampling nu: a user's solver
        gets its medium at its quadrature points as the network gets its input, for free.
        """
        from diffnet.numerics import q1_fem as fem

        def nu(_x: np.ndarray, _y: np.ndarray) -> np.ndarray:
            return nu_q

        if self.setup == "fno":
            u, timing = fem.solve_q1(nu, n, f=lambda x, y: np.ones(np.broadcast(x, y).shape), dirichlet="all",
                                     solver=solver, assembly="stencil", tol=self.tolerance)
        else:
            u, timing = fem.solve_q1(nu, n, g=lambda x, _y: 1.0 - x, dirichlet="left_right", solver=solver,
                                     assembly="stencil", tol=self.tolerance)
        return u, timing.total

    def _solve(self, row: Mapping[str, np.ndarray], n: int, solver: str = "amg", assembly: str = "stencil"
               ) -> tuple[np.ndarray, float]:
        g = q1.gauss_points(n)
        return self.solve_field(self.nu_at(float(row["seed"]), g, g), n, solver=solver)

    # --- quantity of interest and error measures ------------------------------------------------------
    @property
    def qoi_attrs(self) -> dict[str, str]:
        if self.setup == "fno":
            return {"long_name": "integral of u over the domain", **_UNIT,
                    "definition": "int u dx dy of the Q1 interpolant on the field's own grid (trapezoidal rule); "
                                  "at the discrete solution it equals int nu |grad u|^2"}
        return {"long_name": "effective permeability (flux through x = 1)", **_UNIT,
                "definition": "K = int nu |grad u|^2 (= -int_{x=1} nu du/dx dy at the FEM solution); Q1 with nu "
                              "at the 2 x 2 Gauss points of the field's own grid"}

    def qoi(self, u: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        u = np.asarray(u, dtype=np.float64)
        if self.setup == "fno":
            return q1.integral(u)
        return q1.dirichlet_integral(u, self.nu_gauss(params, u.shape[-1]))

    @property
    def field_metrics(self) -> dict[str, Metric]:
        return {"rel_h1": Metric("relative H1-seminorm error (error of grad u, the flux)")}

    def field_errors(self, u: np.ndarray, truth: np.ndarray, params: Mapping[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        return {"rel_h1": q1.relative_h1_seminorm_error(u, truth)}
