"""The blog renderer on the fixture run directory: content, offline assets, escaping, bad input."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file

import blog
from blog.__main__ import main
from blog.markup import TemplateError, placeholders, select_sections, to_html
from blog.html import Html, Text
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
    edit_json(run_copy / "phases.json", lambda d: d["finetune"].update(loss_before=0.7777, loss_after=0.03125))
    edit_json(run_copy / "eval.json", lambda d: d["reproduction"][0].update(study_mse=123.25))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert "scores 0.7777 on this task" in html and "it scores 0.03125" in html
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
        doc["findings"][0]["evidence"] = "a < b & c"

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
              "loss_after": 0.0625, "plateau_steps": 20}
    edit_json(run_copy / "phases.json", lambda d: d["phase_changes"].append(change))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert "found 1 phase change in pre-training" in html
    assert "<tr><td>pretrain</td><td>d = 2</td><td>35</td><td>2,240</td><td>20</td><td>6.5</td><td>0.0625</td></tr>" in html
    assert re.search(r'"name":\s*"phase change"', html)


def test_perturbation_section_counts_every_model(run_copy, tmp_path):
    def change(doc):
        doc["runs"][0].update(recovered=True)
        doc["runs"][1]["curve"][1][1] = None  # a diverged loss is written as null
        doc["runs"][1]["loss_after"] = None
        doc["basin_radius"] = 0.125

    edit_json(run_copy / "perturb-handcrafted.json", change)
    html = blog.render(run_copy, tmp_path / "out").read_text()
    learned = json.loads((run_copy / "perturb.json").read_text())
    done = sum(r["recovered"] for r in learned["runs"])
    assert f"in {done} of {len(learned['runs'])} runs" in html
    hand = json.loads((run_copy / "perturb-handcrafted.json").read_text())
    done = sum(r["recovered"] for r in hand["runs"])
    assert "the hand-built (n = 8) model (held-out loss" in html
    assert f"in {done} of {len(hand['runs'])} runs" in html and "basin radius is σ = 0.125" in html
    assert 'id="perturb"' in html and 'id="perturb-sigma"' in html
    size = hand["target"]["size"]
    assert f"{size['layers']} layers of" in html and f"{size['parameters']:,} parameters" in html


def test_optional_sections_say_not_run(run_copy, tmp_path):
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 1  # no interpret.json
    for path in run_copy.glob("perturb*.json"):
        path.unlink()
    edit_json(run_copy / "eval.json", lambda d: (d["models"].pop("handcrafted"), d.pop("grid")))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 4 and 'id="grid"' not in html
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
    basin = {"models": {"learned": {"lo": 0.1, "hi": 0.15, "closed": True, "trials": [{}, {}], "llc": 7.5,
                                    "target": {"stage": "pretrain"}}}}
    (run_copy / "basin.json").write_text(json.dumps(basin))
    estimate = {"llc": 12.5, "llc_std": 1.0, "below_init": 0.01, "ok": True,
                "settings": {"eps": 1e-5, "gamma": 1000.0, "chains": 4}}
    (run_copy / "llc.json").write_text(json.dumps({"models": {"pretrain": {"parameter_count": 99, "estimate": estimate}}}))
    html = blog.render(run_copy, tmp_path / "out").read_text()
    assert html.count('class="not-run"') == 0 and "probes-plot" in html
    assert "12.5" in html and "[0.1, 0.15]" in html and "within k hops" in html
    assert "<td>learned (pretrain)</td><td>[0.1, 0.15]</td><td>2</td><td>—</td><td>12.5 ± 1</td>" in html
    off = json.loads((run_copy / "interpret.json").read_text())["offpath"]
    assert f"{blog.values.fmt(off['mse_off'])} when it is not" in html
    assert "hops-heatmap-plot" in html and "k = 0: never;" in html  # k = 0 is trivial: no probe beats random init


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
    for key in ("table_reproduction", "list_findings", "fig_grid", "model_parameters", "model_summary"):
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
