"""The reproduction report's figure sections: Fig. 3 (interpolation SB → LB), Fig. 4 (accuracy
and sharpness against the batch size) and Fig. 5 (LB warm-started from SB)."""

from __future__ import annotations

from typing import Any

from remedies.config import parse_config
from remedies.data import Splits, load_data
from remedies.engine.trainer import build_model, pick_device
from remedies.measures.interpolation import interpolate, plot_interpolation, write_csv
from remedies.reproduce.figures import plot_vs
from remedies.reproduce.numbers import fmt_g, label, mean_std
from remedies.stats import kendall_tau


def fig3_section(net, sb, lb, out, pngs) -> list[str]:
    lab = label(net, [sb])

    cfg = parse_config(sb.result["config"])
    device = pick_device(cfg.train.device)  # 2 × 25 full-data passes: on the GPU where there is one
    splits = load_data(cfg.data).to(device)
    assert isinstance(splits, Splits)  # the paper's data sets load as tensors (no factory)
    models = []
    for o in (sb, lb):
        m = build_model(parse_config(o.result["config"]), splits, device)
        m.load_state_dict(o.result["weights"])
        models.append(m)
    md = ["### Fig. 3: the loss along the line and the curve from x_SB (α = 0) to x_LB (α = 1)", ""]
    for path in ("linear", "curved"):
        table = interpolate(
            models[0],
            models[1],
            (splits.x_train, splits.y_train),
            (splits.x_test, splits.y_test),
            path=path,
        )
        png = plot_interpolation(
            table,
            out / f"fig3_{net}_{path}.png",
            labels=("SB", "LB"),
            title=f"{lab}: {path} path, SB → LB (seed 0)",
        )
        write_csv(table, out / f"fig3_{net}_{path}.csv")
        pngs.append(png)
        md += [f"![{path}]({png.name})", ""]
    return md


def fig4_section(net, opts, outs, out, checks, pngs, metrics) -> list[str]:
    lab = label(net, outs)
    runs = [o for o in outs if "fig4" in o.spec.parts]
    by_b: dict[int, list[dict[str, Any]]] = {}
    for o in runs:
        by_b.setdefault(o.result["batch_size"], []).append(o.result)
    bs = sorted(by_b)
    if len(bs) < 2:
        return []
    acc, sharp, md = _curve(
        by_b,
        "fig4",
        "batch",
        pngs,
        "### Fig. 4: test accuracy and sharpness against batch size",
        lambda a, sh: plot_vs(
            bs,
            a,
            sh,
            out / f"fig4_{net}.png",
            xlabel="batch size",
            logx=True,
            title=f"{lab}: test accuracy and sharpness vs batch size",
        ),
    )
    keys = list(sharp)
    k0 = "keskar_full_eps1e-03" if "keskar_full_eps1e-03" in sharp else (keys[0] if keys else "")
    if k0:
        tau = kendall_tau([float(b) for b in bs], sharp[k0])
        metrics[f"{net}_fig4_tau"] = tau
        checks.append(
            (
                f"{lab}: sharpness rises with batch size (Fig. 4, `{k0}`)",
                tau > 0 and sharp[k0][-1] > sharp[k0][0],
                f"Kendall τ(batch, sharpness) = {tau:+.2f}; smallest batch "
                f"{fmt_g(sharp[k0][0])}, largest {fmt_g(sharp[k0][-1])}",
            )
        )
    best = max(acc)
    top = bs[acc.index(best)]
    knee = next((b for b, a in zip(bs, acc, strict=True) if a < best - 1.0 and b > top), None)
    noise = [
        d["value"]
        for o in outs
        if "table" in o.spec.parts
        for d in o.result["details"]
        if d["measure"] == "noise_scale"
    ]
    md += [""]
    if noise:
        md += [
            "Gradient noise scale B_simple = tr Σ / ‖G‖² (McCandlish et al. 2018) at the "
            "seed-0 end points: "
            + ", ".join(f"{fmt_g(v)}" for v in noise)
            + " — the batch size past which a larger batch stops buying progress per step. "
            f"Test accuracy first falls more than 1 point below its best ({best:.2f} %) at "
            f"batch {knee if knee else '– (never, in this range)'}.",
            "",
        ]
        metrics[f"{net}_b_simple_SB"] = noise[0]
    return md


def fig5_section(net, opts, outs, out, pngs) -> list[str]:
    lab = label(net, outs)
    runs = sorted((o for o in outs if "fig5" in o.spec.parts), key=lambda o: o.spec.warm_k)
    by_k: dict[int, list[dict[str, Any]]] = {}
    for o in runs:
        by_k.setdefault(o.spec.warm_k, []).append(o.result)
    ks = sorted(by_k)
    if len(ks) < 2:
        return []
    xlabel = f"SB ({opts.sb}) epochs before LB ({opts.lb}, {opts.epochs} epochs)"
    png = out / f"fig5_{net}.png"
    _, _, md = _curve(
        by_k,
        "fig5",
        "k",
        pngs,
        "### Fig. 5: LB warm-started from the SB iterate after k epochs",
        lambda a, sh: plot_vs(
            [float(k) for k in ks], a, sh, png, xlabel=xlabel, title=f"{lab}: warm-started LB"
        ),
    )
    return md + [""]


def _curve(
    by_x: dict[Any, list[dict[str, Any]]], fig: str, col: str, pngs: list, heading: str, plot
) -> tuple[list[float], dict[str, list[float]], list[str]]:
    """Mean test accuracy and full-space Keskar per x (batch size, warm-up epochs), their plot
    (`plot(acc, sharp)` → PNG path) and the Markdown section with its table."""
    xs = sorted(by_x)
    acc = [mean_std([r["test_accuracy"] for r in by_x[x]])[0] for x in xs]
    keys = [k for k in by_x[xs[0]][0]["sharpness"] if k.startswith("keskar_full")]
    sharp = {k: [mean_std([r["sharpness"][k] for r in by_x[x]])[0] for x in xs] for k in keys}
    png = plot(acc, sharp)
    pngs.append(png)
    md = [
        heading,
        "",
        f"![{fig}]({png.name})",
        "",
        f"| {col} | test acc % | " + " | ".join(f"`{k}`" for k in keys) + " |",
        "|---" * (2 + len(keys)) + "|",
    ]
    for i, x in enumerate(xs):
        md += [f"| {x} | {acc[i]:.2f} | " + " | ".join(fmt_g(sharp[k][i]) for k in keys) + " |"]
    return acc, sharp, md
