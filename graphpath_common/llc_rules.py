"""The LLC's reading rules, owned here so that the estimator (graphpath.analysis.llc) and the page
(blog.inside) state the same ones: the chain diagnostics an estimate must pass and what the number is.
Torch-free, like the rest of graphpath_common."""
from __future__ import annotations

RHAT_MAX = 1.01  # Vehtari et al. (2021), section 4: rank-normalised split R-hat below 1.01
ESS_MIN = 400  # Vehtari et al. (2021), section 4: bulk ESS over 100 per chain, 400 at 4 chains
MCSE_SHARE = 0.1  # the LLC's Monte Carlo error must be within 10% of it to read a comparison off it
DIAGNOSTIC_RULE = (f"an estimate is a result when every chain stays finite, the LLC is > 0, the rank-normalised split "
                   f"R-hat of the recorded loss traces is <= {RHAT_MAX}, their bulk ESS is >= {ESS_MIN} (Vehtari et al. "
                   f"2021's thresholds: 100 per chain at 4 chains) and the LLC's Monte Carlo "
                   f"standard error is <= {MCSE_SHARE:.0%} of it")
ESTIMAND = ("nβ (mean loss over the recorded SGLD steps − L_n(w*)) at (eps, gamma, nβ, steps): a step-truncated, "
            "localised reading; a lower bound on the localised LLC whose truncation differs between models; compare "
            "models only on the same data at the same setting")
# Why "step-truncated": the pull towards w* relaxes a flat direction in about 2 / (eps gamma) steps (20,000 at
# eps 1e-4, gamma 1), far beyond a chain of `steps` (800), so within the chain gamma barely acts and what is read
# is governed by the step budget, not by the localisation.
