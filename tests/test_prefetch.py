"""PrefetchFeed: the same batches as the feed it wraps, and states that resume exactly."""
from __future__ import annotations

import pytest
import torch

from data_gen import study_presets
from graphpath.training.feed import StreamFeed
from graphpath.training.prefetch import PrefetchFeed

SPEC = study_presets(n_max=8, finetune_n_max=5, small_target=5)["pretrain"]


def same(a, b) -> bool:
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("edges", "num_vertices", "target", "label"))


def test_batches_and_states_match_the_wrapped_feed():
    plain = StreamFeed(SPEC, 64, 7)
    ahead = PrefetchFeed(StreamFeed(SPEC, 64, 7), depth=3)
    try:
        assert ahead.state() == plain.state()
        for _ in range(6):
            assert same(ahead.next(), plain.next())
            assert ahead.state() == plain.state()  # after the batch handed out, not the ones drawn ahead
    finally:
        ahead.close()


def test_state_taken_mid_stream_resumes_on_the_next_batch():
    ahead = PrefetchFeed(StreamFeed(SPEC, 64, 3), depth=2)
    for _ in range(3):
        ahead.next()
    saved = ahead.state()
    expected = [ahead.next() for _ in range(3)]
    resumed = PrefetchFeed(StreamFeed(SPEC, 64, 999), depth=2)
    resumed.set_state(saved)
    try:
        assert all(same(resumed.next(), batch) for batch in expected)
    finally:
        ahead.close()
        resumed.close()


class Broken:
    def __init__(self):
        self.calls = 0

    def next(self):
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("sampler failed")
        return StreamFeed(SPEC, 8, self.calls).next()

    def state(self):
        return {"calls": self.calls}

    def set_state(self, state):
        self.calls = state["calls"]


def test_an_error_while_drawing_reaches_the_consumer_at_its_batch():
    ahead = PrefetchFeed(Broken(), depth=2)
    ahead.next()
    with pytest.raises(RuntimeError, match="sampler failed"):
        ahead.next()
    ahead.close()


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        PrefetchFeed(StreamFeed(SPEC, 8, 0), depth=0)
