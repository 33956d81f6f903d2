"""`python -m graphpath.interpret RUN_DIR`: what the learned model's residual stream holds.

On a fixed sample of the run's `pretrain` data (`--size` graphs, `--seed`; probes fit on the first
3/4 and are scored on the rest), for the run's final checkpoint and for a randomly initialised
model of the same shape (the baseline), per layer (`hook_embed`, then each block's `hook_resid_post`):
    hops      target token: "v within k hops of vertex 1" for every v and k (one linear probe
              per (v, k)); held-out accuracy per k (mean over v) and the majority-class accuracy
    distance  target token: the 1 -> t distance, held-out R^2
    endpoints edge tokens: which vertices the edge touches (one probe per vertex), accuracy
    attention per head: attention mass of edge-token queries on edges that share a vertex with
              theirs ("along graph edges"), what uniform attention would give, and on the target
    patching  (trained model) the same graphs with another target are run, and the clean
              activation at one layer and token kind (target | edges) is patched in: the share of
              the output gap restored
    offpath   (the inspected checkpoint: the fine-tuned one when the run has it) the probes again on
              graphs whose target is on a shortest 1 -> 2 path and on graphs whose target is not,
              the model's MSE on each, and a `verdict` on why off-path targets fail (`offpath`)
Reference: the hand-built model of the same size, its own stream — "v within k hops" read from
vertex v's token after k hop blocks, and the distance from the answer token at the end (these
should be 1; they are measured, not assumed).

Output: `RUN_DIR/interpret.json` (schema in docs/contracts.md) and `RUN_DIR/figures/interpret_*.html`
plus `interpret.png`. The model comes through graphpath.core.resolve (a group: its first seed's);
a run trained on other tasks than the study's is refused in one line. A few minutes on 2 cores for the CPU study's model (n <= 8, 6 layers).
"""
from __future__ import annotations

import math
import re
import sys
from contextlib import ExitStack
from pathlib import Path

import matplotlib
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from data_gen import GraphBatch, study_presets
from data_gen.splits import SPLITS, split_batch
from graphpath_common import provenance
from graphpath_common.cli import ArgumentParser, run_cli
from graphpath_common.figures import write_html, write_png
from graphpath_common.jsonfile import write_json
from graphpath_common.locks import hold
from graphpath_common.rundir import INTERPRET, RunDir
from handcrafted import build_bfs_transformer

from graphpath.analysis import probe_fits as P
from graphpath.core.checkpoint import CheckpointError
from graphpath.core.resolve import load
from graphpath.core.model import build_model, hooks

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

PROG = "python -m graphpath.interpret"
SCHEMA_VERSION = 1
RESID = re.compile(r"^hook_embed$|^blocks\.(\d+)\.hook_resid_post$")
PATTERN = re.compile(r"^blocks\.(\d+)\.attn\.hook_pattern$")


class InterpretError(ValueError):
    """Bad input (no checkpoint, unknown layer); one line, exit 2."""


def stream_points(model) -> list[str]:
    """Hook names of the residual stream in order: the embedding, then each block's output."""
    names = [n for n in model.hook_names() if RESID.match(n)]
    return sorted(names, key=lambda n: -1 if "embed" in n else int(RESID.match(n).group(1)))


def probe_layers(model, batch: GraphBatch, hops: int, layers: list[str] | None = None) -> dict:
    """Every probe and the attention statistics at each stream point of a learned-format model."""
    points = stream_points(model)
    if layers:
        unknown = sorted(set(layers) - set(points))
        if unknown:
            raise InterpretError(f"unknown layer(s) {', '.join(unknown)} (known: {', '.join(points)})")
        points = [p for p in points if p in layers]
    patterns = [n for n in model.hook_names() if PATTERN.match(n)]
    _, cache = model.run_with_cache(batch, names=points + patterns)
    n = batch.max_vertices
    hop = P.hop_labels(batch, hops).reshape(len(batch), n * hops)  # (B, n*K)
    ends, mask = P.endpoint_labels(batch)
    out = {"layers": points, "hops": [], "hops_majority": [], "distance_r2": [], "endpoints": [],
           "endpoints_majority": [], "attention": {}}
    for point in points:
        x = cache[point]  # (B, T, D)
        h = P.binary_probe(x[:, 0], hop)
        out["hops"].append(h["accuracy"].reshape(n, hops).mean(0).tolist())  # per k
        out["hops_majority"].append(h["majority"].reshape(n, hops).mean(0).tolist())
        out["distance_r2"].append(P.scalar_probe(x[:, 0], batch.label)["r2"])
        e = P.binary_probe(x[:, 1:][mask], ends)
        out["endpoints"].append(float(e["accuracy"].mean()))
        out["endpoints_majority"].append(float(e["majority"].mean()))
    for name in patterns:
        stats = P.edge_attention(cache[name], batch)
        out["attention"][name] = {k: v.tolist() for k, v in stats.items()}
    return out


@torch.no_grad()
def offpath(model, random, presets: dict, size: int, seed: int, hops: int) -> dict:
    """Why do off-path targets fail? The same probes on graphs whose target is on a shortest 1 -> 2
    path (`test-onpath-large`) and on graphs whose target is not (`test-any-large`, off-path rows
    only), per stream point: within-k-hops accuracy (mean over v and k) and distance R^2 of a probe
    fitted within each group, the R^2 off path of the distance probe fitted on path ("transfer"),
    the model's own MSE per group, and the off-path probes on the random-init model `random` (the
    baseline a probe must beat); `verdict` names which explanation the numbers support."""
    on = split_batch("sample-inspect", spec=presets["test-onpath-large"], size=size, key=1, seed=seed).trim()
    anyt = split_batch("sample-inspect", spec=presets["test-any-large"], size=3 * size, key=2, seed=seed)
    off = anyt[(~P.on_path_targets(anyt)).nonzero().flatten()[:size]].trim()
    if len(off) < 16:
        return {"verdict": "too-few", "off_count": len(off)}
    points = stream_points(model)
    out = {"on_count": len(on), "off_count": len(off), "layers": points}
    caches = {}
    for name, group in (("on", on), ("off", off)):
        prediction, caches[name] = model.run_with_cache(group, names=points)
        out[f"mse_{name}"] = float((prediction.double() - group.label.double()).pow(2).mean())
        hop = P.hop_labels(group, hops).reshape(len(group), -1)
        out[f"hops_{name}"] = [float(P.binary_probe(caches[name][p][:, 0], hop)["accuracy"].mean()) for p in points]
        out[f"distance_r2_{name}"] = [P.scalar_probe(caches[name][p][:, 0], group.label)["r2"] for p in points]
    transfer = []
    for p in points:
        w = P.ridge_fit(caches["on"][p][:, 0], on.label[:, None].float())
        predicted, truth = P.ridge_predict(w, caches["off"][p][:, 0])[:, 0], off.label.double()
        variance = float(truth.var(unbiased=False))
        transfer.append(1 - float((predicted - truth).pow(2).mean()) / variance if variance > 0 else float("nan"))
    out["distance_r2_transfer"] = transfer
    _, base = random.run_with_cache(off, names=points)
    hop = P.hop_labels(off, hops).reshape(len(off), -1)
    out["hops_off_random"] = [float(P.binary_probe(base[p][:, 0], hop)["accuracy"].mean()) for p in points]
    out["distance_r2_off_random"] = [P.scalar_probe(base[p][:, 0], off.label)["r2"] for p in points]
    out["verdict"] = offpath_verdict(out)
    return out


def offpath_verdict(block: dict) -> str:
    """no-failure: off-path MSE within 2x of on-path; readout: a linear probe fitted off path reads
    the distance (best R^2 >= 0.8) that the model's own answer misses; no-reach-signal: the
    within-k-hops probes off path do not beat the random-init model's by 0.02, so they cannot say
    what the model computes; reach-not-distance: they read reach as well off path as on it (within
    0.05) but the distance is not readable; reach-missing: reach itself is less readable off path."""
    if block["mse_off"] <= 2 * block["mse_on"]:
        return "no-failure"
    r2_off = max((v for v in block["distance_r2_off"] if v is not None and math.isfinite(v)), default=float("nan"))
    if r2_off >= 0.8:
        return "readout"
    if max(block["hops_off"]) < max(block["hops_off_random"]) + 0.02:
        return "no-reach-signal"
    if max(block["hops_off"]) >= max(block["hops_on"]) - 0.05:
        return "reach-not-distance"
    return "reach-missing"


def retarget(batch: GraphBatch, seed: int) -> GraphBatch:
    """The same graphs asking for another target vertex (2..n, never the same one)."""
    n = batch.max_vertices
    shift = torch.randint(1, n - 1, (len(batch),), generator=torch.Generator().manual_seed(seed))
    target = (batch.target.long() - 2 + shift) % (n - 1) + 2
    return GraphBatch(edges=batch.edges, num_vertices=batch.num_vertices, target=target.to(batch.target.dtype),
                      label=batch.label, path_length=batch.path_length, max_vertices=n)


@torch.no_grad()
def patching(model, batch: GraphBatch, seed: int) -> dict:
    """{point: {"target": restored share, "edges": restored share}} patching clean into corrupt."""
    corrupt = retarget(batch, seed)
    points = stream_points(model)
    clean_out, cache = model.run_with_cache(batch, names=points)
    corrupt_out = model(corrupt)
    result = {}
    for point in points:
        result[point] = {}
        for kind, positions in (("target", slice(0, 1)), ("edges", slice(1, None))):
            def patch(module, inputs, output, positions=positions, clean=cache[point]):
                output = output.clone()
                output[:, positions] = clean[:, positions]
                return output
            with hooks(model, {point: patch}):
                patched = model(corrupt)
            result[point][kind] = P.restored(clean_out, corrupt_out, patched)
    return result


@torch.no_grad()
def handcrafted_reference(batch: GraphBatch, hops: int) -> dict:
    """The hand-built model's own stream: within-k-hops from vertex v's token after k hop blocks
    (one probe per k, pooled over vertices) and the distance from the answer token at the end."""
    n = batch.max_vertices
    model = build_bfs_transformer(n)
    labels = P.hop_labels(batch, hops)  # (B, n, K)
    accuracy = []
    for k in range(hops):
        x = model.stream(batch, upto=k)[:, :n]  # (B, n, D) after k hop blocks
        accuracy.append(float(P.binary_probe(x.reshape(-1, x.shape[-1]), labels[..., k].reshape(-1, 1))["accuracy"][0]))
    final = model.stream(batch)[:, n]
    return {"hops": accuracy, "distance_r2": P.scalar_probe(final, batch.label)["r2"]}


def figures(doc: dict, directory: Path) -> list[str]:
    trained, random = doc["trained"], doc["random"]
    layers = trained["layers"]
    fig = make_subplots(rows=1, cols=3, subplot_titles=("within k hops (mean over k)", "distance R²",
                                                        "edge endpoints"))
    mean = lambda rows: [sum(r) / len(r) for r in rows]  # noqa: E731
    for name, res, dash in (("trained", trained, "solid"), ("random init", random, "dash")):
        fig.add_scatter(x=layers, y=mean(res["hops"]), name=f"{name}", line_dash=dash, row=1, col=1)
        fig.add_scatter(x=layers, y=res["distance_r2"], name=f"{name}", line_dash=dash, row=1, col=2, showlegend=False)
        fig.add_scatter(x=layers, y=res["endpoints"], name=f"{name}", line_dash=dash, row=1, col=3, showlegend=False)
    fig.add_scatter(x=layers, y=mean(trained["hops_majority"]), name="majority class", line_dash="dot", row=1, col=1)
    fig.update_layout(title="Linear probes per layer (held-out)", height=380)
    paths = [write_html(fig, directory / "interpret_probes.html")]
    att = trained["attention"]
    heads = [f"{name.split('.')[1]}.h{h}" for name in att for h in range(len(att[name]["along_edges"]))]
    ratio = [a / u if u > 0 else 0 for name in att for a, u in zip(att[name]["along_edges"], att[name]["uniform"])]
    bars = go.Figure(go.Bar(x=heads, y=ratio))
    bars.update_layout(title="Attention along graph edges / uniform (edge-token queries), per layer.head",
                       yaxis_title="ratio (1 = no preference)", height=340)
    paths.append(write_html(bars, directory / "interpret_attention.html"))
    patch = doc["patching"]
    pfig = go.Figure([go.Bar(x=list(patch), y=[patch[p][kind] for p in patch], name=kind) for kind in ("target", "edges")])
    pfig.update_layout(title="Activation patching: share of the output gap restored", barmode="group", height=340)
    paths.append(write_html(pfig, directory / "interpret_patching.html"))
    off = doc.get("offpath") or {}
    if "layers" in off:
        ofig = go.Figure()
        for key, name in (("distance_r2_on", "distance R², on-path targets"),
                          ("distance_r2_off", "distance R², off-path targets"),
                          ("distance_r2_transfer", "distance R², probe fitted on path, scored off path"),
                          ("hops_on", "within-k-hops accuracy, on path"), ("hops_off", "within-k-hops accuracy, off path")):
            ofig.add_scatter(x=off["layers"], y=off[key], name=name, line_dash="dot" if "hops" in key else "solid")
        ofig.update_layout(title=f"Why off-path targets fail: model MSE {off['mse_on']:.3g} on path, "
                                 f"{off['mse_off']:.3g} off path (verdict: {off['verdict']})",
                           yaxis=dict(range=[-0.2, 1.05]), height=360)
        paths.append(write_html(ofig, directory / "interpret_offpath.html"))
    mfig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for name, res, style in (("trained", trained, "-"), ("random init", random, "--")):
        axes[0].plot(mean(res["hops"]), style, label=name)
        axes[1].plot(res["distance_r2"], style, label=name)
        axes[2].plot(res["endpoints"], style, label=name)
    for ax, title in zip(axes, ("within k hops", "distance R²", "edge endpoints")):
        ax.set_title(title)
        ax.set_xticks(range(len(layers)), [RESID.sub(lambda m: m.group(1) or "embed", l) for l in layers])
    axes[0].legend()
    paths.append(write_png(mfig, directory / "interpret.png"))
    plt.close(mfig)
    return [str(p) for p in paths]


def interpret_run(run: Path, size: int, seed: int, layers: list[str] | None) -> dict:
    """interpret.json's document for the run's final model (a group: its first seed's), found by
    graphpath.core.resolve; a model trained on other tasks than the study's is refused (the probes
    and the off-path verdict are about distances on the study's sets)."""
    try:
        trained = load(run)
        trained.require_study(PROG)
        spec = trained.analysis_spec("pretrain", PROG)
    except CheckpointError as error:
        raise InterpretError(str(error)) from None
    model, info, json_path = trained.model, trained.info, trained.checkpoint
    if not stream_points(model) or not any(PATTERN.match(n) for n in model.hook_names()):
        raise InterpretError(f"the model in {json_path} has no residual-stream or attention-pattern hook points "
                             "to probe")
    presets = study_presets(**trained.data)
    batch = split_batch("sample-inspect", spec=spec, size=size, seed=seed).trim()
    hops = spec.max_vertices
    torch.manual_seed(seed)
    random = build_model(info["model_config"]).eval()
    return {"schema": SCHEMA_VERSION, "checkpoint": str(json_path), "stage": info.get("stage"),
            "target": trained.description(),
            "data": spec.to_dict(), "size": size, "seed": seed, "train_share": 0.75, "hops_k": list(range(hops)),
            "trained": probe_layers(model.eval(), batch, hops, layers),
            "random": probe_layers(random, batch, hops, layers),
            "patching": patching(model, batch, seed), "handcrafted": handcrafted_reference(batch, hops),
            "offpath": offpath(model, random, presets, size, seed, hops)}


def _main(argv) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("run", help="run directory with checkpoints")
    parser.add_argument("--size", type=int, default=2048, help="graphs sampled (3/4 fit, 1/4 held out)")
    parser.add_argument("--seed", type=int, default=SPLITS["sample-inspect"].seed,
                        help="seed of the inspected graphs (default: data_gen.splits' sample-inspect row)")
    parser.add_argument("--layers", nargs="+", help="stream points to probe (default all)")
    parser.add_argument("--out", help="default RUN_DIR/interpret.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-figures", dest="figures", action="store_false")
    args = parser.parse_args(argv)
    if args.size < 16:
        raise InterpretError(f"--size must be >= 16, got {args.size}")
    if args.seed < 0:
        raise InterpretError(f"--seed must be >= 0, got {args.seed}")
    torch.set_num_threads(max(1, args.threads))
    run = Path(args.run)
    if not run.is_dir():
        raise InterpretError(f"no run directory {run}")
    home = RunDir(run)
    out = Path(args.out) if args.out else home.path / INTERPRET
    folders = [out.parent] + ([run] if args.figures and run.resolve() != out.parent.resolve() else [])
    invocation = provenance.entry(provenance.command_line(PROG, argv), "cpu", torch.get_num_threads())
    with ExitStack() as held:  # writable, and no other writer, before the probes run
        for folder in folders:
            held.enter_context(hold(folder, PROG))
        doc = interpret_run(run, args.size, args.seed, args.layers)
        doc["provenance"] = provenance.finish(invocation, "finished")
        if args.figures:
            doc["figures"] = figures(doc, home.figures)
        write_json(out, doc)  # an undefined R^2 or restored share (zero variance or gap) is written as null
    hand = doc["handcrafted"]
    print(f"hand-built reference: within-k-hops accuracy {min(hand['hops']):.3f}..{max(hand['hops']):.3f}, "
          f"distance R2 {hand['distance_r2']:.4f}")
    print(f"trained, last layer: distance R2 {doc['trained']['distance_r2'][-1]:.3f} "
          f"(random init {doc['random']['distance_r2'][-1]:.3f}); wrote {out}")
    off = doc["offpath"]
    if "layers" in off:
        print(f"{doc['stage']} model: MSE on-path {off['mse_on']:.4g}, off-path {off['mse_off']:.4g}; best distance R2 "
              f"on {max(off['distance_r2_on']):.3f}, off {max(off['distance_r2_off']):.3f}; verdict {off['verdict']}")
    return 0


def main(argv=None) -> int:
    return run_cli(PROG, _main, argv, InterpretError)


if __name__ == "__main__":
    sys.exit(main())
