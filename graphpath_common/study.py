"""The published study's recipe, and every way a run departs from it.

`STUDY_RECIPE` lists, per setting, the study's value (its post, and its committed notebook where
the post is silent) and where a run's resolved config.toml keeps the same setting. `departures`
compares a run with it, row by row, so the report and the page can show a "this run vs the study"
table generated from the run itself. Torch-free: the page (blog/) uses it too.

A row's `field` is a dotted config key (`train.lr`), or one of `parameters`, `examples`, `seeds`,
`perturb.*` (read from perturb.json's settings) whose run value the caller passes in, or
`optimizer` (the optimizer family, derived from the weight decays: graphpath always builds AdamW
with decoupled decay on matrices and embeddings only; with no decay that is Adam itself).
tests/test_departures.py checks that every key of a resolved config that departs from the
study's (experiments/paper.toml with its own departures undone) is a row here.
"""
from __future__ import annotations

from dataclasses import dataclass

# data_gen's balancing thresholds when config.toml leaves them out (data_gen.spec.study_presets);
# tests/test_departures.py keeps these in step with data_gen.
DEFAULT_THRESHOLDS = {"data.pretrain_threshold": 6, "data.finetune_threshold": 4}
# What a resolved config.toml means by leaving a key out (graphpath.core.config: unset thresholds,
# the study's default tasks, no clipping, no decay step, no weight average).
OMITTED = {**DEFAULT_THRESHOLDS, "data.pretrain_task": "distance-12", "data.finetune_task": "distance-onpath",
           "train.grad_clip": None, "train.decay_step": None, "finetune.grad_clip": None,
           "finetune.decay_step": None, "train.ema_decay": None, "finetune.ema_decay": None}
STUDY_BATCH = 2 ** 15
STUDY_OPTIMIZER = "Adam (L2 decay on every parameter)"
ADAMW = "AdamW (decoupled decay on matrices and embeddings; biases and LayerNorm undecayed)"
# Each study set's label variance (the MSE of predicting its mean label): 20,000 graphs drawn by
# data_gen's faithful generator at the study's sizes from the set's split-table row (draw 0);
# tests/test_departures.py redraws them. The study's MSE over this is its normalized MSE, the
# scale on which a run at other sizes (another unreachable label) compares with it.
STUDY_LABEL_VARIANCE = {"pretrain": 26.91, "finetune": 0.8086, "test-onpath-small": 1.048,
                        "test-onpath-large": 1.011, "test-any-small": 43.64,
                        "test-any-large-smalltarget": 41.44, "test-any-large": 36.82}

# The study's order of learning in its committed training log (its `loss` file: per-step batch
# losses of 2^15 graphs; tests/fixtures/study_log/loss_first300.txt): the step from which each of
# distances 1, 2, 3 stays below 0.1 within those first 300 steps (graphpath.training.phases.settle_steps,
# the measure a run's held-out curves get), and the step each first falls below it.
# tests/test_phases.py recomputes both from the fixture.
STUDY_SETTLE_STEPS = {"1": 17, "2": 28, "3": 56}
STUDY_FIRST_BELOW_STEPS = {"1": 5, "2": 17, "3": 40}


@dataclass(frozen=True)
class Setting:
    field: str  # dotted config key, or parameters / examples / perturb.<key>
    group: str  # architecture, optimizer, schedule, data, fine-tuning, perturbation, scale
    what: str
    study: object  # the study's value, in the config's units
    note: str = ""  # where the study's value comes from, when it is not the post's table


STUDY_RECIPE: tuple[Setting, ...] = (
    Setting("data.n_max", "data", "largest graph (vertices)", 15),
    Setting("data.finetune_n_max", "data", "largest fine-tuning graph", 7),
    Setting("data.small_target", "data", "largest \"small\" target", 7),
    Setting("data.pretrain_threshold", "data", "pre-training keeps every distance >=", 6),
    Setting("data.finetune_threshold", "data", "fine-tuning keeps every 1-2 distance >=", 4),
    Setting("data.pretrain_task", "data", "pre-training task", "distance-12"),
    Setting("data.finetune_task", "data", "fine-tuning task", "distance-onpath"),
    Setting("model.max_vertices", "data", "vocabulary: vertex tokens, and the unreachable label", 15,
            "off-path MSEs scale with the unreachable label: compare them normalised"),
    Setting("model.d_model", "architecture", "model width", 64),
    Setting("model.n_layers", "architecture", "layers", 11),
    Setting("model.n_heads", "architecture", "attention heads", 2),
    Setting("model.d_head", "architecture", "attention head width", 32),
    Setting("model.d_ff", "architecture", "MLP width", 256),
    Setting("model.norm", "architecture", "LayerNorm placement", "post"),
    Setting("model.attn_bias", "architecture", "attention biases", True),
    Setting("model.init", "architecture", "layer initialisation", "study",
            "nn.TransformerEncoder deep-copies one layer: all layers start identical"),
    Setting("parameters", "architecture", "parameters", 550_433),
    Setting("optimizer", "optimizer", "optimizer family", STUDY_OPTIMIZER,
            "torch.optim.Adam: weight decay (fine-tuning's 1e-5) is an L2 term on every parameter"),
    Setting("train.weight_decay", "optimizer", "pre-training weight decay (0 = Adam)", 0.0),
    Setting("train.betas", "optimizer", "Adam betas", [0.9, 0.999]),
    Setting("train.grad_clip", "optimizer", "gradient clipping (max norm)", None),
    Setting("train.precision", "optimizer", "precision", "fp32", "bf16 broke the study's training"),
    Setting("train.ema_decay", "optimizer", "weight average scored and saved (EMA decay)", None,
            "none: the study scored and saved the last weights"),
    Setting("train.lr", "schedule", "pre-training peak lr", 5e-4),
    Setting("train.decay", "schedule", "lr schedule", "step"),
    Setting("train.decay_step", "schedule", "step where the lr drops", 6400),
    Setting("train.min_lr", "schedule", "lr after the drop / at the end", 1e-4),
    Setting("train.warmup_steps", "schedule", "warmup steps", 0),
    Setting("train.batch_size", "scale", "pre-training batch (graphs)", STUDY_BATCH),
    Setting("train.steps", "scale", "pre-training steps", 9600),
    Setting("examples", "scale", "pre-training examples seen", 9600 * STUDY_BATCH,
            "the post: 3.14e8 examples, about 3 h on one GPU"),
    Setting("finetune.steps", "fine-tuning", "fine-tuning steps", 100,
            "the post; the committed notebook: 50 steps of the pre-training Adam at lr 1e-3"),
    Setting("finetune.lr", "fine-tuning", "fine-tuning lr", 1e-5,
            "the post; the committed notebook continued the pre-training Adam at lr 1e-3 for 50 steps"),
    Setting("finetune.decay", "fine-tuning", "fine-tuning lr schedule", "constant"),
    Setting("finetune.min_lr", "fine-tuning", "fine-tuning lr at the end", 1e-5, "constant lr: the end is the start"),
    Setting("finetune.warmup_steps", "fine-tuning", "fine-tuning warmup steps", 0),
    Setting("finetune.betas", "fine-tuning", "fine-tuning Adam betas", [0.9, 0.999]),
    Setting("finetune.grad_clip", "fine-tuning", "fine-tuning gradient clipping (max norm)", None),
    Setting("finetune.precision", "fine-tuning", "fine-tuning precision", "fp32"),
    Setting("finetune.ema_decay", "fine-tuning", "fine-tuning weight average (EMA decay)", None),
    Setting("finetune.weight_decay", "fine-tuning", "fine-tuning weight decay", 1e-5),
    Setting("finetune.batch_size", "fine-tuning", "fine-tuning batch (graphs)", STUDY_BATCH,
            "not stated in the post; the notebook's batch"),
    Setting("finetune.optimizer", "fine-tuning", "fine-tuning optimizer", "fresh",
            "the post; the committed notebook steps the pre-training Adam on (lr 1e-3, 50 steps)"),
    Setting("finetune.mode", "fine-tuning", "weights fine-tuned", "full"),
    Setting("finetune.body", "fine-tuning", "body fine-tuned", "pretrained"),
    Setting("seeds", "scale", "seeds (independent runs pooled)", 1, "the post reports one run"),
    Setting("perturb.kind", "perturbation", "perturbation", "replace", "one weight matrix replaced"),
    Setting("perturb.scale", "perturbation", "noise scale", "absolute", "randn_like: standard normal entries"),
    Setting("perturb.sigmas", "perturbation", "noise sigma", [1.0]),
    Setting("perturb.optimizer", "perturbation", "recovery optimizer", "adam"),
    Setting("perturb.lr", "perturbation", "recovery lr", 1e-6),
    Setting("perturb.batch_size", "perturbation", "recovery batch (graphs)", 512),
)


def _lookup(config: dict, field: str):
    section, _, key = field.partition(".")
    table = config.get(section) or {}
    if key in table:
        return table[key], True
    if field in OMITTED and section in config:
        return OMITTED[field], True
    return None, False


def same(study, run) -> bool:
    """Equal as settings: numbers compare by value (1e-4 == 0.0001), lists element-wise."""
    if isinstance(study, bool) or isinstance(run, bool):
        return study is run or study == run and type(study) is type(run)
    if isinstance(study, (int, float)) and isinstance(run, (int, float)):
        return abs(study - run) <= 1e-12 * max(abs(study), abs(run), 1.0)
    if isinstance(study, (list, tuple)) and isinstance(run, (list, tuple)):
        return len(study) == len(run) and all(same(a, b) for a, b in zip(study, run))
    return study == run


def show(value) -> str:
    """A setting as the table prints it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return str(value)


def optimizer_family(config: dict) -> str | None:
    """The optimizer a run's config builds: AdamW with decoupled decay on matrices and embeddings
    (graphpath.training.stage.stage_optimizer); with zero decay in every stage that is Adam, as the
    study's (its decay, coupled, matters only where it is nonzero)."""
    decays = [(config.get(stage) or {}).get("weight_decay") for stage in ("train", "finetune") if stage in config]
    if not decays or any(d is None for d in decays):
        return None
    return STUDY_OPTIMIZER if all(d == 0 for d in decays) else ADAMW


def departures(config: dict, parameters: int | None = None, examples: int | None = None,
               perturb: dict | None = None, seeds: int | None = None) -> list[dict]:
    """One row per study setting: {field, group, what, study, run, differs, note}.

    config: a run's resolved config.toml as a dict; parameters: the learned model's parameter
    count; examples: pre-training examples seen (default steps x batch); seeds: the runs pooled
    (None: not known, "not run"); perturb: perturb.json's
    `settings` (None: the run has no perturbation study; those rows say "not run"). `differs` is
    True/False, or None where the run has no value for the setting."""
    rows = []
    for setting in STUDY_RECIPE:
        if setting.field == "parameters":
            value, known = parameters, parameters is not None
        elif setting.field == "examples":
            train = config.get("train") or {}
            value = examples if examples is not None else (
                train["steps"] * train["batch_size"] if "steps" in train and "batch_size" in train else None)
            known = value is not None
        elif setting.field == "seeds":
            value, known = seeds, seeds is not None
        elif setting.field == "optimizer":
            value = optimizer_family(config)
            known = value is not None
        elif setting.field.startswith("perturb."):
            key = setting.field.partition(".")[2]
            known = perturb is not None and key in perturb
            value = perturb.get(key) if known else None
        else:
            value, known = _lookup(config, setting.field)
        rows.append({"field": setting.field, "group": setting.group, "what": setting.what,
                     "study": show(setting.study), "run": show(value) if known else "not run",
                     "differs": (not same(setting.study, value)) if known else None, "note": setting.note})
    return rows
