"""data_gen: graph families, target modes, batched BFS labels, balancing and pre-built datasets.

Knows nothing of models. Everything downstream consumes `GraphBatch`.
"""
from .batch import GraphBatch
from .spec import PRESET_NAMES, PRESETS, TEST_SET_NAMES, GraphSpec, SpecError, preset, study_presets
from .sampler import StreamingSampler, sample, sample_arrays
from .dataset import DatasetError, DatasetReader, load_dataset, open_dataset
from .examples import HAND_DRAWN, hand_drawn_batch

__all__ = ["GraphBatch", "GraphSpec", "SpecError", "PRESETS", "PRESET_NAMES", "TEST_SET_NAMES",
           "preset", "study_presets", "sample", "sample_arrays", "StreamingSampler",
           "load_dataset", "open_dataset", "DatasetReader", "DatasetError", "HAND_DRAWN", "hand_drawn_batch"]
