"""What a dataset is: `GraphSpec`, validated on construction, and the study's seven named sets.

A spec fixes the graph family, the vertex-count range, the target mode, the label convention
(`max_vertices` is both the vertex vocabulary and the "infinity" label of an unreachable target)
and the balancing rule. The same definitions scale from the study's sizes (n <= 15) to CPU-sized
variants by changing the vertex bounds: see `study_presets`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from graphpath_common.keys import reject_unknown_keys

FAMILIES = ("reference", "erdos_renyi", "tree", "path")
TARGET_MODES = ("fixed", "on_path", "any")  # the distance task's; every sampler and model takes them
ALL_TARGET_MODES = TARGET_MODES + ("source",)  # source (t = 1): tasks about vertex 1 itself
# what the label means (data_gen/tasks.py): distance 1 -> t (the study's), or another question
TASKS = ("distance", "reachable", "degree", "reach_count", "eccentricity")
TASK_TARGETS = {"reachable": ("any",), "degree": ("any",), "reach_count": ("source",),
                "eccentricity": ("source",), "distance": ("fixed", "on_path", "any")}
BALANCES = ("study", "uniform", "none")
N_DRAWS = ("example", "graph")
T_MAX_RULES = ("redraw", "cap")
MAX_SUPPORTED_VERTICES = 64  # labels use one uint64 bitset per vertex
# The study's balancing thresholds: pre-training keeps every distance >= 6, fine-tuning keeps
# every 1-2 distance >= 4 (docs/study.md, Data).
STUDY_THRESHOLD = {"fixed": 6, "on_path": 4}


class SpecError(ValueError):
    """A spec that cannot describe a dataset; the message names the offending field."""


@dataclass(frozen=True)
class GraphSpec:
    family: str = "reference"  # reference | erdos_renyi | tree | path
    n_min: int = 3  # fewest vertices; >= 3 so that vertices 1 and 2 exist with room to spare
    n_max: int = 15  # most vertices (uniform in [n_min, n_max])
    max_vertices: int | None = None  # vocabulary and unreachable label; None = n_max
    target: str = "fixed"  # fixed (t = 2) | on_path (t on a shortest 1-2 path) | any (t uniform)
    #                        | source (t = 1, for tasks about vertex 1 itself)
    t_max: int | None = None  # on_path: cap on the target's id; any: upper bound (None = max_vertices)
    balance: str = "none"  # study | uniform | none
    balance_threshold: int | None = None  # study rule's threshold; None = the study's (6 or 4)
    unreachable_keep: float | None = None  # study rule, fixed target: keep prob; None = 1/max_vertices
    avg_degree: float = 2.0  # erdos_renyi only: expected degree of a vertex
    # example: n drawn once per example, a rejected graph redrawn at the same n (the study's rule,
    # n stays uniform); graph: every raw graph draws its n. None = example, or graph for balance
    # 'uniform' (whose per-label quotas could otherwise wait forever on an n that cannot fill them)
    n_draw: str | None = None
    # on_path with t_max: redraw the graph when the chosen on-path vertex is > t_max (the study's
    # rule), or cap the candidates at t_max
    t_max_rule: str = "redraw"
    task: str = "distance"  # the label's meaning: distance | reachable | degree | reach_count | eccentricity

    def __post_init__(self):
        def need(ok: bool, message: str):
            if not ok:
                raise SpecError(message)

        need(self.family in FAMILIES, f"unknown family {self.family!r} (choose from {', '.join(FAMILIES)})")
        need(self.target in ALL_TARGET_MODES,
             f"unknown target mode {self.target!r} (choose from {', '.join(ALL_TARGET_MODES)})")
        need(self.balance in BALANCES, f"unknown balance {self.balance!r} (choose from {', '.join(BALANCES)})")
        for name in ("n_min", "n_max"):
            need(isinstance(getattr(self, name), int), f"{name} must be an integer")
        need(self.n_min >= 3, f"n_min must be >= 3 so vertex 2 exists with room for a path, got {self.n_min}")
        need(self.n_min <= self.n_max, f"n_min ({self.n_min}) > n_max ({self.n_max})")
        if self.max_vertices is None:
            object.__setattr__(self, "max_vertices", self.n_max)
        need(isinstance(self.max_vertices, int), "max_vertices must be an integer")
        need(self.n_max <= self.max_vertices <= MAX_SUPPORTED_VERTICES,
             f"max_vertices ({self.max_vertices}) must lie in [n_max={self.n_max}, {MAX_SUPPORTED_VERTICES}]")
        if self.t_max is not None:
            need(isinstance(self.t_max, int) and 2 <= self.t_max <= self.max_vertices,
                 f"t_max ({self.t_max}) must lie in [2, max_vertices={self.max_vertices}]")
            need(self.target not in ("fixed", "source"),
                 f"t_max has no meaning with target {self.target!r} (t is always {2 if self.target == 'fixed' else 1})")
        need(not (self.balance == "study" and self.target == "any"),
             "balance 'study' is defined for targets 'fixed' and 'on_path' only")
        if self.balance_threshold is not None:
            need(isinstance(self.balance_threshold, int) and 1 <= self.balance_threshold <= self.max_vertices,
                 f"balance_threshold ({self.balance_threshold}) must lie in [1, {self.max_vertices}]")
        if self.unreachable_keep is not None:
            need(0.0 <= self.unreachable_keep <= 1.0,
                 f"unreachable_keep ({self.unreachable_keep}) must lie in [0, 1]")
        need(self.avg_degree > 0, f"avg_degree must be > 0, got {self.avg_degree}")
        if self.n_draw is None:
            object.__setattr__(self, "n_draw", "graph" if self.balance == "uniform" else "example")
        need(self.n_draw in N_DRAWS, f"unknown n_draw {self.n_draw!r} (choose from {', '.join(N_DRAWS)})")
        need(not (self.balance == "uniform" and self.n_draw == "example"),
             "balance 'uniform' needs n_draw 'graph' (a per-label quota may be unreachable at a held n)")
        need(self.task in TASKS, f"unknown task {self.task!r} (choose from {', '.join(TASKS)})")
        need(self.target in TASK_TARGETS[self.task],
             f"task {self.task!r} takes target {' or '.join(TASK_TARGETS[self.task])}, not {self.target!r}")
        need(self.task == "distance" or self.balance != "study",
             f"balance 'study' is defined for the distance task only, not {self.task!r}")
        need(self.t_max_rule in T_MAX_RULES,
             f"unknown t_max_rule {self.t_max_rule!r} (choose from {', '.join(T_MAX_RULES)})")

    # ---- derived values -----------------------------------------------------------------------
    @property
    def threshold(self) -> int:
        """The study rule's threshold distance for this target mode."""
        if self.balance_threshold is not None:
            return self.balance_threshold
        return STUDY_THRESHOLD.get(self.target, 0)

    @property
    def unreachable_keep_prob(self) -> float:
        return 1.0 / self.max_vertices if self.unreachable_keep is None else self.unreachable_keep

    @property
    def target_max(self) -> int:
        """Largest target id this spec can produce."""
        if self.target in ("fixed", "source"):
            return 2 if self.target == "fixed" else 1
        if self.target == "any":
            return self.t_max if self.t_max is not None else self.max_vertices
        return min(self.n_max, self.t_max if self.t_max is not None else self.n_max)

    @property
    def max_edges(self) -> int:
        """Edge slots a graph of this spec can need (the padding width of a pre-built dataset)."""
        if self.family == "reference":
            return self.n_max
        if self.family in ("tree", "path"):
            return self.n_max - 1
        return self.n_max * (self.n_max - 1) // 2

    # ---- (de)serialization --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GraphSpec":
        reject_unknown_keys(cls, values, SpecError, "spec")
        try:
            return cls(**values)
        except TypeError as error:  # e.g. a string where a number belongs
            raise SpecError(str(error)) from None

    def replace(self, **changes) -> "GraphSpec":
        values = self.to_dict()
        if "n_max" in changes and "max_vertices" not in changes and values["max_vertices"] == self.n_max:
            values["max_vertices"] = None  # follow the new n_max
        if "balance" in changes and "n_draw" not in changes:
            values["n_draw"] = None  # follow the new balance
        values.update(changes)
        return GraphSpec.from_dict(values)


PRESET_NAMES = ("pretrain", "finetune", "test-onpath-small", "test-onpath-large", "test-any-small",
                "test-any-large-smalltarget", "test-any-large")
TEST_SET_NAMES = PRESET_NAMES[2:]


STUDY_FINETUNE_N_MAX = 7  # the study fine-tuned on graphs up to 7 vertices ...
STUDY_SMALL_TARGET = 7  # ... and called targets <= 7 "small"


def study_sizes_up_to(n_max: int) -> dict:
    """`study_presets` keywords for graphs up to `n_max` with the study's other sizes capped at it
    (the data a hand-built model for n = n_max is scored and perturbed on)."""
    return {"n_max": n_max, "finetune_n_max": min(STUDY_FINETUNE_N_MAX, n_max),
            "small_target": min(STUDY_SMALL_TARGET, n_max)}


def study_presets(n_max: int = 15, finetune_n_max: int = STUDY_FINETUNE_N_MAX,
                  small_target: int = STUDY_SMALL_TARGET,
                  pretrain_threshold: int | None = None,
                  finetune_threshold: int | None = None) -> dict[str, GraphSpec]:
    """The study's seven datasets (the table of docs/study.md) at any size.

    Defaults are the study's: graphs up to 15 vertices, fine-tuning on graphs up to 7, "small"
    targets <= 7. A CPU-sized variant changes the bounds, e.g. `study_presets(8, 5, 5, 4, 3)`.
    Every set shares `max_vertices = n_max`, so unreachable means the same label everywhere.
    """
    if not 3 <= finetune_n_max <= n_max:
        raise SpecError(f"finetune_n_max ({finetune_n_max}) must lie in [3, n_max={n_max}]")
    if not 2 <= small_target <= n_max:
        raise SpecError(f"small_target ({small_target}) must lie in [2, n_max={n_max}]")
    base = dict(family="reference", n_min=3, n_max=n_max, max_vertices=n_max)
    return {
        "pretrain": GraphSpec(**base, target="fixed", balance="study", balance_threshold=pretrain_threshold),
        "finetune": GraphSpec(**{**base, "n_max": finetune_n_max}, target="on_path", balance="study",
                              balance_threshold=finetune_threshold),
        # the study balances on-path sets only on small graphs: its on-path test sets are not
        "test-onpath-small": GraphSpec(**base, target="on_path", t_max=small_target, balance="none"),
        "test-onpath-large": GraphSpec(**base, target="on_path", balance="none"),
        "test-any-small": GraphSpec(**{**base, "n_max": finetune_n_max}, target="any",
                                    t_max=max(2, min(small_target, n_max)), balance="none"),
        "test-any-large-smalltarget": GraphSpec(**base, target="any", t_max=small_target, balance="none"),
        "test-any-large": GraphSpec(**base, target="any", t_max=n_max, balance="none"),
    }


PRESETS: dict[str, GraphSpec] = study_presets()


def preset(name: str, **sizes) -> GraphSpec:
    """One named preset, at the study's sizes or at the sizes given (see `study_presets`)."""
    specs = study_presets(**sizes) if sizes else PRESETS
    if name not in specs:
        raise SpecError(f"unknown preset {name!r} (choose from {', '.join(PRESET_NAMES)})")
    return specs[name]
