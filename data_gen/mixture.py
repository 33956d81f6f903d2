"""Mixtures of graph distributions: families, size ranges and distance ranges, with weights.

A `Component` is one distribution of labelled graphs for the "distance from 1 to any t" task:
a family (reference | erdos_renyi at `avg_degree` | tree | path), n uniform in [n_min, n_max],
the target t uniform in 2..n_max (a t beyond the graph's n is unreachable), and only the graphs
whose label lies in [d_min, d_max] kept (d_max None = any label, unreachable included; a bounded
range excludes unreachable targets). A `Mixture` draws each graph from a component chosen with
the stated weights, which must be positive and sum to 1.

Every graph is labelled in the vocabulary `max_vertices` (unreachable = max_vertices) and padded
to `max_edges(max_vertices)` edge slots, so a mixture sample is an ordinary `GraphBatch` and
`build_mixture_dataset` writes an ordinary pre-built dataset (`load_dataset` reads it; a training
stage's `dataset` key can name it).

Coverage (the measure the mixture study reports) is defined on the inputs only, never the label,
and is blind to vertex names: a graph's cell is (vertices touched by an edge, distinct edges,
degree of the source 1, degree of the target) (`input_cells`). `coverage(test, train)` = the
fraction of test graphs whose cell occurs at least once in the training sample: 1 = every test
graph looks, by these features, like some training graph; 0 = none does. It needs no family names,
so a held-out family that resembles a trained one is partly covered. What the labels cover is a
separate number: `label_support(test, train)`, the fraction of test graphs whose label occurs in
training. `unseen_ids(test, train)`: the fraction of test graphs using a vertex id (in an edge or
as the target) that no training graph uses, whose embedding training never moved.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from graphpath_common.keys import reject_unknown_keys

from .batch import GraphBatch
from .dataset import write_arrays
from .sampler import as_generator, sample_arrays
from .spec import FAMILIES, GraphSpec, SpecError

WEIGHT_TOLERANCE = 1e-6


class MixtureError(SpecError):
    """A mixture that cannot be sampled (bad weights, ranges, sizes); one line."""


@dataclass(frozen=True)
class Component:
    family: str = "reference"  # reference | erdos_renyi | tree | path
    n_min: int = 3  # fewest vertices (>= 3)
    n_max: int = 8  # most vertices
    d_min: int = 1  # smallest kept label (distance from 1 to t)
    d_max: int | None = None  # largest kept label; None = any, unreachable included
    avg_degree: float = 2.0  # erdos_renyi only
    weight: float = 1.0  # probability of this component in its mixture

    def spec(self, max_vertices: int) -> GraphSpec:
        return GraphSpec(family=self.family, n_min=self.n_min, n_max=self.n_max, max_vertices=max_vertices,
                         target="any", t_max=self.n_max, avg_degree=float(self.avg_degree))

    def label(self) -> str:
        family = f"er{self.avg_degree:g}" if self.family == "erdos_renyi" else self.family
        distance = "" if (self.d_min, self.d_max) == (1, None) else f" d{self.d_min}-{self.d_max or 'inf'}"
        return f"{family} n{self.n_min}-{self.n_max}{distance}"


@dataclass(frozen=True)
class Mixture:
    components: tuple[Component, ...]
    max_vertices: int  # vocabulary shared by every component
    name: str = "mixture"

    def __post_init__(self):
        if not self.components:
            raise MixtureError(f"mixture {self.name}: no components")
        weights = [c.weight for c in self.components]
        if any(not isinstance(w, (int, float)) or isinstance(w, bool) or not w > 0 for w in weights):
            raise MixtureError(f"mixture {self.name}: weights must be positive numbers, got {weights}")
        if abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:
            raise MixtureError(f"mixture {self.name}: weights sum to {sum(weights):.6g}, not 1")
        for c in self.components:
            if c.family not in FAMILIES:
                raise MixtureError(f"mixture {self.name}: unknown family {c.family!r} (choose from {', '.join(FAMILIES)})")
            if not (isinstance(c.n_min, int) and isinstance(c.n_max, int) and 3 <= c.n_min <= c.n_max <= self.max_vertices):
                raise MixtureError(f"mixture {self.name}: sizes must satisfy 3 <= n_min <= n_max <= "
                                   f"max_vertices={self.max_vertices}, got n {c.n_min}..{c.n_max}")
            if not (isinstance(c.d_min, int) and c.d_min >= 1):
                raise MixtureError(f"mixture {self.name}: d_min must be an integer >= 1, got {c.d_min!r}")
            if c.d_max is not None and not (isinstance(c.d_max, int) and c.d_min <= c.d_max):
                raise MixtureError(f"mixture {self.name}: d_max must be an integer >= d_min or absent, got {c.d_max!r}")
            if c.d_min > c.n_max - 1 and c.d_max is not None:
                raise MixtureError(f"mixture {self.name}: no graph with n <= {c.n_max} has a distance >= {c.d_min}")
            c.spec(self.max_vertices)  # GraphSpec's own checks

    @classmethod
    def from_dict(cls, name: str, values: dict, max_vertices: int) -> "Mixture":
        """From a TOML table `{components = [{family = ..., weight = ...}, ...]}`."""
        reject_unknown_keys(("components",), values, MixtureError, f"mixture {name}")
        parts = values.get("components")
        if not isinstance(parts, list) or not all(isinstance(p, dict) for p in parts):
            raise MixtureError(f"mixture {name}: components must be a list of tables")
        for part in parts:
            reject_unknown_keys(Component, part, MixtureError, f"mixture {name} component")
        return cls(tuple(Component(**part) for part in parts), max_vertices, name)

    def to_dict(self) -> dict:
        return {"name": self.name, "max_vertices": self.max_vertices,
                "components": [asdict(c) for c in self.components]}

    @property
    def max_edges(self) -> int:
        return max_edges(self.max_vertices)


def max_edges(max_vertices: int) -> int:
    """Edge slots any family can need at this vocabulary (a simple graph's most edges)."""
    return max_vertices * (max_vertices - 1) // 2


def sample_component(component: Component, size: int, max_vertices: int, rng, width: int,
                     max_rounds: int = 200) -> dict[str, np.ndarray]:
    """`size` graphs of one component (distance range enforced by rejection), edges padded to `width`."""
    rng = as_generator(rng)
    spec = component.spec(max_vertices)
    kept, have = [], 0
    for _ in range(max_rounds):
        arrays = sample_arrays(spec, max(64, 2 * (size - have)), rng)
        label = arrays["label"]
        keep = label >= component.d_min
        if component.d_max is not None:
            keep &= (label <= component.d_max) & (label < max_vertices)
        if keep.any():
            kept.append({k: v[keep] for k, v in arrays.items()})
            have += int(keep.sum())
        if have >= size:
            break
    else:
        raise MixtureError(f"component {component.label()}: too few graphs in its distance range "
                           f"{component.d_min}..{component.d_max} (got {have} of {size})")
    out = {}
    for key in kept[0]:
        if key == "edges":
            edges = np.zeros((have, width, 2), dtype=np.int64)  # (B, M, 2), zero padding
            start = 0
            for part in kept:
                edges[start:start + len(part[key]), : part[key].shape[1]] = part[key]
                start += len(part[key])
            out[key] = edges[:size]
        else:
            out[key] = np.concatenate([part[key] for part in kept])[:size]
    return out


def sample_mixture(mixture: Mixture, size: int, rng) -> dict[str, np.ndarray]:
    """`size` graphs (int64 arrays, shuffled) plus `component` (index of each graph's component)."""
    rng = as_generator(rng)
    if not isinstance(size, int) or size < 1:
        raise MixtureError(f"size must be a positive integer, got {size!r}")
    counts = rng.multinomial(size, [c.weight for c in mixture.components])
    parts = []
    for index, (component, count) in enumerate(zip(mixture.components, counts)):
        if count:
            arrays = sample_component(component, int(count), mixture.max_vertices, rng, mixture.max_edges)
            arrays["component"] = np.full(int(count), index, dtype=np.int64)
            parts.append(arrays)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    order = rng.permutation(size)
    return {key: value[order] for key, value in out.items()}


def as_batch(arrays: dict[str, np.ndarray], max_vertices: int) -> GraphBatch:
    return GraphBatch.from_numpy({k: v for k, v in arrays.items() if k != "component"}, max_vertices)


def build_mixture_dataset(mixture: Mixture, size: int, seed: int | np.random.SeedSequence, out,
                          relabel: bool = False) -> Path:
    """A pre-built dataset (one shard; `data_gen.load_dataset` format) of `size` mixture graphs,
    with vertex ids randomly relabelled (`relabel_ids`) when asked. `seed`: an int (a training
    set's `default_rng(seed)`) or a SeedSequence (a split's stream, data_gen.splits; the manifest
    records its entropy).

    The manifest's `spec` is an Erdos-Renyi spec at the vocabulary (it fixes the padding width and
    the vocabulary only); `mixture` records the real distribution."""
    rng = np.random.default_rng(seed)
    arrays = sample_mixture(mixture, size, rng)
    if relabel:
        arrays = relabel_ids(arrays, mixture.max_vertices, rng)
    padding = GraphSpec(family="erdos_renyi", n_min=3, n_max=mixture.max_vertices, max_vertices=mixture.max_vertices)
    recorded = [int(e) for e in seed.entropy] if isinstance(seed, np.random.SeedSequence) else seed
    return write_arrays(arrays, padding, out, {"mixture": mixture.to_dict(), "seed": recorded, "relabelled": relabel})


def relabel_ids(arrays: dict[str, np.ndarray], max_vertices: int, rng) -> dict[str, np.ndarray]:
    """Every graph's vertices 2..V renamed by its own uniform permutation (vertex 1, the source,
    keeps its id): a graph on n vertices then uses ids anywhere in 1..V, so every id's embedding is
    trained whatever n. Distances do not change; num_vertices becomes V (the ids not used are
    isolated vertices: unreachable, as absent targets were), edges are rewritten (a, b) with a < b."""
    rng = as_generator(rng)
    size = len(arrays["label"])
    keys = rng.random((size, max_vertices - 1))
    perm = np.concatenate([np.zeros((size, 2), dtype=np.int64), np.argsort(keys, axis=1) + 2], axis=1)  # (B, V + 1)
    perm[:, 1] = 1  # id 0 (padding) -> 0, 1 -> 1, 2..V -> a permutation of 2..V
    rows = np.arange(size)[:, None, None]
    edges = perm[rows, np.asarray(arrays["edges"])]  # (B, M, 2)
    edges = np.sort(edges, axis=2)  # (a, b) with a < b; padding (0, 0) stays
    out = dict(arrays)
    out.update(edges=edges, target=perm[np.arange(size), np.asarray(arrays["target"])],
               num_vertices=np.full(size, max_vertices, dtype=np.int64))
    return out


def input_cells(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """(B,) int64 cell code of each graph's inputs: (vertices touched by an edge, distinct edges,
    degree of vertex 1, degree of the target), all counted on distinct edges, so invariant to
    renaming the vertices 2..V and to repeated edge tokens."""
    edges = np.asarray(arrays["edges"])  # (B, M, 2)
    size, _, _ = edges.shape
    top = int(max(edges.max(initial=0), np.asarray(arrays["target"]).max(initial=0))) + 1
    adjacency = np.zeros((size, top, top), dtype=bool)  # (B, V + 1, V + 1)
    rows = np.repeat(np.arange(size), edges.shape[1])
    a, b = edges[..., 0].ravel(), edges[..., 1].ravel()
    adjacency[rows, a, b] = adjacency[rows, b, a] = True
    adjacency[:, 0, :] = adjacency[:, :, 0] = False  # padding rows (0, 0)
    degree = adjacency.sum(axis=2)  # (B, V + 1)
    touched = (degree > 0).sum(axis=1)
    distinct = degree.sum(axis=1) // 2
    target = np.asarray(arrays["target"])
    return ((touched * 100 + distinct) * 100 + degree[:, 1]) * 100 + degree[np.arange(size), target]


def coverage(test: dict[str, np.ndarray], train: dict[str, np.ndarray]) -> float:
    """Fraction of test graphs whose input cell (`input_cells`) occurs in the training sample."""
    return float(np.isin(input_cells(test), np.unique(input_cells(train))).mean())


def label_support(test: dict[str, np.ndarray], train: dict[str, np.ndarray]) -> float:
    """Fraction of test graphs whose label occurs in the training sample (reported apart)."""
    return float(np.isin(np.asarray(test["label"]), np.unique(train["label"])).mean())


def unseen_ids(test: dict[str, np.ndarray], train: dict[str, np.ndarray]) -> float:
    """Fraction of test graphs with a vertex id (edge or target) that no training graph uses."""
    def used(arrays):
        return np.unique(np.concatenate([np.asarray(arrays["edges"]).ravel(), np.asarray(arrays["target"])]))

    seen = used(train)
    ids = np.concatenate([np.asarray(test["edges"]).reshape(len(test["target"]), -1),
                          np.asarray(test["target"])[:, None]], axis=1)
    return float((~np.isin(ids, seen) & (ids > 0)).any(axis=1).mean())


def mixture_hash(mixture: Mixture) -> str:
    return hashlib.sha256(json.dumps(mixture.to_dict(), sort_keys=True).encode()).hexdigest()[:16]
