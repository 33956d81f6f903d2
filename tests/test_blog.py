"""The blog renderer on the fixture run directory: content, offline assets, escaping, bad input."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import blog
from blog.__main__ import main
from blog.markup import TemplateError, placeholders, select_sections, to_html
from blog.html import Html, Text, escape
from blog.values import fmt

FIXTURE = Path(__file__).parent / "fixtures" / "run_fixture"


@pytest.fixture
def run_copy(tmp_path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(FIXTURE, target)
    return target


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_render_writes_offline_page(tmp_path):
    index = blog.render(FIXTURE, tmp_path / "out")
    assert index == tmp_path / "out" / "index.html"
    html = index.read_text()
    for name in ("plotly.min.js", "d3.min.js", "mpld3.min.js", "style.css"):
        assert (tmp_path / "out" / "assets" / name).stat().st_size > 0
        assert f'src="assets/{name}"' in html or f'href="assets/{name}"' in html
    # nothing is fetched from elsewhere: every src/href is relative, no CDN, no MathJax
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert not re.match(r"[a-z]+:", ref), ref
    assert "cdn" not in html.lower() and "mathjax" not in html.lower()
    assert html.count('data-kind="plotly"') >= 5 and html.count('data-kind="mpld3"') >= 1
    assert html.count("<math") >= 5  # LaTeX became MathML at build time
    assert "{{" not in html and "BLOGTOKEN" not in html


def test_numbers_come_from_the_run(run_copy, tmp_path):
    def change(doc):
        doc["reproduction"][0].update(study_mse=123.25)
        doc["reproduction"][1].update(mse=0.7777)
        doc["reproduction"][2].update(mse=0.03125)
    edit_json(run_copy / "eval.json", change)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    # the fine-tune numbers are the evaluator's, and say what they pool
    assert "scores 0.7777 (1 seed, 4,096 graphs) on this task" in html and "it scores 0.03125 (1 seed" in html
    assert "<td>123.2</td>" in html  # fmt keeps four significant figures
    rows = [json.loads(line) for line in (run_copy / "metrics.jsonl").read_text().splitlines()]
    examples = [r["examples"] for r in rows if r["stage"] == "pretrain"][-1]
    assert f"{examples:,} pre-training examples" in html


def test_same_run_same_bytes(tmp_path):
    first = blog.render(FIXTURE, tmp_path / "a").read_bytes()
    assert blog.render(FIXTURE, tmp_path / "b").read_bytes() == first


def test_parameter_count_matches_the_checkpoint(tmp_path):
    tensors = load_file(FIXTURE / "checkpoints" / "finetune-final.safetensors")
    expected = sum(t.size for t in tensors.values())
    html = blog.render(FIXTURE, tmp_path / "out").read_text()
    assert f"{expected:,} parameters" in html


def test_run_text_is_escaped(run_copy, tmp_path):
    evil = '<script>alert("x")</script>'
    config = (run_copy / "config.toml").read_text().replace('name = "fixture"', f"name = '{evil}'")
    (run_copy / "config.toml").write_text(config)

    def change(doc):
        doc["sets"]["<b>bold</b>"] = doc["sets"]["pretrain"]
        doc["findings"][0]["criterion"] = "a < b & c"

    edit_json(run_copy / "eval.json", change)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert evil not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "<b>bold</b>" not in html  # escaped for HTML and for plotly's label markup
    assert "a &lt; b &amp; c" in html
    assert html.count("<script") == html.count("</script>")  # no script closed early by run text


def test_handcrafted_size_and_stream_table(run_copy, tmp_path):
    """The format the blog asks the evaluator for: handcrafted.model_size(n) + the stream map."""
    import handcrafted
    size = handcrafted.model_size(8)
    sections = handcrafted.stream_basis(8).sections
    edit_json(run_copy / "eval.json", lambda d: d["models"]["handcrafted"].update(
        info=[{**size, "stream": [list(section) for section in sections]}]))  # the [name, width] form
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert f"{size['layers']} layers of\n{size['heads_per_layer']} attention head(s)" in html
    assert f"{size['parameters']:,} parameters" in html
    start = 0
    for name, width in sections:
        assert f"<tr><td>{name}</td><td>{start}..{start + width - 1}</td><td>{width}</td></tr>" in html
        start += width
    assert start == size["width"]


def test_phase_changes_are_tabled_and_marked(run_copy, tmp_path):
    change = {"stage": "pretrain", "label": "2", "step": 35, "examples": 2240, "loss_before": 6.5,
              "loss_after": 0.0625, "plateau_steps": 20, "fall_steps": 4, "reference": 5.5, "source": "heldout"}
    edit_json(run_copy / "phases.json", lambda d: d["phase_changes"].append(change))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert "1 phase change in pre-training" in html
    assert ("<tr><td>seed 0</td><td>pretrain</td><td>d = 2</td><td>35</td><td>2,240</td><td>5.5</td><td>6.5</td>"
            "<td>0.0625</td><td>4</td></tr>") in html
    assert re.search(r'"name":\s*"phase change"', html)
    assert "at most 0.3% of curves" in html  # the detector's pinned null rate, from phases.json


def test_the_page_leads_with_the_findings_and_lists_every_departure(run_copy, tmp_path):
    from graphpath_common.study import departures
    from graphpath_common.toml import read_toml

    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.index("What generalized, and what did not") < html.index(">Reproduction<")
    doc = json.loads((run_copy / "eval.json").read_text())
    for finding in doc["findings"]:
        assert f"<td>{escape(finding['finding'])}</td>" in html and f"<td>{escape(finding['status'])}</td>" in html
    perturb = json.loads((run_copy / "perturb.json").read_text())["settings"]
    parameters = sum(int(np.prod(v.shape)) for v in load_file(run_copy / "checkpoints" / "finetune-final.safetensors").values())
    rows = departures(read_toml(run_copy / "config.toml", ValueError), parameters=parameters, perturb=perturb)
    section = html[html.index("This run and the study"):html.index("A transformer built by hand")]
    differing = [r for r in rows if r["differs"]]
    assert differing and f"{len(differing)} of the {len(rows)} settings" in section
    for r in differing:  # every setting that differs from the study is on the page, as this run has it
        cells = "".join(f"<td>{escape(v)}</td>" for v in (r["what"], r["study"], r["run"], "differs"))
        assert cells in section, r["field"]
    assert "This is one seed" in html and "1 seed, " in html


def test_perturbation_section_counts_every_model(run_copy, tmp_path):
    def change(doc):
        doc["runs"][0].update(recovered=True)
        doc["runs"][1]["curve"][1][1] = None  # a diverged loss is written as null
        doc["runs"][1]["loss_after"] = None
        doc["recovery"]["0.3"] = {"recovered": 1, "runs": 2, "rate": 0.5, "ci95": [0.0945, 0.9055]}

    edit_json(run_copy / "perturb-handcrafted.json", change)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    learned = json.loads((run_copy / "perturb.json").read_text())
    for sigma, row in learned["recovery"].items():
        done = sum(r["recovered"] for r in learned["runs"] if repr(r["sigma"]) == sigma)
        assert row["recovered"] == done and f"σ = {blog.values.fmt(float(sigma))}: {done} of {row['runs']}" in html
    assert "the hand-built (n = 8) model (held-out loss" in html
    assert "σ = 0.3: 1 of 2 (95% Wilson 0.0945–0.9055)" in html and "basin radius is" not in html
    assert "This is not the study" in html and "Following the study" not in html
    hand = json.loads((run_copy / "perturb-handcrafted.json").read_text())
    assert 'id="perturb"' in html and 'id="perturb-sigma"' in html
    size = hand["target"]["size"]
    assert f"{size['layers']} layers of" in html and f"{size['parameters']:,} parameters" in html


def test_optional_sections_say_not_run(run_copy, tmp_path):
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 2  # no interpret.json, no basin.json
    for path in run_copy.glob("perturb*.json"):
        path.unlink()
    edit_json(run_copy / "eval.json", lambda d: (d["models"].pop("handcrafted"), d.pop("grid")))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 5 and 'id="grid"' not in html
    assert 'id="perturb"' not in html and "hand-built model was not scored" in html


@pytest.mark.slow
def test_inside_section_renders_from_interpret_llc_and_basin(run_copy, tmp_path):
    import torch
    from data_gen.spec import study_sizes_up_to
    from graphpath.analysis import interpret as I
    from graphpath.core.checkpoint import save_checkpoint
    from graphpath.core.model import ModelConfig, build_model

    config = ModelConfig(max_vertices=5, d_model=16, n_layers=2, n_heads=2)
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "small" / "checkpoints", "pretrain-final", build_model(config),
                    {"model_config": config.to_dict(), "data": study_sizes_up_to(5), "step": 0, "seed": 0,
                     "stage": "pretrain"})
    assert I.main([str(tmp_path / "small"), "--size", "128", "--no-figures", "--out", str(run_copy / "interpret.json")]) == 0
    end = lambda sigma, k: {"sigma": sigma, "recovered": k, "runs": 10, "ci95": [0.1, 0.9], "by_seed": {}}  # noqa: E731
    group = {"models": [{"key": "pretrain/seed-0", "loss_before": 0.02}], "refused": [], "lo": end(0.1, 9),
             "hi": end(0.2, 2), "closed": False, "censored": None, "censored_note": None, "resolved": True,
             "trials": [{}, {}]}
    hand = {**group, "lo": end(0.001, 10), "hi": None, "censored": "above", "censored_note": "every sigma up to 0.001 held",
            "models": [{"key": "handcrafted", "loss_before": 0.0}]}
    basin = {"settings": {"kind": "all", "seeds": [0, 1], "steps": 30, "lr": 1e-3},
             "threshold_rule": "recovered once its held-out MSE is at or below max(threshold, 2 x before)",
             "groups": {"pretrain": group, "handcrafted": hand}}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    row = {"eps": 1e-4, "gamma": 100.0, "localised_truth": 20.0, "passes": True,
           "models": {"regular": {"llc": 30.0, "truth": 32.5}, "degenerate": {"llc": 31.0, "truth": 32.5}}}
    llc = {"production": {"batch_size": 64, "chains": 4, "steps": 200, "burn_in": 100}, "data_size": 2048,
           "calibration": {"rows": [row], "chosen": {"eps": 1e-4, "gamma": 100.0}, "features_of": "pretrain/seed-0"},
           "groups": {"pretrain": {"models": 2, "passed": 2, "mean": 12.5, "ci95": [10.0, 15.0], "n": 2}},
           "models": [{"key": "pretrain/seed-0", "estimate": {"ok": True}}]}
    (run_copy / "llc.json").write_text(json.dumps(llc))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 0 and "probes-plot" in html
    assert "12.5 (95% interval over seeds 10–15)" in html and "σ in [0.1, 0.2]: 9 of 10 runs recovered" in html
    assert "censored" not in html.split("learned, pre-trained")[1][:200] and "every sigma up to 0.001 held" in html
    assert "<td>learned, pre-trained</td><td>σ in [0.1, 0.2]" in html and "within k hops" in html
    probes = json.loads((run_copy / "interpret.json").read_text())["groups"]["pretrain"]
    assert f"AUROC {blog.values.fmt(probes['target']['auroc'][-1]['mean'])}" in html
    assert "off-path comparison was not measured" in html  # a pre-trained model only: no off-path verdict
    assert "hops-heatmap-plot" in html and "k = 1: never" in html  # one seed: no interval, so never
    assert "Hewitt and Liang" in html and "no control task and no selectivity there" in html  # pre-training: t = 2 only
    assert "selective at the edge tokens by &gt; 0.1" in html and "are weak" in html and "<th>statistics baseline</th>" in html
    curve = probes["capacity"]  # a 16-wide stream: ranks 1, 2, 4, 8 and the full width
    assert curve["ranks"] == [1, 2, 4, 8, 16] and "capacity-plot" in html and "r = 1, 2, 4, 8, 16" in html
    assert f"selectivity {blog.values.fmt(curve['edges']['selectivity'][0]['mean'])} at r = 1" in html
    assert "selective by &gt; 0.1 at some rank (exploratory, its own correction): the target token not testable: one " \
        "type" in html
    assert "EXPLORATORY: this rank axis was chosen after the full-width selectivity test failed" in html
    assert "The confirmation, which is the finding" in html and "draw 1 of the sample-inspect split" in html
    doc = json.loads((run_copy / "interpret.json").read_text())
    assert curve["status"] == "exploratory" and set(doc["findings"]["p_values"]) >= {"pretrain/capacity_edges"}
    assert html.count("label permutation") >= 2  # the permuted curve in the capacity figure too
    assert "a test against chance there" in html and "cross-validated by graph" in html
    old = {**json.loads((run_copy / "interpret.json").read_text()), "schema": 3}
    (run_copy / "interpret.json").write_text(json.dumps(old))
    stale = blog.render(run_copy, tmp_path / "old").read_text()
    assert "schema 3 predates the control task" in stale and "probes-plot" not in stale
    assert "schema 3 predates the probe-capacity curve" in stale and "capacity-plot" not in stale
    (run_copy / "interpret.json").write_text(json.dumps({**old, "schema": 4}))
    heads = [(hook, i, c["mean"]) for hook, cells in probes["attention"].items() for i, c in enumerate(cells)]
    hook, i, top = max(heads, key=lambda h: h[2])
    assert f"largest for head {i} of block {hook.split('.')[1]}: {blog.values.fmt(top)}" in html
    # a failed calibration reports no LLC and says why; a search that did not finish says so
    mixing = {"d": 65, "nbeta": 268.6, "hessian_min": 2e-7, "hessian_max": 104.0, "condition": 5.2e8,
              "by_gamma": [{"gamma": 10.0, "localised_truth": 13.9, "eps_stable": 1.43e-4, "relax_steps": 2806.0}]}
    llc["calibration"].update(chosen=None, rows=[{**row, "passes": False}], mixing=mixing)
    llc["groups"], llc["models"] = {}, []
    (run_copy / "llc.json").write_text(json.dumps(llc))
    basin["groups"]["pretrain"] = {**group, "complete": False, "lo": None, "hi": None,
                                   "trials": [{"sigma": 0.1, "recovered": 3, "runs": 4}]}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    html = blog.render(run_copy, tmp_path / "out2").read_text()
    assert "no model&#x27;s LLC is reported" in html and "regular 30" in html and "<td>calibration failed</td>" in html
    assert "the search did not finish; measured so far σ 0.1: 3 of 4" in html
    assert "at γ 10 a perfectly mixed chain reads 13.9, the largest stable ε is 0.000143" in html
    assert "2806 steps to relax" in html and "(d / 2 = 32.5" in html


def test_unfinished_finetuning_is_a_note(run_copy, tmp_path):
    edit_json(run_copy / "phases.json", lambda d: d.update(finetune=None))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert "no finished fine-tuning stage" in html and 'id="finetune"' not in html


def test_missing_values_are_all_listed(run_copy, tmp_path, capsys):
    edit_json(run_copy / "eval.json", lambda d: (d.pop("reproduction"), d["grid"].pop("mse"), d.pop("findings")))
    (run_copy / "checkpoints" / "finetune-final.safetensors").unlink()
    out = tmp_path / "out"
    assert main([str(run_copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("python -m blog: ")
    for key in ("table_reproduction", "findings_lead", "fig_grid", "model_parameters", "model_summary"):
        assert key in err
    assert not (out / "index.html").exists()  # no half page


@pytest.mark.parametrize("damage, expected", [
    (lambda run: shutil.rmtree(run), "does not exist"),
    (lambda run: (run / "eval.json").unlink(), "missing eval.json"),
    (lambda run: (run / "phases.json").write_text("{not json"), "phases.json is not valid JSON"),
    (lambda run: (run / "metrics.jsonl").write_text(""), "holds no metrics"),
    (lambda run: (run / "config.toml").write_text("[data\n"), "config.toml is not valid TOML"),
])
def test_bad_run_directory_is_one_line_exit_2(run_copy, tmp_path, capsys, damage, expected):
    damage(run_copy)
    assert main([str(run_copy), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_unwritable_output_is_one_line_exit_2(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert main([str(FIXTURE), "--out", str(blocker / "page")]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {blocker / 'page'}: {blocker} is a file" in err and err.count("\n") == 1


def test_cli_prints_the_page_path_and_defaults_into_the_run(run_copy, capsys):
    assert main([str(run_copy)]) == 0
    assert capsys.readouterr().out.strip() == str(run_copy / "blog" / "index.html")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0


def test_unknown_placeholder_in_post_is_reported(tmp_path, capsys):
    post = tmp_path / "post.md"
    post.write_text("# T\n\n{{run_name}} {{no_such_value}} {{fig_nothing}}\n")
    assert main([str(FIXTURE), "--out", str(tmp_path / "out"), "--post", str(post)]) == 2
    err = capsys.readouterr().err
    assert "no_such_value" in err and "fig_nothing" in err and "run_name" not in err.split(":", 2)[2]


def test_sections_and_placeholders():
    source = "a\n<!-- if x -->\nb {{k1}}\n<!-- else -->\nc {{k2}}\n<!-- endif -->\nd\n"
    assert select_sections(source, {"x": True}) == "a\nb {{k1}}\nd\n"
    assert select_sections(source, {"x": False}) == "a\nc {{k2}}\nd\n"
    nested = "<!-- if x -->\n<!-- if y -->\nxy\n<!-- else -->\nx-only\n<!-- endif -->\n<!-- else -->\nnone\n<!-- endif -->\n"
    assert select_sections(nested, {"x": True, "y": True}) == "xy\n"
    assert select_sections(nested, {"x": True, "y": False}) == "x-only\n"
    assert select_sections(nested, {"x": False, "y": True}) == "none\n"
    assert placeholders("{{a}} {{ b }} {{a}}") == ["a", "b"]
    with pytest.raises(TemplateError, match="unknown condition"):
        select_sections("<!-- if y -->\n<!-- endif -->\n", {"x": True})
    with pytest.raises(TemplateError, match="never closed"):
        select_sections("<!-- if x -->\n", {"x": True})


def test_markdown_math_and_values():
    body = to_html("Text $a_1 + b^2$ and **{{v}}**.\n\n$$\\frac{1}{B}$$\n\n{{block}}\n",
                   {"v": Text("<x> & y"), "block": Html('<table class="data"></table>')})
    assert "<strong>&lt;x&gt; &amp; y</strong>" in body
    assert 'display="block"' in body and "<mfrac>" in body and body.count("<math") == 2
    assert "<msub>" in body and "a_1" not in body  # markdown never saw the LaTeX underscore
    assert '<table class="data"></table>' in body and "<p><table" not in body
    with pytest.raises(TemplateError, match="inside math"):
        to_html("$x = {{v}}$", {"v": Text("1")})


def test_fmt():
    assert fmt(0.001623) == "0.001623" and fmt(61.44) == "61.44" and fmt(72.871) == "72.87"
    assert fmt(3.14e8) == "3.140 × 10⁸" and fmt(2e-8) == "2.000 × 10⁻⁸"


def _plot_data(html: str, fig_id: str) -> list[dict]:
    start = html.index(f'Plotly.newPlot("{fig_id}-plot", ') + len(f'Plotly.newPlot("{fig_id}-plot", ')
    return json.JSONDecoder().raw_decode(html[start:])[0]


def test_raw_outputs_and_line_probe_come_from_eval_json(run_copy, tmp_path):
    doc = json.loads((run_copy / "eval.json").read_text())
    probe = doc["line_probe"]
    html = blog.render(run_copy, tmp_path / "out").read_text()
    lines = {trace["name"]: trace for trace in _plot_data(html, "line-probe")}
    assert lines["true length (y = x)"]["y"] == probe["lengths"]
    assert lines["hand-built"]["y"] == pytest.approx(probe["lengths"], abs=1e-4)  # exact on every path
    assert lines["fine-tuned"]["y"] == probe["models"]["learned"]["answers"]
    assert "the hand-built model answers 7 and rounds to the right length on 7 of 7" in html
    heatmaps = _plot_data(html, "raw-outputs")
    assert len(heatmaps) == len(doc["sets"]) + len(doc["models"]["learned-pretrain"]["results"])
    first = doc["sets"][next(iter(doc["sets"]))]["raw_histogram"]
    column = [row[0] for row in heatmaps[0]["z"]]  # label 1's column, log10 of its fractions
    assert [10 ** z if z is not None else 0 for z in column] == pytest.approx(first["fraction"][0], abs=1e-9)


def test_the_pretrain_bar_is_the_pretraining_checkpoint(run_copy, tmp_path):
    edit_json(run_copy / "eval.json", lambda d: d["models"]["learned-pretrain"]["results"]["pretrain"].update(mse=0.0042))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    bars = {trace["name"]: trace for trace in _plot_data(html, "sets")}
    pre = bars["learned, pre-training checkpoint"]
    assert pre["y"][pre["x"].index("pretrain")] == 0.0042 and pre["text"][pre["x"].index("pretrain")] == "0.0042"
    assert bars["learned, final (this run)"]["y"][0] != 0.0042


def test_without_raw_histograms_or_probe_the_page_still_renders(run_copy, tmp_path):
    def strip(doc):
        doc.pop("line_probe")
        for model in doc["models"].values():
            for block in model["results"].values():
                block.pop("raw_histogram")
        for block in doc["sets"].values():
            block.pop("raw_histogram")
    edit_json(run_copy / "eval.json", strip)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert 'id="raw-outputs"' not in html and 'id="line-probe"' not in html and "{{" not in html


def test_the_footer_says_how_the_run_was_made(run_copy, tmp_path):
    from graphpath_common import provenance

    recorded = json.loads((run_copy / "provenance.json").read_text())["invocations"][0]
    html = blog.render(run_copy, tmp_path / "fixture").read_text()  # the fixture: trained, then scored
    assert "python -m graphpath.train --out runs/fixture" in html and recorded["started_utc"] in html
    assert "scored by <code>" in html and "made before provenance" not in html
    (run_copy / "provenance.json").unlink()  # a run made before provenance was recorded
    edit_json(run_copy / "eval.json", lambda d: d.pop("provenance"))
    html = blog.render(run_copy, tmp_path / "old").read_text()
    assert "How this run was made" in html and "made before provenance was recorded" in html
    with provenance.recorded(run_copy, ["python -m graphpath.train", "--out", "<runs/x>"], device="cpu", threads=1):
        pass
    scored = provenance.finish(provenance.entry(["python -m graphpath.evaluate", "RUN"], "cpu", 1), "finished")
    edit_json(run_copy / "eval.json", lambda d: d.update(provenance={"evaluation": scored, "runs": []}))
    html = blog.render(run_copy, tmp_path / "new").read_text()
    made = json.loads((run_copy / "provenance.json").read_text())["invocations"][0]
    assert "python -m graphpath.train --out &lt;runs/x&gt;" in html  # escaped
    assert "scored by <code>python -m graphpath.evaluate RUN</code>" in html
    assert made["started_utc"] in html and "made before provenance" not in html
    if made["git"]:
        assert made["git"]["commit"][:10] in html


def _page_text(html: str) -> str:
    import html as html_module

    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", html_module.unescape(re.sub(r"<[^>]+>", " ", html)))


def test_the_page_shows_each_seeds_order_of_learning_beside_the_studys(run_copy, tmp_path):
    settle = [{"steps": {"1": 88, "2": 270, "3": 569}, "order": "shortest first"},
              {"steps": {"1": 186, "2": 186, "3": None}, "order": "never settled"}]

    def change(doc):
        order = next(f for f in doc["findings"] if f["key"] == "phase-order")
        order.update(settle=settle, threshold=0.1, status="inconclusive", p=0.31, p_adjusted=0.4)
        for phases in doc["phases"]:
            phases["settle"] = {"threshold": 0.1, "steps": {}, "not_judged": {"3": 0.14, "4": 0.39}}

    edit_json(run_copy / "eval.json", change)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert "<tr><td>run 0</td><td>88</td><td>270</td><td>569</td><td>shortest first</td></tr>" in html
    assert "<tr><td>run 1</td><td>186</td><td>186</td><td>never</td><td>never settled</td></tr>" in html
    assert "<tr><td>the study&#x27;s log</td><td>17</td><td>28</td><td>56</td><td>shortest first</td></tr>" in html
    text = _page_text(html)
    assert "1 of 2 seed(s) learned distances 1, 2, 3 in the study's order" in text
    assert "no order of learning" not in text
    assert "Distances 3, 4 sit near the mean label" in text and "excludes them by construction" in text


def test_the_page_says_when_the_thresholds_were_written_and_what_seen_means(run_copy, tmp_path):
    text = _page_text(blog.render(run_copy, tmp_path / "out").read_text())
    assert "fixed before the run" not in text and "fixed in the code before" not in text
    assert "after an earlier run on seeds 0-2 was seen; seeds 3+ are fresh" in text
    assert "union of the run's pre-training and fine-tuning streams" in text and "target token and n are ignored" in text
    assert "subgroup seen in training" in text and "Why each threshold" in text
    assert "pooled mixture of every kind of target" in text  # the (n, t) grid is not an on-path map


def test_the_page_gives_fine_tuning_its_caveats(run_copy, tmp_path):
    caveats = {"normalized_before": 1.748, "study_normalized_before": 0.684, "seen_every_seed": 1.0,
               "scratch_control": False, "text": "on the scale of a constant predictor the pre-trained model starts "
                                                 "at 1.748 (the study: 0.684), worse than a constant predictor (1)."}
    edit_json(run_copy / "eval.json", lambda d: next(f for f in d["findings"] if f["key"] == "finetune-cheap").update(
        caveats=caveats))
    text = _page_text(blog.render(run_copy, tmp_path / "out").read_text())
    assert "starts at 1.748 (the study: 0.684), worse than a constant predictor" in text
    assert "without a from-scratch control" in text and "cannot support that reading" in text
    assert "continued the pre-training Adam at learning rate" in text


def test_the_line_probe_counts_each_seed_alone(run_copy, tmp_path):
    def change(doc):
        entry = doc["line_probe"]["models"]["learned"]
        lengths = doc["line_probe"]["lengths"]
        entry["per_run"] = [list(map(float, lengths)), [x + 0.7 for x in lengths]]  # all right, then all wrong
        entry["answers"] = [x + 0.35 for x in lengths]  # the mean rounds right everywhere
        entry["rounded_exact"] = len(lengths)

    edit_json(run_copy / "eval.json", change)
    text = _page_text(blog.render(run_copy, tmp_path / "out").read_text())
    total = len(json.loads((run_copy / "eval.json").read_text())["line_probe"]["lengths"])
    assert f"rounds to the right length on {total}, 0 of {total} (per seed)" in text


def test_a_basin_search_without_a_recovery_study_fills_the_perturbation_departures(run_copy):
    """The main job perturbs only through the basin search: its protocol (every matrix, relative
    sigma, Adam at its lr and batch) departs from the study's and must show as such, not 'not run'."""
    from blog.evidence import table_rows
    from blog.rundir import load_run

    for name in ("perturb.json", "perturb-handcrafted.json"):
        (run_copy / name).unlink()
    rows = {r["field"]: r for r in table_rows(load_run(run_copy))}
    assert rows["perturb.lr"]["run"] == "not run"
    settings = {"kind": "all", "scale": "relative", "sigmas": [0.1, 0.3, 1.0], "optimizer": "adam", "lr": 0.001,
                "batch_size": 64, "steps": 30}
    (run_copy / "basin.json").write_text(json.dumps({"schema": 1, "settings": settings, "groups": {}}))
    rows = {r["field"]: r for r in table_rows(load_run(run_copy))}
    assert rows["perturb.kind"]["run"] == "all (basin search)" and rows["perturb.kind"]["differs"]
    assert rows["perturb.lr"]["run"] == "0.001" and rows["perturb.lr"]["differs"]
    assert rows["perturb.batch_size"]["run"] == "64" and not rows["perturb.optimizer"]["differs"]


def test_single_heads_are_named_only_when_their_interval_excludes_zero():
    from blog.inside import _heads_note

    heads = {"blocks.0.h0": {"mean": 0.30, "ci95": [0.01, 0.59]}, "blocks.1.h1": {"mean": 0.35, "ci95": [-0.08, 0.79]}}
    text = _heads_note(heads, "blocks.1.h1")
    assert "1 restore" in text and "blocks.0.h0" in text and "blocks.1.h1" not in text
    none = _heads_note({"blocks.1.h1": heads["blocks.1.h1"]}, "blocks.1.h1")
    assert "no single head" in none and "distinguishable from 0" in none


def test_a_calibration_grid_that_could_not_pass_says_so():
    """The known LLC is read within 25%; when even a perfectly mixed chain (the localised truth at
    each gamma) lies outside that band, the page blames the grid, not only the estimator."""
    from blog.inside import _infeasible_note

    def row(local):
        return {"localised_truth": local, "models": {"regular": {"truth": 32.5}}}

    assert "could not pass as built" in _infeasible_note({"rows": [row(20.7), row(10.2)]}, 0.25)
    assert "would pass" in _infeasible_note({"rows": [row(30.0), row(10.2)]}, 0.25)
    assert "would pass" in _infeasible_note({"rows": [row(20.7)]}, 0.4)  # a wider band takes 20.7
    assert _infeasible_note({"rows": []}, 0.25) == ""
    from blog.inside import _tolerance

    assert _tolerance({"known_tolerance": 0.3}) == 0.3
    assert _tolerance({"calibration_rule": "... lie within 25% of the known LLC; ..."}) == 0.25


def test_inside_says_the_llc_is_localised_and_shows_the_three_checks_and_the_relative_bar(run_copy):
    from blog import inside
    from blog.rundir import load_run

    check = {"llc": 31.2, "target": 32.0, "passes": True}
    own = {"llc": 10.5, "target": 11.4, "passes": False, "share_seen": 0.77, "rank_half": 32.5}
    row = {"eps": 1e-4, "gamma": 1.0, "passes": False,
           "checks": {"whitened_regular": check, "whitened_degenerate": dict(check, llc=30.7), "own_features": own}}
    llc = {"schema": 3, "estimand": "a localised LLC at gamma (not the learning coefficient itself)",
           "nbeta_rule": "n / log n", "known_tolerance": 0.1, "sampler_tolerance": 0.1,
           "production": {"batch_size": 64, "chains": 4, "steps": 400, "burn_in": 100}, "data_size": 2048,
           "calibration": {"rows": [row], "chosen": None, "features_of": "pretrain/seed-0", "nbeta": 268.6},
           "groups": {}, "models": []}
    (run_copy / "llc.json").write_text(json.dumps(llc))
    text = str(inside.llc_summary(load_run(run_copy)))
    assert "a step-truncated, localised reading" in text and "nβ = 268.6 (n / log n)" in text
    assert "(a) whitened regular read-out 31.2 (known 32)" in text and "sees 77% of its LLC 32.5" in text
    assert "the reading is 32% of that LLC" in text  # 10.5 / 32.5
    assert "validates the sampler's implementation" in text and "not the estimate's accuracy" in text
    assert "11.4" in text and "— fails" in text and "No setting passed all three checks" in text
    estimate = lambda llc, loss: {"llc": llc, "ok": True, "rhat": 1.0, "ess": 900, "mcse": 1.0,  # noqa: E731
                                  "init_loss": loss, "failed": []}
    llc["calibration"]["rows"] = [dict(row, passes=True, checks=dict(row["checks"], own_features=dict(own, passes=True)))]
    llc["calibration"]["chosen"] = {"eps": 1e-4, "gamma": 1.0, "nbeta": 268.6, "reading_share": 10.5 / 32.5}
    llc["models"] = [{"key": "pretrain/seed-0", "group": "pretrain", "estimate": estimate(400.0, 0.12)},
                     {"key": "finetune/seed-0", "group": "finetune", "estimate": estimate(80.0, 0.015)}]
    llc["groups"] = {g: {"models": 1, "passed": 1, "mean": v, "ci95": None, "n": 1}
                     for g, v in (("pretrain", 400.0), ("finetune", 80.0))}
    (run_copy / "llc.json").write_text(json.dumps(llc))
    text = str(inside.llc_summary(load_run(run_copy)))
    assert "at the chosen setting the raw read-out reads 32% of its true LLC 32.5 (rank / 2)" in text
    assert "Compare these localised LLCs with each other" not in text
    assert "measured on different data" in text and "L_n(w*) 0.12" in text and "L_n(w*) 0.015" in text
    assert "not comparable with each other" in text
    assert "older rule" not in text  # no diagnostic_rule in this file: nothing to compare with
    llc["diagnostic_rule"] = "split R-hat <= 1.1, bulk ESS >= 40"
    llc["models"][1]["estimate"]["ess"] = 200  # passed the old rule, fails today's ESS >= 400
    (run_copy / "llc.json").write_text(json.dumps(llc))
    text = str(inside.llc_summary(load_run(run_copy)))
    assert "1 of those passing would be refused (finetune/seed-0)" in text
    basin = {"settings": {"kind": "all", "seeds": [0, 1], "steps": 30, "lr": 1e-3}, "recovery_factor": 2.0,
             "recovery_floor": 1e-4, "recovery_rule": "relative",
             "groups": {"finetune": {"models": [{"key": "finetune/seed-0", "loss_before": 0.02, "threshold": 0.04}],
                                     "refused": [], "trials": [],
                                     "control": {"recovered": 1, "runs": 6, "within_at_start": 6}}}}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    text = str(inside.basin_summary(load_run(run_copy)))
    assert "after the retraining the held-out MSE is within 2× the model's own unperturbed" in text and "finetune/seed-0 0.04 (own 0.02)" in text
    assert "ends within the bar in 1 of 6 runs" in text and "measures the retraining protocol" in text


def test_basin_schema_4_shows_each_group_s_calibrated_lr_its_controls_and_a_group_with_no_radius(run_copy):
    """basin.json schema 4: the retraining lr is calibrated per group on the unperturbed control; the
    page says which lr each group used, every control tried, and that a group no lr passes has no radius."""
    from blog import inside
    from blog.evidence import table_rows
    from blog.rundir import load_run

    control = lambda lr, k: {"sigma": None, "lr": lr, "recovered": k, "runs": 6, "within_at_start": 6}  # noqa: E731
    end = lambda sigma, k: {"sigma": sigma, "recovered": k, "runs": 6, "ci95": [0.6, 1.0], "by_seed": {}}  # noqa: E731
    grid = [1e-3, 3e-4, 1e-4, 3e-5, 1e-5]
    pre = {"models": [{"key": "pretrain/seed-0", "loss_before": 0.15, "threshold": 0.3}], "refused": [],
           "retraining_lr": {"lr": 1e-4, "source": "calibrated", "grid": grid, "rule": "r",
                             "controls": [control(1e-3, 2), control(3e-4, 5), control(1e-4, 6)]},
           "control": control(1e-4, 6), "lo": end(0.05, 6), "hi": end(0.07, 1), "closed": True, "censored": None,
           "censored_note": None, "resolved": True, "trials": [{}, {}], "complete": True}
    fine = {"models": [{"key": "finetune/seed-0", "loss_before": 0.02, "threshold": 0.04}], "refused": [],
            "retraining_lr": {"lr": None, "source": "calibrated", "grid": grid, "rule": "r",
                              "controls": [control(lr, 3) for lr in grid]},
            "control": control(1e-5, 3), "no_radius": "no retraining budget keeps the unperturbed model in its basin",
            "lo": None, "hi": None, "closed": False, "censored": None, "censored_note": None, "resolved": False,
            "trials": [], "complete": True}
    basin = {"schema": 4, "settings": {"kind": "all", "seeds": [0, 1], "steps": 30, "lr": None, "optimizer": "adam"},
             "recovery_factor": 2.0, "recovery_floor": 1e-4, "recovery_rule": "relative", "lr_rule": "r",
             "lr_grid": grid, "groups": {"pretrain": pre, "finetune": fine}}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    run = load_run(run_copy)
    text = str(inside.basin_summary(run))
    assert "Adam steps at each group's calibrated lr on" in text and "lr is the largest of 0.001, 0.0003, 0.0001" in text
    assert "not selected on the perturbed data" in text
    assert ("retrained at lr 0.0001, calibrated: unperturbed control within the bar 2 of 6 at lr 0.001, 5 of 6 at lr "
            "0.0003, 6 of 6 at lr 0.0001") in text
    assert "no radius: no retraining budget keeps the unperturbed model in its basin" in text
    html = str(inside.table_basin_llc(run))
    assert "retraining lr" in html and "<td>0.0001</td>" in html and "none on the grid passes" in html
    for name in ("perturb.json", "perturb-handcrafted.json"):
        (run_copy / name).unlink()
    rows = {r["field"]: r for r in table_rows(load_run(run_copy))}
    assert rows["perturb.lr"]["run"].startswith("calibrated per group (pretrain 0.0001, finetune —)")
    basin["settings"]["lr"], basin["lr_rule"] = 3e-4, "given"
    pre["retraining_lr"] = {"lr": 3e-4, "source": "given", "grid": [3e-4], "rule": "given",
                            "controls": [control(3e-4, 2)]}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    text = str(inside.basin_summary(load_run(run_copy)))
    assert "at lr 0.0003 (given, not calibrated)" in text and "retrained at lr 0.0003, given, not calibrated" in text
    assert "measures the retraining protocol" in text  # a given lr whose control misses the bar is still flagged


def test_offpath_page_says_whether_the_reach_aurocs_are_matched(run_copy):
    """Only an interpret.json with `reach_matched` has its reach AUROCs on the MSE's matched (n, d) mix."""
    from blog import inside
    from blog.rundir import load_run

    cell = {"mean": 0.9, "ci95": [0.85, 0.95], "n": 3}
    off = {"mse_ratio": {"value": 40.0, "ci95": [30.0, 50.0]}, "mse_ratio_unmatched": {"value": 60.0},
           "matching": {"on_kept": 500, "on_count": 512, "off_kept": 480, "off_count": 512, "cells": 20},
           "reach_on": cell, "reach_off": dict(cell, mean=0.8), "distance_r2_off": dict(cell, mean=0.3),
           "thresholds": {"fail_ratio": 2.0, "readout_r2": 0.8, "reach_margin": 0.05, "alpha": 0.05},
           "holds": {"fails": True}, "verdict": "reach-missing"}
    for matched, words in ((False, "unmatched on n and distance"), (True, "matched on n and distance")):
        off["reach_matched"] = matched
        (run_copy / "interpret.json").write_text(json.dumps({"groups": {"finetune": {"offpath": off}}}))
        text = str(inside.offpath_summary(load_run(run_copy)))
        assert text.endswith(f"less linearly readable at the read-out input on off-path targets ({words})"), text
        assert ("over the same k" in text) == matched


def test_a_failing_calibration_check_says_why_on_the_page():
    """A reading near its known LLC still fails when its chains fail their diagnostics: the page
    names the diagnostics, not just "fails" beside a number that looks right."""
    from blog.inside import _why_failed

    assert _why_failed({"passes": True, "llc": 32.1, "near_truth": True}) == ""
    near = {"passes": False, "llc": 32.9, "near_truth": True, "failed": ["R-hat 1.0601 > 1.01", "ESS 46.2 < 400"]}
    assert _why_failed(near) == " — fails (R-hat 1.0601 > 1.01; ESS 46.2 < 400)"
    off = {"passes": False, "llc": 20.0, "near_truth": False, "failed": []}
    assert _why_failed(off) == " — fails (off its target)"


def test_capacity_reading_states_what_was_measured_and_no_cause():
    from blog.capacity import _reading

    def cell(mean, lo, hi):
        return {"mean": mean, "ci95": [lo, hi]}

    cap = {"ranks": [1, 64],
           "edges": {"selectivity": [cell(-0.042, -0.074, -0.011), cell(-0.01, -0.02, 0.005)],
                     "auroc": [cell(0.628, 0.57, 0.69), cell(0.98, 0.97, 0.99)],
                     "permuted": [cell(0.685, 0.58, 0.78), cell(0.84, 0.83, 0.85)]},
           "target": {"selectivity": [{"mean": None}, {"mean": None}]}}
    text = _reading({"finetune": cap})
    assert "the edge tokens of the learned, fine-tuned models selectivity lies wholly below 0 at r = 1: -0.042" in text
    assert "r = 64" not in text.split("label-permutation")[0]  # -0.01's interval includes 0: not listed
    assert "r = 1: 0.685" in text and "against the task's 0.628" in text and "ceiling" not in text
    flat = {**cap, "edges": {**cap["edges"], "selectivity": [cell(0.2, 0.1, 0.3)] * 2,
                             "permuted": [cell(0.5, 0.4, 0.6)] * 2}}
    assert _reading({"pretrain": flat}) == ""  # nothing below 0, no baseline above the task: nothing claimed


def test_probe_verdicts_read_the_page_wide_family_when_there_is_one():
    from blog.inside import _verdict

    found = {"p_adjusted": {"beats_stats": 0.01}, "holds": {"beats_stats": True}, "untestable": {}}
    family = {"p_adjusted": {"finetune/beats_stats": 0.07}, "holds": {"finetune/beats_stats": False}}
    assert _verdict(found, "beats_stats", "beats", family, "finetune") == "beats not shown (BH p 0.07)"
    assert _verdict(found, "beats_stats", "beats") == "beats holds (BH p 0.01)"  # schema 5: the group's own BH
