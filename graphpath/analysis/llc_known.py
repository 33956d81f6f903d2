"""Models whose local learning coefficient is known, built on the production data, for calibrating
the SGLD estimator (graphpath.analysis.llc) at the settings the real models are measured with.

Shapes: N examples, D features (+1 for the bias), K kept (whitened) directions, H hidden units.

Every model regresses the production labels y (N,) with the production MSE, batch size, chains,
steps and n*beta, on a design built from the learned model's own read-out input (its `hook_final`
activation on the LLC data sample). Three checks (graphpath.analysis.llc.calibration_row):

    whitened regular     y ~ w . z,        z (N, K) whitened [x, 1]      K parameters, LLC K / 2
    whitened degenerate  y ~ b . (A z),    A (H, K), b (H,)              H (K + 1) parameters, LLC K / 2
    own-features regular y ~ w . [x, 1]    (the unwhitened design)       its exact localised expectation

`whiten` orthonormalises the design (z = sqrt(N) U_K from the SVD of [x, 1], so z^T z / N = I) and
drops directions whose variance is below WHITEN_FLOOR of the largest: the read-out features are
nearly collinear (the MSE Hessian of the raw design spans ~1e-14 .. 1e2), and a direction that flat
is numerically null. On z every Hessian eigenvalue is 2, so each direction contributes
nbeta*2 / (2 (nbeta*2 + gamma)) -> 1/2 at the production nbeta (n / log n ~ 270 for n = 2048) for
any gamma << 540: the known LLC K / 2 is reachable at production gamma.

The regular model sits at its least-squares fit w*, a non-degenerate minimum: LLC = d / 2
(Watanabe 2009, "Algebraic Geometry and Statistical Learning Theory", section 1.4; the regular
case of the real log canonical threshold). The degenerate one is a two-layer linear network at a
minimum with b != 0, where (A, b) -> A^T b maps onto the regular model's w submersively, so its
fibres (A, b) -> (A + u v^T, b) with u . b = 0 and the rescaling (c A, b / c) are H (K + 1) - K
exactly flat directions: its LLC is still K / 2 (Aoyagi 2024, "Consideration on the learning
efficiency of multiple-layered neural networks with linear units", Neural Networks 172, the full
rank case), not half its parameter count. An estimator that counts flat directions, or whose chains
do not settle, misses one of the two.

For a quadratic loss SGLD is exact linear algebra along each Hessian eigenvector (eigenvalue h,
a = nbeta h + gamma): theta <- (1 - eps a / 2) theta + sqrt(eps) xi, so from theta_0 = 0 the
variance obeys v_{t+1} = (1 - eps a / 2)^2 v_t + eps, and the expected LLC reading is
nbeta * sum_i h_i / 2 * v_i(t) averaged over the recorded steps (`chain_expectation`). Its limits:
eps -> 0, t -> inf gives the localised posterior's sum_i nbeta h_i / (2 (nbeta h_i + gamma))
(`localised_truth`, Lau et al. 2023, "The local learning coefficient", section 4 and appendix on
the Gaussian case), which is K / 2 only when every nbeta h_i >> gamma. On the unwhitened design
`chain_expectation` is the exact target of the sampler at (eps, gamma, nbeta, steps) — a check of
the discretisation and the minibatch noise at the production settings — and
localised_truth / (rank / 2) is the share of the LLC the localisation can see there.
"""
from __future__ import annotations

import torch
from torch import nn

# A direction of the design whose variance is below 1e-8 of the largest (singular value 1e-4 of the
# largest) is near-null: in float32 features it sits within ~1000 roundings of zero, and on the raw
# design its Hessian eigenvalue is so small that no gamma >= 1e-6 lets the chain see it.
WHITEN_FLOOR = 1e-8


class Regular(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(weight.clone())  # (D + 1,)

    def forward(self, x):  # x (B, D + 1)
        return x @ self.w


class Degenerate(nn.Module):
    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.a, self.b = nn.Parameter(a.clone()), nn.Parameter(b.clone())  # (H, D + 1), (H,)

    def forward(self, x):  # x (B, D + 1)
        return (x @ self.a.T) @ self.b


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D + 1) float64 with a column of ones."""
    x = features.detach().double()
    return torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)


def least_squares(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(D + 1,) minimiser of mean (x w - y)^2 (minimum-norm when x is rank-deficient)."""
    return torch.linalg.lstsq(x, y.double()[:, None], driver="gelsd").solution[:, 0]


def rank(x: torch.Tensor, tol: float = 1e-9) -> int:
    """Numerical rank of the design: the regular model's LLC counts identifiable directions only."""
    s = torch.linalg.svdvals(x)
    return int((s > tol * s[0]).sum())


def whiten(x: torch.Tensor, floor: float = WHITEN_FLOOR) -> torch.Tensor:
    """(N, D + 1) design -> (N, K) float64 with z^T z / N = I_K: the left singular vectors of the
    directions whose variance (squared singular value) is at least `floor` of the largest."""
    u, s, _ = torch.linalg.svd(x.double(), full_matrices=False)
    keep = s.pow(2) >= floor * s[0].pow(2)
    return u[:, keep] * len(x) ** 0.5


def _two_models(x: torch.Tensor, labels: torch.Tensor, hidden: int, seed: int, truth: float) -> dict:
    w = least_squares(x, labels)
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(hidden, generator=generator, dtype=torch.float64)
    b = u / u.norm()  # |b| = 1: the curvature along A is the regular model's, not |b|^2 times it
    a = torch.outer(b, w)  # b^T A = (b . b) w^T = w^T: the same function as the regular model
    return {"regular": (Regular(w.float()), truth), "degenerate": (Degenerate(a.float(), b.float()), truth),
            "x": x.float(), "y": labels.float()}


def known_models(features: torch.Tensor, labels: torch.Tensor, hidden: int = 4, seed: int = 0,
                 whitened: bool = True) -> dict:
    """{"regular": (model, llc), "degenerate": (model, llc), "x": (N, K) float32, "y": (N,) float32}.
    whitened (the calibration's models): on `whiten(with_bias(features))`, LLC K / 2. Otherwise on
    the raw design [x, 1], LLC rank / 2 (a rank-deficient design has flat directions of its own)."""
    x = with_bias(features)
    if whitened:
        z = whiten(x)
        return _two_models(z, labels, hidden, seed, z.shape[1] / 2)
    return _two_models(x, labels, hidden, seed, rank(x) / 2)


def hessian_eigenvalues(x: torch.Tensor) -> torch.Tensor:
    """(K,) float64 eigenvalues of the MSE Hessian 2 x^T x / N of a linear model on x (N, K), >= 0."""
    return torch.linalg.eigvalsh(2 * x.double().T @ x.double() / len(x)).clamp(min=0)


def localised_truth(x: torch.Tensor, nbeta: float, gamma: float) -> float:
    """What a well-mixed chain reports for the regular model at localisation gamma (eps -> 0): with
    the MSE Hessian H = 2 x^T x / N, sum over eigenvalues h of h nbeta / (2 (h nbeta + gamma))."""
    h = hessian_eigenvalues(x)
    return float((h * nbeta / (2 * (h * nbeta + gamma))).sum())


def chain_expectation(x: torch.Tensor, nbeta: float, gamma: float, eps: float, steps: int, burn_in: int,
                      residuals: torch.Tensor | None = None, batch_size: int | None = None) -> float:
    """The expected LLC reading of SGLD started at the least-squares minimum of a linear model on
    x (N, K) with MSE, at (eps, gamma, nbeta), recorded over steps burn_in .. steps - 1 (module
    docstring: per Hessian eigen-direction u_i, v_{t+1} = (1 - eps a_i / 2)^2 v_t + eps + s_i). With
    `residuals` (N,) (y - x w*) and `batch_size` B, s_i = (eps nbeta / 2)^2 u_i^T C u_i adds the
    minibatch gradient noise at w* (rows drawn with replacement: C = 4 / B * mean r^2 x x^T, the
    covariance of the batch gradient there); without them it is the full-batch chain (s = 0). Exact
    for full batch; with minibatches it leaves out the noise of the batch Hessian (second order in
    the distance from w*). inf when a direction is unstable (|1 - eps a / 2| >= 1: the chain diverges)."""
    xd = x.double()
    h, u = torch.linalg.eigh(2 * xd.T @ xd / len(xd))
    h = h.clamp(min=0)
    extra = torch.zeros_like(h)
    if residuals is not None and batch_size is not None:
        weighted = xd * residuals.double()[:, None]  # (N, K)
        cov = 4 / batch_size * weighted.T @ weighted / len(xd)
        extra = (eps * nbeta / 2) ** 2 * torch.einsum("ki,kl,li->i", u, cov, u)
    h, extra = h.numpy(), extra.numpy()
    r2 = (1 - eps * (nbeta * h + gamma) / 2) ** 2
    if (r2 >= 1).any():
        return float("inf")
    v = 0.0 * h
    readings = []
    for _ in range(steps):
        readings.append(nbeta * float((h / 2 * v).sum()))
        v = r2 * v + eps + extra
    return float(sum(readings[burn_in:]) / (steps - burn_in))


def residuals(model: "Regular", x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) y - x w of a regular model at its weights, float64."""
    return y.double() - x.double() @ model.w.detach().double()


def mixing(x: torch.Tensor, nbeta: float, gammas) -> dict:
    """Why SGLD can or cannot read the regular model's LLC at these settings, from the spectrum of
    its MSE Hessian H = 2 x^T x / N (eigenvalues h, per unit of loss; x (N, D+1)). Per gamma: the
    localised truth (`localised_truth`); the largest stable step, eps < 4 / (nbeta h_max + gamma)
    (the SGLD drift (eps / 2)(nbeta h + gamma) must stay below 2 along the stiffest direction); and
    the relaxation time, in steps, of the flattest direction at half that step,
    2 / ((eps_max / 2)(nbeta h_min + gamma)) (the exponential rate of the drift, the Ornstein-Uhlenbeck
    process SGLD discretises). Returns {d, nbeta, hessian_min, hessian_max, condition, by_gamma
    [{gamma, localised_truth, eps_stable, relax_steps}]}."""
    h = hessian_eigenvalues(x)
    lo, hi = float(h.min()), float(h.max())
    rows = []
    for gamma in gammas:
        eps = 4 / (nbeta * hi + gamma)
        rows.append({"gamma": float(gamma), "localised_truth": localised_truth(x, nbeta, gamma), "eps_stable": eps,
                     "relax_steps": 2 / (eps / 2 * (nbeta * lo + gamma))})
    return {"d": int(x.shape[1]), "nbeta": float(nbeta), "hessian_min": lo, "hessian_max": hi,
            "condition": hi / lo if lo > 0 else None, "by_gamma": rows}


def loss_on(x: torch.Tensor, y: torch.Tensor):
    """The production loss on rows of the fixed sample: MSE."""
    def loss(model: nn.Module, rows: torch.Tensor) -> torch.Tensor:
        return (model(x[rows]) - y[rows]).pow(2).mean()
    return loss
