"""graphpath.analysis.llc's SGLD chain against devinterp's (the reference implementation of Lau et al.
2023): the same batches and the same noise give the same weights and losses step for step, so the
same LLC."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from graphpath.analysis import llc as L

SGMCMC = pytest.importorskip("devinterp.optim.sgmcmc").SGMCMC


def small_model_and_data(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = torch.tanh(x @ torch.randn(3, generator=g)) + 0.1 * torch.randn(256, generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def loss_on(m, rows):
        return (m(x[rows]).squeeze(-1) - y[rows]).pow(2).mean()
    return model, loss_on


def devinterp_chain(model, loss_on, n, cfg: L.LLCConfig, nbeta: float, rows, noise) -> tuple[list[float], nn.Module]:
    import copy

    model = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = SGMCMC.sgld(model.parameters(), lr=cfg.eps, localization=cfg.gamma, nbeta=nbeta)
    trace = []
    for _ in range(cfg.steps):
        batch = torch.randint(n, (min(cfg.batch_size, n),), generator=rows)
        sampler.zero_grad()
        loss = loss_on(model, batch)
        loss.backward()
        trace.append(loss.item())
        sampler.step(noise_generator=noise)
    return trace, model


def test_chain_matches_devinterp_step_for_step():
    model, loss_on = small_model_and_data()
    cfg = L.LLCConfig(eps=1e-3, gamma=100.0, chains=2, steps=60, burn_in=10, batch_size=32, seed=7)
    nbeta = L.default_nbeta(256)
    ours = L.sgld_chain(model, loss_on, 256, cfg, nbeta, torch.Generator().manual_seed(1),
                        torch.Generator().manual_seed(2))
    theirs, _ = devinterp_chain(model, loss_on, 256, cfg, nbeta, torch.Generator().manual_seed(1),
                                torch.Generator().manual_seed(2))
    assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-7)
    init = L.full_loss(model, loss_on, 256)
    assert nbeta * (sum(ours[10:]) / 50 - init) == pytest.approx(nbeta * (sum(theirs[10:]) / 50 - init), rel=1e-4)


def test_estimate_matches_devinterp_llc_formula():
    """estimate_llc's LLC is nbeta * (mean recorded batch loss - L_n(w*)), chain by chain."""
    model, loss_on = small_model_and_data(seed=3)
    cfg = L.LLCConfig(eps=1e-3, gamma=100.0, chains=2, steps=40, burn_in=10, batch_size=32, seed=5)
    est = L.estimate_llc(model, loss_on, 256, cfg)
    rows, noise = torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)
    per_chain = []
    for _ in range(2):
        trace, _ = devinterp_chain(model, loss_on, 256, cfg, est["nbeta"], rows, noise)
        per_chain.append(est["nbeta"] * (sum(trace[10:]) / 30 - est["init_loss"]))
    assert est["llc_per_chain"] == pytest.approx(per_chain, rel=1e-4)
