"""Exact entropy solution of inviscid Burgers, u_t + (u^2/2)_x = 0, by the Lax–Oleinik formula.

Formula
-------
With u0 extended by 0 to y < 0 and U0(y) = int_0^y u0 (so U0 = 0 for y < 0),

    u(x, t) = (x - y*) / t,    y* = argmin_y G(y),    G(y) = U0(y) + (x - y)^2 / (2 t).

Why it is the entropy solution: w(x, t) = min_y G is the Hopf–Lax formula, the viscosity solution of
w_t + w_x^2 / 2 = 0 with w(., 0) = U0, and u = w_x is the unique entropy (Kruzhkov) solution of the
Cauchy problem (Lax 1957, Oleinik 1957). The minimiser y* is non-decreasing in x, so at a jump the left
value (x - y1)/t exceeds the right one (x - y2)/t: only Lax-admissible shocks appear and rarefactions
fan out of upward jumps of u0 (the minimiser sticks at the jump). Since u0 >= 0 every characteristic
moves right, and those from y < 0 carry the state 0 at speed 0; restricted to x >= 0 the Cauchy solution
therefore is the solution of the boundary problem with inflow u(0, t) = 0.

Algorithm
---------
Stationary points of G solve X(y) := y + t u0(y) = x (y is the foot of a characteristic reaching x);
local minima are the roots where X crosses x upwards. On a fine grid y_k (spacing h = dx / oversample)
X_k = y_k + t u0(y_k) needs u0 only once per sample. Every interval with X_k <= x_i < X_{k+1}
brackets a local minimum for node x_i, so comparing X_k with the nodes enumerates all (node, interval)
candidates of a row. Each candidate is polished by Newton from the linear interpolant (2 sweeps on
average); the rare ones where Newton leaves the interval (folds, jumps of u0 such as the rarefaction
corner at y = 0 when u0(0+) > 0) get Newton safeguarded by bisection. Only nodes with several
candidates need G; the smallest G wins and candidates within ``tie_tol * max(1, |G_min|)`` of it (a
shock exactly on a node) are averaged, giving (u_left + u_right) / 2. Since a candidate lies on a
characteristic, (x - y*)/t = u0(y*) is within [u_min, u_max]: no window search is needed.

Pruning: after shocks form, the overlapping characteristic families would give each node 1 + O(c t)
candidates (about 3x the nodes for c = 6 and 6x for c = 16 on [0, 1/3]). But a characteristic that has
entered a shock never leaves it, and y* is monotone in x, so after each batch of rows (in increasing
t) the intervals that cannot hold a live characteristic (their y lies outside the minimisers of the
nodes around their X range) are dropped for all later rows. This is exact (tests compare with
``prune=False`` bit for bit) and leaves ~1.1 candidates per node.

Limitation: a fold of X narrower than h (a min/max pair of roots inside one interval) is not seen.
Folds are that thin only just after a shock is born, when its jump is itself O(h), so the error is
O(h) and confined to the nodes next to the newborn shock.

Complexity: O(Nt K + Nt Nx n_it) time per sample with K ~ oversample * Nx + 3 grid points and
n_it ~ 2 Newton sweeps, each one evaluation of u0 and u0' per candidate; memory bounded by batches of
at most ``_CHUNK_ELEMS`` (sample, row, grid point) entries, independent of Nt. Measured on one core:
~0.17 s for 1024 x 1024 per initial condition (about 0.2 s per condition in a batch of 8).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

BatchFn = Callable[[np.ndarray], np.ndarray]

# A batch of rows spans at most this many (sample, row, y-grid point) entries and _BATCH_ROWS rows:
# enough to amortise numpy's per-call overhead, small enough for the work arrays (~1 MiB each) to stay
# in cache and for memory to be independent of Nt. Measured: 2**16 .. 2**18 are within noise.
_CHUNK_ELEMS = 2**17
_BATCH_ROWS = 32


def cosine_family(c: np.ndarray) -> tuple[BatchFn, BatchFn, BatchFn]:
    """Batched callables for u0(y) = (1 - cos(2 pi c y)) / 2, one sample per entry of ``c``.

    Parameters
    ----------
    c : (S,) array of frequencies.

    Returns
    -------
    (u0, primitive, du0), each mapping y of shape (S, M) (or (1, M), broadcast) to (S, M):
    u0, U0(y) = (y - sin(2 pi c y) / (2 pi c)) / 2 = int_0^y u0, and u0'(y) = pi c sin(2 pi c y).
    """
    k = 2.0 * np.pi * np.asarray(c, dtype=np.float64).reshape(-1, 1)

    def u0(y: np.ndarray) -> np.ndarray:
        return 0.5 - 0.5 * np.cos(k * y)

    def primitive(y: np.ndarray) -> np.ndarray:
        return 0.5 * (y - np.sin(k * y) / k)

    def du0(y: np.ndarray) -> np.ndarray:
        return 0.5 * k * np.sin(k * y)

    return u0, primitive, du0


def _extended(f: BatchFn, y: np.ndarray) -> np.ndarray:
    """f on y >= 0 and 0 for y < 0: the zero extension of u0, U0 and u0' that encodes u(0, t) = 0."""
    neg = y < 0
    if not neg.any():
        return np.asarray(f(y), dtype=np.float64)
    return np.where(neg, 0.0, f(np.maximum(y, 0.0)))


def _ragged(fs: tuple[BatchFn, ...], s: np.ndarray, y: np.ndarray, n_samples: int) -> list[np.ndarray]:
    """Evaluate each (S, M)-batched callable in ``fs`` at flat points ``y`` of samples ``s`` (sorted).

    Candidates are ragged across samples while the callables only know rows: scatter into one
    (S, max count) array, shared by all callables, and gather back.
    """
    if n_samples == 1:
        return [np.broadcast_to(_extended(f, y[None, :]), (1, y.size))[0] for f in fs]
    counts = np.bincount(s, minlength=n_samples)
    width = int(counts.max()) if y.size else 0
    flat = np.arange(y.size) + (s * width - (np.cumsum(counts) - counts)[s])
    pad = np.zeros(n_samples * width)
    pad[flat] = y
    pad = pad.reshape(n_samples, width)
    return [np.broadcast_to(_extended(f, pad), pad.shape).reshape(-1)[flat] for f in fs]


def _fd_derivative(u0: BatchFn) -> BatchFn:
    """Central difference of u0 for when no analytic derivative is given (Newton then converges linearly
    at rate ~1e-8, still a handful of iterations)."""
    eps = 1e-7

    def du0(y: np.ndarray) -> np.ndarray:
        return (_extended(u0, y + eps) - _extended(u0, y - eps)) / (2.0 * eps)

    return du0


def _bracketed_newton(u0: BatchFn, du0: BatchFn, n_s: int, s: np.ndarray, x: np.ndarray, t: np.ndarray,
                      a: np.ndarray, b: np.ndarray, max_iter: int = 200) -> np.ndarray:
    """Root of F(y) = y + t u0(y) - x with F(a) <= 0 < F(b): Newton inside a shrinking bracket.

    The fallback for the few candidates where plain Newton leaves its interval: folds (F' <= 0) and
    jumps of u0, where bisection converges to the jump (the corner of a rarefaction fan).
    """
    out = np.empty_like(a)
    idx = np.arange(a.size)
    y = 0.5 * (a + b)
    for _ in range(max_iter):
        if idx.size == 0:
            break
        v, dv = _ragged((u0, du0), s, y, n_s)
        f = y + t * v - x
        fp = 1.0 + t * dv
        left = f <= 0.0
        a = np.where(left, y, a)
        b = np.where(left, b, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            yn = y - f / fp
        newton = (yn >= a) & (yn <= b)
        yn = np.where(newton, yn, 0.5 * (a + b))
        done = (newton & (np.abs(yn - y) <= _STEP_TOL)) | (b - a <= 4e-16 * np.maximum(1.0, np.abs(yn)))
        out[idx[done]] = yn[done]
        keep = ~done
        idx, s, x, t, y, a, b = idx[keep], s[keep], x[keep], t[keep], yn[keep], a[keep], b[keep]
    out[idx] = y
    return out


# Newton error after a step of size d is ~ t |u0''| d^2 / (2 F'): with d <= 1e-9 that is below 1e-15 in
# u for |u0''| up to ~1e4 (c = 16 gives 5e3), so accepting the step saves the confirming evaluation.
_STEP_TOL = 1e-9
_NEWTON_SWEEPS = 8


def _polish(u0: BatchFn, du0: BatchFn, n_s: int, s: np.ndarray, x: np.ndarray, t: np.ndarray,
            y: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Root of F(y) = y + t u0(y) - x in [a, b] (F(a) <= 0 < F(b)) from the interpolated guess ``y``.

    Plain Newton on a shrinking active set (2-3 sweeps from a linear-interpolation guess); candidates
    whose step leaves [a, b] or that do not settle go to ``_bracketed_newton``.
    """
    s0, x0, t0, a0, b0 = s, x, t, a, b
    out = np.empty_like(y)
    idx = np.arange(y.size)
    lost = []
    for _ in range(_NEWTON_SWEEPS):
        if idx.size == 0:
            break
        with np.errstate(divide="ignore", invalid="ignore"):
            v, dv = _ragged((u0, du0), s, y, n_s)
            step = (y + t * v - x) / (1.0 + t * dv)
        y = y - step
        inside = (y >= a) & (y <= b)  # also False for NaN from F' = 0
        done = inside & (np.abs(step) <= _STEP_TOL)
        out[idx[done]] = y[done]
        if not inside.all():
            lost.append(idx[~inside])
        keep = inside & ~done
        if not keep.all():
            idx, s, x, t, y, a, b = idx[keep], s[keep], x[keep], t[keep], y[keep], a[keep], b[keep]
    lost.append(idx)
    bad = np.concatenate(lost)
    if bad.size:
        out[bad] = _bracketed_newton(u0, du0, n_s, s0[bad], x0[bad], t0[bad], a0[bad], b0[bad])
    return out


def lax_oleinik(u0: Callable[[np.ndarray], np.ndarray], primitive: Callable[[np.ndarray], np.ndarray],
                x: np.ndarray, t: np.ndarray, u_max: float = 1.0, u_min: float = 0.0, *,
                du0: Callable[[np.ndarray], np.ndarray] | None = None, oversample: int = 2,
                tie_tol: float = 1e-12, prune: bool = True) -> np.ndarray:
    """Exact entropy solution u(sample, t, x) by the Lax–Oleinik formula (see the module docstring).

    Parameters
    ----------
    u0, primitive : callables mapping y of shape (S, M) (y >= 0; a (1, M) input must broadcast to
        (S, M)) to (S, M): the initial condition and U0(y) = int_0^y u0. They fix the batch size S.
    x : (Nx,) strictly increasing nodes.
    t : (Nt,) times >= 0, any order; rows with t = 0 return u0(x) exactly.
    u_max, u_min : bounds of u0; they size the y range [x_min - u_max t, x_max - u_min t].
    du0 : optional derivative of u0 (same convention); a central difference is used otherwise.
    oversample : y-grid points per x spacing used to bracket the minimisers.
    tie_tol : relative tolerance on G under which two minima count as tied (shock on a node).
    prune : drop characteristics known to have entered a shock at an earlier time (exact, only faster;
        ``False`` enumerates every local minimum on every row, for checking).

    Returns
    -------
    (S, Nt, Nx) float64 array.
    """
    x = np.asarray(x, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if x.ndim != 1 or t.ndim != 1 or x.size == 0:
        raise ValueError("x and t must be non-empty 1-D arrays")
    if np.any(np.diff(x) <= 0):
        raise ValueError("x must be strictly increasing")
    if np.any(t < 0):
        raise ValueError("t must be >= 0")
    if du0 is None:
        du0 = _fd_derivative(u0)
    nx = x.size
    h = (float(np.min(np.diff(x))) if nx > 1 else 1.0 / 1024) / oversample
    t_max = float(t.max())

    # Feet y = x - u0(y) t lie in [x_min - u_max t, x_max - u_min t]; for y < 0 the extended u0 is 0,
    # so X(y) = y there and those feet only reach nodes x < 0.
    y_lo = x[0] - max(u_max, 0.0) * t_max
    if y_lo < 0.0:
        y_lo = min(x[0], 0.0)
    y_hi = x[-1] - min(u_min, 0.0) * t_max
    # One extra point at each end keeps X_0 < x_min and X_{K-1} > x_max strictly, so every node is
    # bracketed; integer multiples of h put y = 0 (the corner of the extension) on the grid.
    yk = np.arange(np.floor(y_lo / h) - 1, np.ceil(y_hi / h) + 2) * h
    u0k = np.atleast_2d(_extended(u0, yk[None, :]))
    n_s, n_k = u0k.shape
    # How far X may stray from its chord inside each interval, per unit t: h^2 max|u0''| / 8 where u0
    # is smooth (max|u0''| from secants of u0', so doubled), plus the mismatch between the secant of
    # u0 and the mean of u0' at the ends, which is O(h^3) when smooth and the jump size at a jump.
    du0k = np.broadcast_to(_extended(du0, yk[None, :]), (n_s, n_k))
    curv = np.abs(np.diff(du0k, axis=1)).max(axis=1) / h
    mismatch = np.diff(u0k, axis=1) - 0.5 * h * (du0k[:, 1:] + du0k[:, :-1])
    stray = (curv * h * h / 4.0)[:, None] + np.abs(mismatch)

    out = np.empty((n_s, t.size, nx))
    zero = np.flatnonzero(t == 0)
    if zero.size:
        out[:, zero, :] = np.broadcast_to(_extended(u0, x[None, :]), (n_s, nx))[:, None, :]
    pos = np.flatnonzero(t > 0)
    pos = pos[np.argsort(t[pos], kind="stable")]
    # Rows go in increasing t so that characteristics found dead on the last row of a batch can be
    # dropped from all later rows; the first batch is a single row because it is enumerated in full.
    batch = max(1, min(_BATCH_ROWS, _CHUNK_ELEMS // (n_s * n_k)))
    kept = np.ones((n_s, n_k - 1), dtype=bool)
    lo = 0
    while lo < pos.size:
        hi = min(pos.size, lo + (1 if lo == 0 and prune else batch))
        r_idx = pos[lo:hi]
        res, w_lo, w_hi, x_last = _solve_rows(u0, primitive, du0, x, t[r_idx], yk, u0k, kept, tie_tol)
        out[:, r_idx, :] = res
        if prune:
            kept &= _alive(x, x_last, float(t[r_idx[-1]]) * stray, w_lo, w_hi)
        lo = hi
    return out


def _alive(x: np.ndarray, big_x: np.ndarray, bulge: np.ndarray, w_lo: np.ndarray, w_hi: np.ndarray
           ) -> np.ndarray:
    """Intervals [y_k, y_{k+1}] that may still hold a live characteristic at the row just solved.

    A characteristic y that is a minimiser at x = X(y) has y between the minimisers of the nodes that
    bracket X(y) (monotonicity of y*), so interval k can only be alive if it meets
    [y*(x_jlo), y*(x_jhi)] for nodes x_jlo <= X <= x_jhi around its X-range. Characteristics never leave
    a shock (for a convex flux), so an interval dead now is dead for every later t.

    big_x : (S, K) X_k; bulge : (S, K-1) bound on |X - chord| inside each interval; w_lo, w_hi :
    (S, Nx) smallest and largest interval index of the winning minimiser(s) at each node.
    """
    n_s, n_k = big_x.shape
    nx = x.size
    lo_x = np.minimum(big_x[:, :-1], big_x[:, 1:]) - (bulge + 1e-13)
    hi_x = np.maximum(big_x[:, :-1], big_x[:, 1:]) + (bulge + 1e-13)
    # jlo = last node <= lo_x (-1 if none), jhi = first node >= hi_x (Nx if none).
    jlo = _count_below(x, np.nextafter(lo_x, np.inf).ravel()).reshape(n_s, n_k - 1) - 1
    jhi = _count_below(x, hi_x.ravel()).reshape(n_s, n_k - 1)
    lo_b = np.where(jlo >= 0, np.take_along_axis(w_lo, np.clip(jlo, 0, nx - 1), axis=1) - 1, -1)
    hi_b = np.where(jhi < nx, np.take_along_axis(w_hi, np.clip(jhi, 0, nx - 1), axis=1) + 1, n_k)
    k = np.arange(n_k - 1)
    return (k >= lo_b) & (k <= hi_b)


def _count_below(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Number of nodes x_i < v, i.e. ``searchsorted(x, v)``; arithmetic when x is uniform.

    Binary search costs ~17 ns a key here; on the usual uniform grid a rounded guess corrected by
    one comparison each way gives the identical answer several times faster.
    """
    nx = x.size
    dx = (x[-1] - x[0]) / (nx - 1) if nx > 1 else 0.0
    if nx < 3 or np.any(np.abs(np.diff(x) - dx) > 1e-9 * dx):
        return np.searchsorted(x, v)
    g = np.ceil((v - x[0]) * (1.0 / dx))
    np.clip(g, 0, nx, out=g)
    g = g.astype(np.intp)
    # The rounded guess can be one off near x_i; these two corrections make it exact.
    g -= (g > 0) & (x[np.maximum(g - 1, 0)] >= v)
    g += (g < nx) & (x[np.minimum(g, nx - 1)] < v)
    return g


def _solve_rows(u0: BatchFn, primitive: BatchFn, du0: BatchFn, x: np.ndarray, tc: np.ndarray,
                yk: np.ndarray, u0k: np.ndarray, kept: np.ndarray, tie_tol: float
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Solution on the rows ``tc`` (all > 0, last one largest), using only intervals in ``kept``.

    Returns u (S, R, Nx) and, for the last row, the smallest and largest winning interval index per
    node (S, Nx) and X_k (S, K).
    """
    n_s, n_k = u0k.shape
    n_r, nx = tc.size, x.size
    big_x = yk[None, None, :] + tc[None, :, None] * u0k[:, None, :]
    # first[k] = first node with x_i >= X_k, so interval k brackets nodes first[k] .. first[k+1]-1;
    # downward intervals give a non-positive count and drop out (their roots are maxima of G).
    first = _count_below(x, big_x.ravel()).reshape(n_s * n_r, n_k)
    count = first[:, 1:] - first[:, :-1]
    sel = ((count > 0).reshape(n_s, n_r, n_k - 1) & kept[:, None, :]).reshape(n_s * n_r, n_k - 1)
    sr_nz, k_nz = np.nonzero(sel)
    cnt = count[sr_nz, k_nz]
    n_p = int(cnt.sum())
    # Expand (interval, node) pairs: node = first node of the interval + rank inside the interval.
    start = first[sr_nz, k_nz] - (np.cumsum(cnt) - cnt)
    node = np.repeat(start, cnt) + np.arange(n_p)
    sr = np.repeat(sr_nz, cnt)
    k = np.repeat(k_nz, cnt)
    s = np.repeat(np.arange(n_s), n_r)[sr]
    tp = np.tile(tc, n_s)[sr]
    xp = x[node]
    flat_x = big_x.reshape(-1)
    ia = sr * n_k + k
    xa, xb = flat_x[ia], flat_x[ia + 1]
    ya, yb = yk[k], yk[k + 1]
    y = _polish(u0, du0, n_s, s, xp, tp, ya + (yb - ya) * ((xp - xa) / (xb - xa)), ya, yb)
    u = (xp - y) / tp

    key = sr * nx + node
    n_key = n_s * n_r * nx
    res = np.full(n_key, np.nan)
    per_key = np.bincount(key, minlength=n_key)
    multi = per_key[key] > 1
    win = np.ones(n_p, dtype=bool)
    if multi.any():
        single = ~multi
        res[key[single]] = u[single]
        km, ym = key[multi], y[multi]
        g = _ragged((primitive,), s[multi], ym, n_s)[0] + (xp[multi] - ym) ** 2 / (2.0 * tp[multi])
        best = np.full(n_key, np.inf)
        np.minimum.at(best, km, g)
        gb = best[km]
        wm = g <= gb + tie_tol * np.maximum(1.0, np.abs(gb))
        win[multi] = wm
        wf = wm.astype(np.float64)
        num = np.bincount(km, weights=wf * u[multi], minlength=n_key)
        den = np.bincount(km, weights=wf, minlength=n_key)
        hit = den > 0
        res[hit] = num[hit] / den[hit]
    else:
        res[key] = u
    if np.isnan(res).any():
        raise RuntimeError("a node received no minimiser candidate; is u0 within [u_min, u_max]?")

    last = win & (np.tile(np.arange(n_r) == n_r - 1, n_s)[sr])
    wkey = s[last] * nx + node[last]
    w_lo = np.full(n_s * nx, n_k, dtype=np.intp)
    w_hi = np.full(n_s * nx, -1, dtype=np.intp)
    np.minimum.at(w_lo, wkey, k[last])
    np.maximum.at(w_hi, wkey, k[last])
    return (res.reshape(n_s, n_r, nx), w_lo.reshape(n_s, nx), w_hi.reshape(n_s, nx),
            big_x[:, -1, :])
