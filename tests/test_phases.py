"""Phase-change detector: known change points found; smooth decay and noise give nothing."""
import numpy as np
import pytest

from graphpath.training.phases import PhaseDetector, detect_phase_changes

STEPS = np.arange(0, 3000, 10)


def steps_curve(changes, drop_decades=1.0, width=15.0, noise=0.1, seed=0):
    """log10 loss: a plateau at 0, falling by `drop_decades` (a steep logistic) at each change."""
    rng = np.random.default_rng(seed)
    y = np.zeros(len(STEPS))
    for at in changes:
        y -= drop_decades / (1 + np.exp(-(STEPS - at) / width))
    return 10 ** (y + rng.normal(0, noise, len(STEPS)))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("changes", [[800], [800, 2000], [500, 1400, 2300]])
def test_known_change_points_are_found(changes, seed):
    found = PhaseDetector().detect(STEPS, steps_curve(changes, seed=seed))
    assert len(found) == len(changes)
    for change, at in zip(found, changes):
        assert abs(change["step"] - at) <= 40  # within a few logged points
        assert change["loss_before"] > 5 * change["loss_after"]
        assert change["plateau_steps"] >= 300


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("tau", [30, 100, 200, 300, 500, 1000, 3000])
def test_smooth_exponential_decay_is_not_a_phase_change(tau, seed):
    rng = np.random.default_rng(seed)
    loss = 5 * np.exp(-STEPS / tau) * 10 ** rng.normal(0, 0.1, len(STEPS)) + 1e-4
    assert PhaseDetector().detect(STEPS, loss) == []


def test_power_law_decay_is_not_a_phase_change():
    assert PhaseDetector().detect(STEPS, 10 / (1 + STEPS / 20)) == []
    assert PhaseDetector().detect(STEPS, 10 / (1 + STEPS / 20) ** 2) == []


@pytest.mark.parametrize("seed", range(20))
def test_pure_noise_has_no_phase_changes(seed):
    rng = np.random.default_rng(seed)
    assert PhaseDetector().detect(STEPS, 10 ** rng.normal(0, 0.3, len(STEPS))) == []


def test_short_or_broken_curves():
    assert PhaseDetector().detect(STEPS[:10], np.ones(10)) == []
    loss = steps_curve([1500])
    loss[100] = np.nan  # a missing point does not break detection
    assert len(PhaseDetector().detect(STEPS, loss)) == 1


def test_records_give_per_label_and_overall_changes():
    label_one, label_two = steps_curve([600], seed=1), steps_curve([1800], seed=2)
    records = [{"stage": "pretrain", "step": int(s), "examples": int(s) * 512,
                "loss": float(a + b), "label_loss": {"1": float(a), "2": float(b)}}
               for s, a, b in zip(STEPS, label_one, label_two)]
    found = detect_phase_changes(records)
    by_label = {(c["label"], c["stage"]): c for c in found}
    assert abs(by_label[("1", "pretrain")]["step"] - 600) <= 40
    assert abs(by_label[("2", "pretrain")]["step"] - 1800) <= 40
    assert by_label[("2", "pretrain")]["examples"] == by_label[("2", "pretrain")]["step"] * 512
    assert set(found[0]) == {"stage", "label", "step", "examples", "loss_before", "loss_after", "plateau_steps"}


def test_rare_labels_are_not_judged():
    curve = steps_curve([1500])
    records = [{"stage": "pretrain", "step": int(s), "examples": int(s), "loss": float(v),
                "label_loss": {"7": float(v)}, "label_count": {"7": 3}} for s, v in zip(STEPS, curve)]
    assert [c["label"] for c in detect_phase_changes(records)] == ["all"]
