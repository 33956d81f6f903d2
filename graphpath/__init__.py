"""graphpath: when does a transformer generalize off-distribution? Shortest paths in small random
graphs, a learned transformer beside a BFS transformer set by hand.

The package's front door. Importing it loads nothing heavy (no torch): each name below is
imported the first time it is used.

    import graphpath
    model = graphpath.load("runs/small")                  # a run, a group of seeds, a checkpoint
    model.predict([(1, 3), (3, 2)])                       # one hand-drawn graph, target 2
    run = graphpath.train("experiments/small.toml", "runs/try", overrides={"train.steps": 200})
    doc = graphpath.evaluate(run)                         # eval.json as a dict

    load(path, stage=None, device="cpu") -> TrainedModel  the model and what it was trained on
    train(config, out, ...) -> RunDir                     what `python -m graphpath.train` runs
    evaluate(run_dir, ...) -> dict                        what `python -m graphpath.evaluate` runs
    predict_graphs(model, graphs, target=None) -> Prediction   any model on edge lists / networkx
    load_config(path, overrides=()) -> RunConfig; RunConfig, DataConfig, StageConfig, ModelConfig
    RunDir(path)                                          a run directory's files and seed runs
    GraphBatch, GraphSpec, study_presets, sample          the data (data_gen)
    build_bfs_transformer(n)                              the hand-built model (handcrafted)
    CheckpointError, ConfigError                          the one-line errors of bad input

`graphpath.train` and `graphpath.evaluate` are the command modules themselves, made callable
(graphpath.command), so they mean one thing whether or not `graphpath.train` was imported.
docs/architecture.md maps the packages behind these names.
"""
from importlib import import_module

# name -> (module, attribute); attribute None: the (callable) module itself
_EXPORTS = {
    "load": ("graphpath.core.resolve", "load"),
    "TrainedModel": ("graphpath.core.resolve", "TrainedModel"),
    "train": ("graphpath.train", None),
    "evaluate": ("graphpath.evaluate", None),
    "predict_graphs": ("graphpath.evaluation.predict", "predict_graphs"),
    "Prediction": ("graphpath.evaluation.predict", "Prediction"),
    "load_config": ("graphpath.core.config", "load_config"),
    "RunConfig": ("graphpath.core.config", "RunConfig"),
    "DataConfig": ("graphpath.core.config", "DataConfig"),
    "StageConfig": ("graphpath.core.config", "StageConfig"),
    "ModelConfig": ("graphpath.core.model", "ModelConfig"),
    "RunDir": ("graphpath_common.rundir", "RunDir"),
    "GraphBatch": ("data_gen", "GraphBatch"),
    "GraphSpec": ("data_gen", "GraphSpec"),
    "study_presets": ("data_gen", "study_presets"),
    "sample": ("data_gen", "sample"),
    "build_bfs_transformer": ("handcrafted", "build_bfs_transformer"),
    "CheckpointError": ("graphpath.core.checkpoint", "CheckpointError"),
    "ConfigError": ("graphpath.core.model", "ConfigError"),
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """PEP 562: import a public name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'graphpath' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = import_module(module) if attribute is None else getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
