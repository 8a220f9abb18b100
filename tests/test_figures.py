"""paper_figures as a reviewer reads them: one look per method everywhere, legends off the data,
accuracy axes from zero or visibly broken, plain log ticks, seeds as dots with a t interval.

Every figure module runs on a synthetic results folder (several seeds, two networks) with
``style.save`` replaced by a collector, so the checks see the drawn ``Figure`` objects.
"""

import itertools
from pathlib import Path
from unittest import mock

import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from scipy import stats

from paper_figures import __main__ as cli
from paper_figures import compare, spam, stochastic_bmr, style, svi_sparsity
from sparsebnn import priors

METHOD_MODULES = ("compare", "svi_sparsity", "stochastic_bmr", "spam")
# legend entries that are not methods (explanations of the encoding)
NOT_METHODS = {"one seed", "mean, 95 % t interval", "final (pruned)", "MAP (unpruned)"}


# ----------------------------------------------------------------------------- a synthetic results folder


def _compare(out: Path, rng) -> None:
    rows = []
    runs = [("map", None, "none"), ("gaussian-bmr", None, "bmr"), ("horseshoe", None, "bmr"), ("ss-ig", None, "indicator"),
            ("ss-gl", None, "indicator"), ("ss-ghs", 1.0, "indicator"), ("ss-ghs", "fan_in", "indicator"),
            ("laplace-opd", None, "opd-weight"), ("laplace-opd", None, "opd-node")]
    layers = {"mlp": ["dense_0", "dense_1"], "lenet": ["conv_0", "conv_1", "dense_2"]}
    (out / "compare").mkdir(parents=True)
    steps = np.arange(10, 110, 10.0)
    for net in ("mlp", "lenet"):
        for seed in (0, 1, 2):
            for method, c_reg, pruning in runs:
                tag = f"{method}_{c_reg}" if c_reg is not None else method
                summary = f"compare/{net}_{tag}_s{seed}.npz"
                acc = 0.6 if method == "horseshoe" else 0.95 + 0.01 * rng.standard_normal()
                kept = {l: float(rng.uniform(0.1, 1.0)) for l in layers[net]}
                if method == "ss-ghs":  # both c_reg runs keep the same nodes: their lines coincide
                    kept = {l: 0.3 for l in layers[net]}
                rows.append(dict(net=net, method=method, c_reg=c_reg, pruning=pruning, seed=seed, accuracy=acc,
                                 nll=0.2 + 0.05 * rng.random(), ece=0.03 * rng.random(),
                                 weight_sparsity=rng.random(), nodes_kept=np.mean(list(kept.values())),
                                 compression_ratio=float(rng.uniform(1, 40)), flops_ratio=rng.random(), summary=summary,
                                 **{f"nodes_kept/{l}": v for l, v in kept.items()}))
                if pruning == "opd-weight":
                    continue  # Laplace-OPD's two rows share one posterior summary
                arrays = {f"absmean/{l}": np.abs(rng.standard_normal(200)) for l in layers[net]}
                arrays["first_layer"] = rng.standard_normal((64, 16)) * (3.0 if method == "map" else 1.0)
                arrays["first_layer_kept"] = np.arange(16) < 10
                arrays |= {f"nodes_kept/{l}": np.float64(v) for l, v in kept.items()}
                if method.startswith("ss-"):
                    arrays["history/step"] = steps
                    arrays["history/val_accuracy"] = 0.9 + 0.05 * steps / steps[-1]
                    arrays["history/nodes_kept"] = np.linspace(1, 0.3, len(steps))
                    for l in layers[net]:
                        arrays[f"history/nodes_kept/{l}"] = np.linspace(1, 0.3, len(steps))
                np.savez(out / summary, **arrays)
    pd.DataFrame(rows).to_csv(out / "compare.csv", index=False)


def _svi_sparsity(out: Path, rng) -> None:
    rows = [dict(prior=p, net="mlp", dataset="digits", hidden="[32, 32]", seed=s,
                 accuracy=0.5 if p == "horseshoe" else 0.96 + 0.01 * rng.standard_normal(), nll=0.1 + 0.05 * rng.random(),
                 ece=0.02 * rng.random(), nodes_kept=1.0 if p == "map" else rng.uniform(0.02, 0.5))
            for s in (0, 1, 2) for p in ("map", "gaussian", "horseshoe", "ss-ig", "ss-gl", "ss-ghs")]
    pd.DataFrame(rows).to_csv(out / "svi_sparsity.csv", index=False)


def _stochastic_bmr(out: Path, rng) -> None:
    rows = []
    for net in ("mlp", "lenet"):
        for seed in (0, 1):
            for m in ("bmr", "bmr-bb", "bmr-node"):
                for r in range(3):
                    rows.append(dict(net=net, method=m, reduction="iterative", round=r, seed=seed,
                                     pruned_fraction=r / 3, accuracy=0.95 - 0.01 * r + 0.01 * rng.random(),
                                     nll=0.2, ece=0.02))
            rows.append(dict(net=net, method="flat-map", reduction="none", round=0, seed=seed, pruned_fraction=0.0,
                             accuracy=0.97, nll=0.1, ece=0.01))
            for m in ("flat-ff", "tiered-hs"):
                for red in ("none", "one-shot"):
                    rows.append(dict(net=net, method=m, reduction=red, round=0, seed=seed,
                                     pruned_fraction=0.0 if red == "none" else 0.5, accuracy=0.9 + 0.05 * rng.random(),
                                     nll=0.3, ece=0.05))
    pd.DataFrame(rows).to_csv(out / "stochastic_bmr.csv", index=False)


def _spam(out: Path, rng) -> None:
    rows = [dict(net="mlp", structure=st, criterion=c, structured=sd, sparsity=s, seed=seed,
                 dense_accuracy=0.97, accuracy=0.97 - s * rng.uniform(0.1, 0.9), log_marglik=-100.0 - i)
            for i, st in enumerate(spam.STRUCTURES) for c in spam.CRITERIA for sd in (False, True)
            for s in (0.5, 0.9) for seed in (0, 1)]
    pd.DataFrame(rows).to_csv(out / "spam.csv", index=False)


def _others(out: Path, rng) -> None:
    exact = rng.normal(0, 50, 60)
    pd.DataFrame({"kind": rng.choice(["drop_subset", "shrink", "coordinate"], 60), "exact": exact,
                  "delta_f": exact + 1e-12, "abs_err": np.full(60, 1e-12)}).to_csv(out / "bmr_exact.csv", index=False)
    rows = [dict(method="svi", prior=p, pi="theory", n=n, width=w, seed=s, dh_mean=0.3 * (n / 500) ** -0.45 * w / 50,
                 eps_n=(n / 500) ** -0.45, kept_1=3, tp_1=2, s_1=2, kept_2=2, tp_2=2, s_2=2)
            for p in ("ss-ig", "ss-gl") for n in (500, 2000, 8000) for w in (50, 100) for s in (0, 1)]
    rows += [dict(method="nuts", prior="ss-ig", pi="theory", n=500, width=50, seed=0, dh_mean=0.25, eps_n=1.0, kept_1=3,
                  tp_1=2, s_1=2, kept_2=2, tp_2=2, s_2=2)]
    pd.DataFrame(rows).to_csv(out / "contraction.csv", index=False)
    key = dict(dataset="teacher1d", widths="[1, 4, 1]", prior="ss-ig")
    x = np.linspace(-3, 3, 40)
    pd.DataFrame([dict(key, weight=f"w{i}", x=v, nuts=np.exp(-v * v / 2), svi=np.exp(-(v - 0.3) ** 2 / 2))
                  for i in range(3) for v in x]).to_csv(out / "svi_vs_nuts_marginals.csv", index=False)
    pd.DataFrame([dict(key, kind=k, layer="dense_0", node=j, svi=rng.random(), nuts=rng.random())
                  for k in ("node", "count") for j in range(4)]).to_csv(out / "svi_vs_nuts_inclusion.csv", index=False)
    pd.DataFrame([dict(key, kind=k, x=v, lo=np.sin(v) - 0.3, hi=np.sin(v) + 0.3, mean=np.sin(v))
                  for k in ("nuts", "svi") for v in x] + [dict(key, kind="data", x=v, lo=np.nan, hi=np.nan, mean=np.sin(v))
                                                         for v in x[::4]]).to_csv(out / "svi_vs_nuts_bands.csv", index=False)
    sd = rng.normal(0, 2, 13)
    pd.DataFrame([dict(key, sd_nuts_kde=v, df_nuts_gauss=v + 0.1, df_svi=v - 0.2) for v in sd]).to_csv(
        out / "svi_vs_nuts_bmr.csv", index=False)
    rows = [dict(measure=m, n_params=n, ratio=r * n**0.05, seconds=1e-3, baseline_seconds=1e-3)
            for m, r in (("svi-ss-ig", 2.0), ("bmr-weight", 1.5), ("laplace-kfac-ggn", 4.0)) for n in (1e3, 1e4, 1e5)]
    rows += [dict(measure="nuts", n_params=n, ratio=50.0, ess_per_s=10.0 / n) for n in (1e2, 1e3)]
    pd.DataFrame(rows).to_csv(out / "bench_scaling.csv", index=False)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(0)
    _compare(out, rng)
    _svi_sparsity(out, rng)
    _stochastic_bmr(out, rng)
    _spam(out, rng)
    _others(out, rng)
    return out


@pytest.fixture(scope="module")
def figures(results, tmp_path_factory) -> dict[str, tuple[str, plt.Figure]]:
    """Every figure of every module, drawn (not saved): ``{stem: (module, figure)}``."""
    drawn, module = {}, [None]

    def collect(fig, stem):
        fig.canvas.draw()  # lay out (constrained layout, legends outside) as saving would
        drawn[Path(stem).name] = (module[0], fig)
        return [Path(stem).with_suffix(".png")]

    mp = pytest.MonkeyPatch()
    mp.setattr(style, "save", collect)
    mp.setitem(plt.rcParams, "figure.max_open_warning", 0)
    try:
        out = tmp_path_factory.mktemp("figures")
        for name in cli.figure_modules():
            module[0] = name
            paths = __import__(f"paper_figures.{name}", fromlist=["make"]).make(results, out)
            assert paths, f"{name} drew nothing from the synthetic results"
    finally:
        mp.undo()
    yield drawn
    plt.close("all")


# ----------------------------------------------------------------------------- one look per method


def test_every_method_label_resolves_through_style():
    from experiments import compare as compare_exp
    from experiments import contraction, svi_vs_nuts
    from experiments import spam as spam_exp
    from experiments import stochastic_bmr as sbmr_exp
    from experiments import svi_sparsity as svi_exp
    from sparsebnn import prune

    for method in compare_exp.METHODS:
        rows = [dict(method=method, pruning=p, c_reg=c) for p in ("opd-weight", "opd-node") for c in (1.0, "fan_in")]
        assert all(compare.key(r) in style.METHODS for r in rows)
    assert set(svi_exp.METHODS) == set(svi_sparsity.KEYS)
    assert set(sbmr_exp.METHODS) == {m for m, _ in stochastic_bmr.KEYS}
    assert set(spam_exp.STRUCTURES) == set(spam.STRUCTURES) and set(prune.CRITERIA) == set(spam.CRITERIA)
    mapped = [*compare.KEYS.values(), *svi_sparsity.KEYS.values(), *stochastic_bmr.KEYS.values(),
              *spam.STRUCTURES.values(), *spam.CRITERIA.values(), *contraction.PRIORS, *svi_vs_nuts.PRIORS, "nuts"]
    assert set(mapped) <= set(style.METHODS)
    # the svi_sparsity labels say what the experiment fits
    assert svi_exp.PRIORS["ss-ghs"]["c_reg"] == "fan_in" and priors.get(**svi_exp.PRIORS["horseshoe"]).tiered
    with pytest.raises(ValueError, match="no look"):
        style.look("not-a-method")
    with pytest.raises(ValueError, match="c_reg"):
        compare.key(dict(method="ss-ghs", c_reg=2.0))


def test_no_two_methods_look_alike():
    looks = list(style.METHODS.values())
    combos = [(mcolors.to_hex(lk.color), lk.hatch, lk.marker) for lk in looks]
    assert len(set(combos)) == len(combos)
    assert len({lk.label for lk in looks}) == len(looks)
    # the two SS-GHS variants differ in every channel a line or a bar can show
    a, b = style.look("ss-ghs"), style.look("ss-ghs-fan-in")
    assert a.marker != b.marker and a.ls != b.ls and a.hatch != b.hatch


def _entries(fig):
    for leg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]:
        if leg is not None:
            yield leg, list(zip(leg.legend_handles, (t.get_text() for t in leg.get_texts())))


def _colour(h):
    """The colour of a legend handle, alpha dropped."""
    c = h.get_color() if isinstance(h, Line2D) else h.get_facecolor() if isinstance(h, Patch) else h.get_facecolor()[0]
    return mcolors.to_rgb(c)


def test_legend_entries_of_methods_use_their_look_in_every_figure(figures):
    by_label = {lk.label: lk for lk in style.METHODS.values()}
    seen = set()
    for stem, (module, fig) in figures.items():
        for _, entries in _entries(fig):
            for h, text in entries:
                if module in METHOD_MODULES:
                    assert text in by_label or text in NOT_METHODS, (stem, text)
                if text not in by_label:
                    continue
                lk = by_label[text]
                seen.add(text)
                assert mcolors.to_hex(_colour(h)) == mcolors.to_hex(lk.color), (stem, text)  # alpha aside
                if isinstance(h, Line2D) and h.get_marker() not in ("None", "", None):
                    assert h.get_marker() == lk.marker, (stem, text)
                if isinstance(h, Patch):
                    assert h.get_hatch() == lk.hatch, (stem, text)
    assert {"SS-GHS $c{=}1$", "SS-GHS $c{=}k_l{+}1$", "Gaussian+BMR", "Horseshoe+BMR", "MAP"} <= seen


def test_drawn_lines_and_points_use_the_look_of_their_method(figures):
    """compare_cdf / compare_training draw SS-GHS c = 1 and c = k_l + 1 on identical data (the
    synthetic runs coincide): the two lines still differ in style and marker, dashed above solid."""
    for stem in ("compare_cdf", "compare_training"):
        _, fig = figures[stem]
        for ax in fig.axes:
            lines = [l for l in ax.lines if l.get_linestyle() not in ("None", "") and l.get_gid() != style.BREAK_GID]
            styles = {(mcolors.to_hex(l.get_color()), l.get_linestyle(), l.get_marker()) for l in lines}
            assert len(styles) == len(lines), stem  # no two lines look alike
            pink = [l for l in lines if mcolors.same_color(l.get_color(), style.look("ss-ghs").color)]
            if len(pink) == 2:
                solid, dashed = sorted(pink, key=lambda l: l.get_linestyle() != "-")
                np.testing.assert_array_equal(solid.get_ydata(), dashed.get_ydata())
                assert dashed.get_zorder() > solid.get_zorder()


# ----------------------------------------------------------------------------- legends off the data


def _data_extents(ax, renderer):
    """Display-space points (dense along lines and segments) and boxes of what ``ax`` draws."""
    points, boxes = [], []

    def along(xy):
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) < 2:
            return xy
        t = np.linspace(0, 1, 30)[:, None]
        return np.concatenate([a + t * (b - a) for a, b in itertools.pairwise(xy)])

    for line in ax.lines:
        if line.get_gid() == style.BREAK_GID or not line.get_visible():
            continue
        xy = line.get_transform().transform(np.column_stack(line.get_data()).astype(float))
        points.append(along(xy) if line.get_linestyle() not in ("None", "") else xy)
    for coll in ax.collections:
        offsets = coll.get_offsets()
        if len(offsets) and not isinstance(coll, LineCollection):
            points.append(coll.get_offset_transform().transform(offsets))
        for path in coll.get_paths():
            xy = coll.get_transform().transform(path.vertices)
            points.append(along(xy) if isinstance(coll, LineCollection) else xy)
            if not isinstance(coll, LineCollection) and len(xy):
                boxes.append(path.get_extents(coll.get_transform()))
    for artist in [*ax.patches, *ax.images, *ax.texts]:
        boxes.append(artist.get_window_extent(renderer))
    return [p for p in points if len(p)], boxes


def test_legends_never_cover_data(figures):
    for stem, (_, fig) in figures.items():
        renderer = fig.canvas.get_renderer()
        for leg, _ in _entries(fig):
            box = leg.get_window_extent(renderer).shrunk(0.98, 0.98)
            for ax in fig.axes:
                points, boxes = _data_extents(ax, renderer)
                for xy in points:
                    inside = (xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)
                    assert not np.any(inside), f"{stem}: the legend covers data in {ax.get_title() or ax.get_ylabel()}"
                for b in boxes:
                    assert not box.overlaps(b), f"{stem}: the legend covers data in {ax.get_title() or ax.get_ylabel()}"


# ----------------------------------------------------------------------------- axes and ticks


def test_accuracy_axes_start_at_zero_or_show_a_break(figures):
    checked = 0
    for stem, (_, fig) in figures.items():
        for ax in fig.axes:
            if "accuracy" in ax.get_ylabel():
                checked += 1
                bottom = ax.get_ylim()[0]
                assert bottom == 0 or (bottom > 0 and style.is_broken(ax)), (stem, ax.get_ylabel(), bottom)
    assert checked >= 8
    # the synthetic compare accuracies sit at 0.6-0.97: zoomed, with the break drawn
    assert style.is_broken(figures["compare_creg"][1].axes[0])


def test_zero_or_break():
    _, ax = plt.subplots()
    ax.plot([0, 1], [0.9, 0.95])
    assert style.zero_or_break(ax) and style.is_broken(ax) and ax.get_ylim()[0] > 0.8
    _, ax = plt.subplots()
    ax.plot([0, 1], [0.2, 0.95])
    assert not style.zero_or_break(ax) and ax.get_ylim()[0] == 0 and not style.is_broken(ax)
    plt.close("all")


def _tick_texts(axis):
    """The tick labels shown inside the axis' view (major, then minor)."""
    lo, hi = sorted(axis.get_view_interval())
    ticks = [*axis.get_major_ticks(), *axis.get_minor_ticks()]
    return [t.label1.get_text() for t in ticks
            if t.label1.get_visible() and t.label1.get_text() and lo <= t.get_loc() <= hi]


def test_log_axes_have_readable_tick_labels(figures):
    for stem, (_, fig) in figures.items():
        for ax in fig.axes:
            for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
                if scale == "log":
                    for text in _tick_texts(axis):
                        assert "times" not in text and "×" not in text, (stem, text)
    cost = figures["compare_cost"][1].axes[0]
    texts = _tick_texts(cost.yaxis)
    assert texts and all(t.replace(",", "").replace(".", "").isdigit() for t in texts), texts


def test_plain_log_ticks():
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(3, 45)
    style.plain_log_ticks(ax)
    fig.canvas.draw()
    assert _tick_texts(ax.yaxis) == ["5", "10", "20"]
    plt.close(fig)


def test_first_layer_images_share_one_symmetric_scale_with_a_colour_bar(figures):
    fig = figures["compare_first_layer"][1]
    images = [im for ax in fig.axes if ax.get_label() != "<colorbar>" for im in ax.images]
    assert len(images) > 8 and any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    limits = {im.get_clim() for im in images}
    assert len(limits) == 1
    lo, hi = limits.pop()
    values = np.abs(np.concatenate([np.ravel(np.asarray(im.get_array())) for im in images]))
    assert lo == -hi and hi == pytest.approx(np.quantile(values, compare.CLIP))
    # the synthetic MAP weights are three times larger: they saturate, and the colour bar says so
    bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
    assert values.max() > hi and bar._colorbar.extend == "both"


# ----------------------------------------------------------------------------- seeds


def test_t_interval_against_scipy():
    v = np.array([0.91, 0.95, 0.93, 0.97])
    m, lo, hi = style.t_interval(v)
    want = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    assert m == pytest.approx(v.mean()) and (lo, hi) == pytest.approx(want)
    assert style.t_interval([0.5]) == (0.5, 0.5, 0.5)
    assert style.t_interval([0.5, np.nan]) == (0.5, 0.5, 0.5)


def test_seed_points_draw_every_seed_and_the_interval():
    t = pd.DataFrame({"net": ["mlp"] * 4, "key": ["map", "ss-ig", "ss-ig", "ss-ig"], "seed": [0, 0, 1, 2],
                      "accuracy": [0.97, 0.9, 0.94, 0.95]})
    _, ax = plt.subplots()
    assert style.seed_points(ax, t, "accuracy")
    bars = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(bars) == 1  # one interval: ss-ig has three seeds, map a single one
    (_, y0), (_, y1) = bars[0].get_segments()[0]
    want = stats.t.interval(0.95, 2, loc=np.mean([0.9, 0.94, 0.95]), scale=stats.sem([0.9, 0.94, 0.95]))
    assert sorted([y0, y1]) == pytest.approx(want)
    dots = [c for c in ax.collections if not isinstance(c, LineCollection)]
    assert sorted(dots[0].get_offsets()[:, 1]) == pytest.approx([0.9, 0.94, 0.95])
    markers = [l for l in ax.lines if l.get_linestyle() in ("None", "") and l.get_marker() != "_"]  # not the caps
    assert {l.get_marker() for l in markers} == {style.look("map").marker, style.look("ss-ig").marker}
    # one seed: just the point
    _, ax = plt.subplots()
    assert not style.seed_points(ax, t[t["key"] == "map"], "accuracy")
    assert not ax.collections and len(ax.lines) == 1
    with pytest.raises(ValueError, match="lacks columns"):
        style.seed_points(ax, t, "nll")
    plt.close("all")


def test_tables_with_one_seed_or_no_seed_column_still_plot(results, tmp_path):
    for name, module in (("compare", compare), ("svi_sparsity", svi_sparsity), ("stochastic_bmr", stochastic_bmr),
                         ("spam", spam)):
        one = tmp_path / f"{name}_one"
        (one).mkdir()
        table = pd.read_csv(results / f"{name}.csv")
        if name == "compare":
            (one / "compare").symlink_to(results / "compare")
        table[table["seed"] == 0].drop(columns="seed").to_csv(one / f"{name}.csv", index=False)
        paths = module.make(one, tmp_path / "figs")
        assert paths and all(p.stat().st_size > 0 for p in paths), name


def test_svi_sparsity_figure(figures):
    fig = figures["svi_sparsity"][1]
    panels = [ax for ax in fig.axes if ax.get_ylabel()]
    assert [ax.get_ylabel() for ax in panels] == ["test accuracy", "test NLL (nats)", "ECE", "fraction of nodes kept"]
    for ax in panels:  # MAP: a dashed black reference line, not a point
        refs = [c for c in ax.collections if isinstance(c, LineCollection) and c.get_linestyle()[0][1] is not None]
        assert refs and mcolors.same_color(refs[0].get_color()[0], style.look("map").color)
    with pytest.raises(ValueError, match="unknown priors"):
        svi_sparsity.plot(pd.DataFrame({"prior": ["lasso"], "accuracy": [1.0], "nll": [0.1], "ece": [0.0],
                                        "nodes_kept": [1.0]}))


# ----------------------------------------------------------------------------- command line


def test_missing_results_folder_says_so(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):  # python -m paper_figures: one error line
        cli.main(["--results", str(tmp_path / "absent"), "--out", str(tmp_path / "figs")])
    with pytest.raises(SystemExit, match="does not exist.*experiments.svi_sparsity"):
        svi_sparsity.main(["--results", str(tmp_path / "absent"), "--out", str(tmp_path / "figs")])
    (tmp_path / "empty").mkdir()
    assert cli.main(["--results", str(tmp_path / "empty"), "--out", str(tmp_path / "figs")]) == {}
    assert "no results in" in capsys.readouterr().out


def test_the_checks_catch_the_old_faults():
    """The checks above are not vacuous: a legend inside the axes over data, a log axis inside one decade
    with matplotlib's default labels, and an accuracy axis zoomed without a break all fail them."""
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.bar([0.5], [0.5], width=0.2, label="a bar")
    fig.canvas.draw()
    box = ax.legend(loc="center").get_window_extent(fig.canvas.get_renderer())
    fig.canvas.draw()
    points, boxes = _data_extents(ax, fig.canvas.get_renderer())
    assert any(box.overlaps(b) for b in boxes) or any(
        ((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0) & (xy[:, 1] < box.y1)).any() for xy in points)
    fig, ax = plt.subplots()
    ax.set_yscale("log")
    ax.set_ylim(3, 9)
    fig.canvas.draw()
    assert any("times" in t for t in _tick_texts(ax.yaxis))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0.83, 0.97])
    ax.set_ylabel("test accuracy")
    assert ax.get_ylim()[0] > 0 and not style.is_broken(ax)
    plt.close("all")


def test_demo_table_notes_known_weak_rows():
    from experiments import demo

    summary = pd.DataFrame({"method": ["map", "horseshoe", "laplace-opd", "laplace-opd", "ss-ghs"],
                            "pruning": ["none", "bmr", "opd-weight", "opd-node", "indicator"],
                            "accuracy": [0.97, 0.574, 0.855, 0.649, 0.60]})
    table, notes = demo.with_notes(summary)
    assert list(table["note"]) == ["", "[1]", "", "[2]", ""]  # SS-GHS is weak here but has no known reason
    assert notes[0].startswith("[1] horseshoe (bmr): under-trained") and notes[1].startswith("[2] laplace-opd (opd-node)")
    summary.loc[1, "accuracy"] = 0.95  # no longer weak: no stale note
    assert list(demo.with_notes(summary)[0]["note"]) == ["", "", "", "[1]", ""]


def test_collapsed_runs_are_marked_in_curves_and_points(tmp_path):
    """A collapsed run is drawn with a black "×" (gid "collapsed") exactly where it lies, and the legend explains it;
    read_table completes the flags against MAP (n, n_classes given)."""
    rows = [dict(net="lenet", method=m, reduction="iterative", round=r, seed=0, pruned_fraction=r / 2,
                 accuracy=acc, nll=0.2, ece=0.02, n=360, n_classes=10, collapsed=acc < 0.2,
                 collapse_reason="pruned every filter of conv_1" if acc < 0.2 else "")
            for m, accs in (("bmr", (0.95, 0.95, 0.96)), ("bmr-node", (0.95, 0.09, 0.09))) for r, acc in enumerate(accs)]
    rows.append(dict(net="lenet", method="flat-map", reduction="none", round=0, seed=0, pruned_fraction=0.0,
                     accuracy=0.97, nll=0.1, ece=0.01, n=360, n_classes=10, collapsed=False, collapse_reason=""))
    rows.append(dict(net="lenet", method="tiered-hs", reduction="none", round=0, seed=0, pruned_fraction=0.0,
                     accuracy=0.4, nll=1.0, ece=0.1, n=360, n_classes=10, collapsed=False, collapse_reason=""))
    pd.DataFrame(rows).to_csv(tmp_path / "stochastic_bmr.csv", index=False)
    table = style.read_table(tmp_path, "stochastic_bmr.csv")
    hs = table[table["method"] == "tiered-hs"].iloc[0]
    assert hs["collapsed"] and hs["collapse_reason"].startswith("lost 66% of the reference's margin")  # 1 - .3 / .87
    fig = stochastic_bmr.plot_rounds(table)
    marks = [l for ax in fig.axes for l in ax.lines if l.get_gid() == style.COLLAPSED_GID]
    assert sorted(x for l in marks for x in l.get_xdata()) == [1, 1, 2, 2]  # both panels, bmr-node rounds 1, 2
    assert style.COLLAPSED_LABEL in [t.get_text() for t in fig.legends[0].get_texts()]
    fig = stochastic_bmr.plot_metrics(table)
    assert any(l.get_gid() == style.COLLAPSED_GID for ax in fig.axes for l in ax.lines)
    spam_rows = pd.DataFrame([dict(net="mlp", structure="map", criterion="random", structured=False, sparsity=s, seed=0,
                                   dense_accuracy=0.97, accuracy=a, collapsed=a < 0.2, log_marglik=-1.0)
                              for s, a in ((0.5, 0.9), (0.9, 0.1))])
    fig = spam.plot_criteria(spam_rows, "map")
    marks = [l for ax in fig.axes for l in ax.lines if l.get_gid() == style.COLLAPSED_GID]
    assert [(x, y) for l in marks for x, y in zip(l.get_xdata(), l.get_ydata())] == [(0.9, 0.1)]


def test_several_datasets_get_one_folder_each_and_no_figure_mixes_them(results, tmp_path):
    """Tables with two datasets: each dataset's figures in figures/<dataset>/ drawn from its rows alone;
    tables without a dataset column drawn once, in figures/."""
    from paper_figures.__main__ import _datasets, build_all
    from sparsebnn.results import read_table

    two = tmp_path / "results"
    two.mkdir()
    for f in results.iterdir():
        if f.suffix == ".csv" and "dataset" in (table := read_table(f)):
            pd.concat([table, table.assign(dataset="other")]).to_csv(two / f.name, index=False)
        else:
            (two / f.name).symlink_to(f)
    assert _datasets(results) == [] and "other" in _datasets(two)
    seen = []
    def record(fig, stem):
        plt.close(fig)
        seen.append(Path(stem))
        return [Path(stem)]

    with mock.patch("paper_figures.style.save", side_effect=record):
        written = build_all(two, tmp_path / "figs")
    folders = {p.parent.name for p in seen}
    assert {"figs", "other", _datasets(two)[0]} <= folders and len(folders) >= 3
    assert written
