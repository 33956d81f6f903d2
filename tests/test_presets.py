"""Preset headers keep their measurements in step with the settings they were measured at.

A preset's header (its leading comment lines) may report measurements: wall time, losses, which
findings held. Each such header carries a stamp line

    # measured with: train.steps=1200, train.batch_size=256

naming the settings the measurements were taken at; every stamped setting must equal the file's
own value, so retuning a stamped setting fails this test until the measurement is redone (and the
stamp updated) or removed.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from graphpath_common.toml import tomllib

PRESETS = sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml"))
STAMP = re.compile(r"^#\s*measured with:\s*(.+)$", re.IGNORECASE)
MENTION = re.compile(r"\bmeasured\b", re.IGNORECASE)


def header(path: Path) -> list[str]:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def lookup(table: dict, dotted: str):
    value = table
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(dotted)
        value = value[part]
    return value


def stamps(lines: list[str]) -> list[tuple[str, object]]:
    pairs = []
    for line in lines:
        match = STAMP.match(line)
        if match:
            for item in re.split(r",\s*(?=[\w.-]+\s*=)", match.group(1)):  # a list value keeps its commas
                key, _, text = item.strip().partition("=")
                pairs.append((key.strip(), tomllib.loads(f"v = {text.strip()}")["v"]))
    return pairs


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.name)
def test_measurements_carry_a_stamp_that_matches_the_settings(path):
    lines = header(path)
    reports = [line for line in lines if MENTION.search(line) and not STAMP.match(line)]
    pairs = stamps(lines)
    if reports:
        assert pairs, f"{path.name} reports a measurement but has no '# measured with:' stamp"
    settings = tomllib.loads(path.read_text())
    for key, value in pairs:
        assert lookup(settings, key) == value, f"{path.name}: measured with {key}={value}, the file sets {lookup(settings, key)}"


def test_a_stale_stamp_is_caught(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text("# Measured: 5 min.\n# measured with: train.steps=1600\n[train]\nsteps = 1200\n")
    with pytest.raises(AssertionError, match="train.steps=1600"):
        test_measurements_carry_a_stamp_that_matches_the_settings(preset)
    preset.write_text("# Measured: 5 min.\n[train]\nsteps = 1200\n")
    with pytest.raises(AssertionError, match="no '# measured with:' stamp"):
        test_measurements_carry_a_stamp_that_matches_the_settings(preset)
