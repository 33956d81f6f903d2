"""Models whose local learning coefficient is known, built on the production data, for calibrating
the SGLD estimator (graphpath.analysis.llc) at the settings the real models are measured with.

Shapes: N examples, D features (+1 for the bias), H hidden units.

Both models regress the production labels y (N,) on the production features x (N, D) — the
learned model's own read-out input (its `hook_final` activation) on the LLC data sample — with the
same MSE loss, batch size, chains, steps and n*beta as the real models:

    regular      y ~ w . [x, 1]                          D + 1 parameters, LLC (D + 1) / 2
    degenerate   y ~ b . (A [x, 1]),  A (H, D + 1), b (H,)  H (D + 2) parameters, LLC (D + 1) / 2

The regular model sits at its least-squares fit w*, a non-degenerate minimum: LLC = d / 2
(Watanabe 2009, "Algebraic Geometry and Statistical Learning Theory", section 1.4; the regular
case of the real log canonical threshold). The degenerate one is a two-layer linear network at a
minimum with b != 0, where (A, b) -> A^T b maps onto the regular model's w submersively, so its
fibres (A, b) -> (A + u v^T, b) with u . b = 0 and the rescaling (c A, b / c) are H (D + 2) - (D + 1)
exactly flat directions: its LLC is still (D + 1) / 2 (Aoyagi 2024, "Consideration on the learning
efficiency of multiple-layered neural networks with linear units", Neural Networks 172, the full
rank case), not half its parameter count. An estimator that counts flat directions, or whose chains
do not settle, misses one of the two.

`localised_truth` gives what a perfectly mixed chain at localisation gamma should report for the
regular model (a Gaussian integral): sum_i 1/2 * nbeta h_i / (nbeta h_i + gamma) over the
eigenvalues h_i of the MSE Hessian. Below d / 2 when gamma hides directions flatter than
gamma / nbeta — the localisation's own bias, reported beside every calibration row.
"""
from __future__ import annotations

import torch
from torch import nn


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


def known_models(features: torch.Tensor, labels: torch.Tensor, hidden: int = 4, seed: int = 0) -> dict:
    """{"regular": (model, llc), "degenerate": (model, llc), "x": (N, D+1) float32, "y": (N,) float32}.
    The LLC of both is rank(x) / 2 (a rank-deficient design has flat directions of its own)."""
    x = with_bias(features)
    w = least_squares(x, labels)
    generator = torch.Generator().manual_seed(seed)
    u = torch.randn(hidden, generator=generator, dtype=torch.float64)
    b = u / u.norm()  # |b| = 1: the curvature along A is the regular model's, not |b|^2 times it
    a = torch.outer(b, w)  # b^T A = (b . b) w^T = w^T: the same function as the regular model
    truth = rank(x) / 2
    return {"regular": (Regular(w.float()), truth), "degenerate": (Degenerate(a.float(), b.float()), truth),
            "x": x.float(), "y": labels.float()}


def localised_truth(x: torch.Tensor, nbeta: float, gamma: float) -> float:
    """What a well-mixed chain reports for the regular model at localisation gamma: with the MSE
    Hessian H = 2 x^T x / N, sum over eigenvalues h of h nbeta / (2 (h nbeta + gamma))."""
    h = torch.linalg.eigvalsh(2 * x.double().T @ x.double() / len(x)).clamp(min=0)
    return float((h * nbeta / (2 * (h * nbeta + gamma))).sum())


def mixing(x: torch.Tensor, nbeta: float, gammas) -> dict:
    """Why SGLD can or cannot read the regular model's LLC at these settings, from the spectrum of
    its MSE Hessian H = 2 x^T x / N (eigenvalues h, per unit of loss; x (N, D+1)). Per gamma: the
    localised truth (`localised_truth`); the largest stable step, eps < 4 / (nbeta h_max + gamma)
    (the SGLD drift (eps / 2)(nbeta h + gamma) must stay below 2 along the stiffest direction); and
    the relaxation time, in steps, of the flattest direction at half that step,
    2 / ((eps_max / 2)(nbeta h_min + gamma)) (the exponential rate of the drift, the Ornstein-Uhlenbeck
    process SGLD discretises). Returns {d, nbeta, hessian_min, hessian_max, condition, by_gamma
    [{gamma, localised_truth, eps_stable, relax_steps}]}."""
    h = torch.linalg.eigvalsh(2 * x.double().T @ x.double() / len(x)).clamp(min=0)
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
