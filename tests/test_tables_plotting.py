"""hf_sparse.tables (the one table renderer) and hf_sparse.plotting (the one plotting module): hand-written expected
tables, the drawn data read back from the figures, and the claim that nothing else sets matplotlib up."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hf_sparse.tables import Markdown, fmt, markdown_table, text_table

PACKAGE = Path(__file__).resolve().parents[1] / "hf_sparse"


# ----------------------------------------------------------------------------------------------- tables
def test_cells_are_formatted_by_hand_rules():
    assert [fmt(None), fmt(math.nan), fmt(math.inf), fmt(True), fmt(False)] == ["–", "–", "–", "yes", "no"]
    assert fmt(0.12345) == "0.123" and fmt(2.0, 1) == "2.0" and fmt(7) == "7"
    assert fmt({"a": 0.5, "b": None}) == "a: 0.500, b: –" and fmt([1, 0.25]) == "1, 0.250"


def test_text_table_pads_columns_to_the_widest_cell():
    got = text_table(["metric", "before", "after"], [["accuracy", 0.5, 0.75], ["loss", None, 1]])
    expected = ("metric    before  after\n"
                "--------  ------  -----\n"
                "accuracy  0.500   0.750\n"
                "loss      –       1")
    assert got == expected


def test_markdown_table_escapes_untrusted_cells_but_keeps_markdown_ones():
    hostile = "<b>x</b> | *y*"
    got = markdown_table(["text", "examples", "n"], [[hostile, Markdown("“a”<br>“b”"), 3]],
                         align=["left", "left", "right"])
    assert got.splitlines() == [
        "| text | examples | n |",
        "| --- | --- | ---: |",
        "| &lt;b&gt;x&lt;/b&gt; \\| \\*y\\* | “a”<br>“b” | 3 |",
    ]
    assert markdown_table(["a"], [["shit happens"]], redact=True) != markdown_table(["a"], [["shit happens"]])


def test_table_errors_say_what_to_fix():
    with pytest.raises(ValueError, match=r"table row 1 has 1 cells but there are 2 headers \(\['a', 'b'\]\): "
                                         r"give one cell per column"):
        text_table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match=r"table row 0 has 3 cells but there are 2 headers"):
        markdown_table(["a", "b"], [[1, 2, 3]])
    with pytest.raises(ValueError,
                       match=r"align must give one of \['center', 'left', 'right'\] per column \(2 columns\)"):
        markdown_table(["a", "b"], [[1, 2]], align=["right"])


# ----------------------------------------------------------------------------------------------- plotting
def _lines(ax) -> dict:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in ax.get_lines()}


def test_path_plot_draws_the_given_numbers():
    from hf_sparse import plotting

    lams = [1.0, 0.3, 0.1, 0.03]
    fig = plotting.plot_path(lams, train_accuracy=[0.5, 0.7, 0.9, 0.95], val_accuracy=[0.5, 0.68, 0.85, None],
                             features_mean=[0, 1.5, 3, 6], features_min=[0, 1, 2, 5], features_max=[0, 2, 4, 7],
                             selected_lambda=0.1, dense_accuracy=0.9, title="path")
    top, bottom = fig.axes
    drawn = _lines(top)
    assert drawn["train accuracy"] == (lams, [0.5, 0.7, 0.9, 0.95])
    assert "validation accuracy" not in drawn            # a metric missing at one point is left out, not faked
    dense = [line for line in top.get_lines() if "dense head (90.0%)" in line.get_label()]
    assert len(dense) == 1 and list(dense[0].get_ydata()) == [0.9, 0.9]
    assert _lines(bottom)["mean over classes"] == (lams, [0, 1.5, 3, 6])
    band = bottom.collections[0].get_paths()[0].vertices   # the min-to-max band spans exactly the given values
    assert band[:, 1].min() == 0 and band[:, 1].max() == 7
    for ax in (top, bottom):
        assert ax.get_xscale() == "log" and ax.xaxis_inverted()
        assert any(list(line.get_xdata()) == [0.1, 0.1] for line in ax.get_lines())   # the selected lambda
    assert top.get_ylabel() == "accuracy" and bottom.get_ylabel() == "features per class"
    plotting.close([fig])
    with pytest.raises(ValueError, match="one lambda per point and features_mean of the same length; got 2 lambdas "
                                         "and 3 features_mean values"):
        plotting.plot_path([1.0, 0.1], features_mean=[1, 2, 3])


def test_card_path_picture_is_the_same_function_on_the_config_summary():
    from hf_sparse import plotting
    from hf_sparse.card.plots import plot_path_summary

    rows = [{"lambda": 0.5, "val_accuracy": 0.6, "train_accuracy": 0.62, "features_per_class": 1.0,
             "max_features_per_class": 1},
            {"lambda": 0.05, "val_accuracy": 0.8, "train_accuracy": 0.85, "features_per_class": 4.5,
             "max_features_per_class": 6}]
    config = SimpleNamespace(path_summary=rows, dense_metrics={"accuracy": 0.82}, selection={"lam": 0.05},
                             selected_lambda=0.04)
    fig = plot_path_summary(config)
    top, bottom = fig.axes
    assert _lines(top)["validation accuracy (sparse head)"] == ([0.5, 0.05], [0.6, 0.8])
    assert _lines(bottom)["max over classes"] == ([0.5, 0.05], [1, 6])
    assert any(list(line.get_xdata()) == [0.05, 0.05] for line in bottom.get_lines())  # selection's lam, not 0.04
    plotting.close([fig])
    with pytest.raises(ValueError, match="this model has no path summary"):
        plot_path_summary(SimpleNamespace(path_summary=[]))


def test_save_writes_the_file_and_closes_the_figure(tmp_path):
    from hf_sparse import plotting

    fig, ax = plotting.figure(300, 200)
    ax.plot([0, 1], [0, 1])
    assert plotting.save(fig, tmp_path / "new", "line.png") == "line.png"
    assert (tmp_path / "new" / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plotting.pyplot().fignum_exists(fig.number)
    assert fig.get_size_inches() == pytest.approx([3.0, 2.0])


def test_grouped_bars_put_the_first_label_on_top():
    from hf_sparse import plotting

    fig, ax = plotting.figure()
    plotting.grouped_barh(ax, ["a", "b", "c"], [("one", [1.0, None, 3.0], {}), ("two", [4.0, 5.0, 6.0], {})])
    bars = ax.patches
    widths = [b.get_width() for b in bars]
    assert widths == [1.0, 0.0, 3.0, 4.0, 5.0, 6.0]                  # None drawn as 0
    centers = [b.get_y() + b.get_height() / 2 for b in bars]
    assert centers[0] > centers[1] > centers[2]                       # "a" above "b" above "c"
    assert np.allclose([centers[0] - centers[3]], [0.4])              # two bars of 0.4 per group
    ticks = dict(zip(ax.get_yticks().tolist(), [t.get_text() for t in ax.get_yticklabels()]))
    assert ticks == {2.0: "a", 1.0: "b", 0.0: "c"}
    plotting.close([fig])


def test_matplotlib_is_set_up_only_in_the_plotting_module():
    """One home for the backend: no other module imports pyplot or chooses a backend."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "plotting.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "use" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "matplotlib":
                names = ["matplotlib.use"]
            if any(n == "matplotlib.pyplot" or n == "matplotlib.use" for n in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == [], offenders
