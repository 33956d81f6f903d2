"""Pieces of the tiny study files the study tests share (edt, partial, mixture, the page's studies
section), and the one check that a bad study file is one line and exit 2."""
from __future__ import annotations

TINY_DATA = """[data]
n_max = 5
finetune_n_max = 4
small_target = 4
"""
TWO_MODELS = """[[models]]
d_model = 8
n_layers = 3
n_heads = 1
[[models]]
d_model = 16
n_layers = {second_layers}
n_heads = 2
"""
TINY_PRETRAIN = """[pretrain]
steps = 20
batch_size = 32
eval_every = 5
log_every = 5
eval_size = 64
checkpoint_every = 1000
"""
TINY_FINETUNE = """[finetune]
steps = 10
batch_size = 32
eval_every = 2
eval_size = 64
lr = 1e-3
checkpoint_every = 1000
"""


TINY_STEPS = """[steps]
epochs = 1
min_steps = 16
max_steps = 32
"""


TRANSFER_GRAPHS = """[data]
n_max = 5
[model]
d_model = 8
n_layers = 3
n_heads = 1
[steps]
epochs = 1
min_steps = 16
max_steps = 16
"""


def two_models(second_layers: int = 3) -> str:
    return TWO_MODELS.format(second_layers=second_layers)


def assert_bad_study(main, text: str, tmp_path, capsys, needle: str) -> None:
    """`main` given the study file `text` exits 2 with one line containing `needle`."""
    path = tmp_path / "study.toml"
    path.write_text(text)
    assert main(["--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
