"""Looking at trained models: perturbation and recovery (`perturb`), the bracketed basin radius
(`basin`), the local learning coefficient (`llc`), probes and patching (`interpret`)."""
