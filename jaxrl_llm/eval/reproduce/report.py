"""table.md, results.json and PNG curves of a reproduction.

Everything here works on the *results* dict that `results.json` holds, so a notebook can redraw
the curves from a finished (or partly finished) reproduction folder with `load_results` and
`plot_curve`, without the spec or a model:
  {"table", "title", "paper", "arxiv", "spec_ref", "scale", "about", "seeds", "arms",
   "curves", "metrics", "runs": [{"arm", "seed", "dir", "history", "posteval"}],
   "initial": <pass@k of the initial model> | None, "summary": {arm: {metric: stats}}}
Our numbers are the mean over seeds ± the half-width of a 95 % confidence interval from the
t-distribution with n − 1 degrees of freedom (`mean_ci`); with one seed there is no interval.
"""
import dataclasses
import json
import math
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

RESULTS_FILE = "results.json"
TABLE_FILE = "table.md"

# ------------------------------------------------------------------------------------ statistics


def _t_cdf(x: float, df: int, intervals: int = 4000) -> float:
  """P(T ≤ x) of Student's t with `df` degrees of freedom, x ≥ 0 (Simpson's rule on the
  density from 0 to x)."""
  xs = np.linspace(0.0, x, intervals + 1)
  log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
  f = np.exp(log_c - (df + 1) / 2 * np.log1p(xs * xs / df))
  h = x / intervals
  return 0.5 + h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())


def t_quantile(q: float, df: int) -> float:
  """The q-quantile (0.5 < q < 1) of Student's t with `df` ≥ 1 degrees of freedom."""
  if not 0.5 < q < 1 or df < 1:
    raise ValueError(f"t_quantile needs 0.5 < q < 1 and df >= 1; got q={q}, df={df}.")
  hi = 2.0
  while _t_cdf(hi, df) < q:
    hi *= 2
  lo = 0.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if _t_cdf(mid, df) < q else (lo, mid)
  return (lo + hi) / 2


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float | None, int]:
  """(mean, half-width of the `level` CI or None when n < 2, n) of `values` (NaNs dropped)."""
  x = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
  n = int(x.size)
  if n == 0:
    return float("nan"), None, 0
  if n == 1:
    return float(x[0]), None, 1
  half = t_quantile(0.5 + level / 2, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
  return float(x.mean()), half, n


def format_ci(mean: float, half: float | None, n: int, digits: int = 3) -> str:
  if n == 0 or not np.isfinite(mean):
    return "—"
  if half is None:
    return f"{mean:.{digits}f} (n=1, no CI)"
  return f"{mean:.{digits}f} ± {half:.{digits}f}"


# ------------------------------------------------------------------------------------- histories


def dedupe_history(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """One record per step, the last written winning (a resumed run repeats the iterations after
  its last checkpoint), in step order."""
  by_step: dict[int, dict[str, Any]] = {}
  for r in records:
    by_step[int(r["step"])] = dict(r)
  return [by_step[s] for s in sorted(by_step)]


def read_history(run_dir: str | pathlib.Path) -> list[dict[str, Any]]:
  """The deduplicated records of `<run_dir>/metrics.jsonl` ([] when absent)."""
  path = pathlib.Path(run_dir) / "metrics.jsonl"
  if not path.is_file():
    return []
  lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
  return dedupe_history([json.loads(line) for line in lines])


def series(history: Sequence[dict[str, Any]], *keys: str) -> tuple[np.ndarray, np.ndarray]:
  """(steps, values) of the first of `keys` that the history holds."""
  for key in keys:
    rows = [(r["step"], r[key]) for r in history if key in r and r[key] is not None]
    if rows:
      steps, values = zip(*rows)
      return np.asarray(steps, np.int64), np.asarray(values, np.float64)
  return np.zeros((0,), np.int64), np.zeros((0,), np.float64)


ACCURACY_KEYS = ("reward/accuracy", "reward/mean")


def _window(n: int) -> int:
  return max(1, min(3, n // 3))


def _tail(values: np.ndarray) -> float | None:
  return float(values[-_window(len(values)):].mean()) if len(values) else None


def _change(values: np.ndarray) -> float | None:
  if len(values) < 2:
    return None
  w = _window(len(values))
  return float(values[-w:].mean() - values[:w].mean())


def collapsed(history: Sequence[dict[str, Any]], drop: float = 0.5, floor: float = 0.05
              ) -> float | None:
  """1.0 when training accuracy collapsed: its 3-iteration moving average peaked at ≥ `floor`
  and the last 3 iterations average below `drop` x that peak; else 0.0 (None: < 3 iterations)."""
  _, acc = series(history, *ACCURACY_KEYS)
  if len(acc) < 3:
    return None
  moving = np.convolve(acc, np.ones(3) / 3, mode="valid")
  peak = float(moving.max())
  return float(peak >= floor and float(acc[-3:].mean()) < drop * peak)


# --------------------------------------------------------------------------------------- metrics


@dataclasses.dataclass(frozen=True)
class Metric:
  label: str
  fn: Callable[[dict[str, Any]], float | None]   # run -> value
  digits: int = 3
  count: bool = False   # a 0/1 per seed, shown as "k/n seeds"


def _eval_greedy(run):
  post = run.get("posteval")
  if post:
    return post["metrics"].get("accuracy/greedy")
  _, v = series(run["history"], "eval/accuracy_greedy")
  return float(v[-1]) if len(v) else None


def _eval_gain(run):
  _, v = series(run["history"], "eval/accuracy_greedy")
  return float(v[-1] - v[0]) if len(v) >= 2 else None


METRICS: dict[str, Metric] = {
    "train_accuracy": Metric("train accuracy (last iterations)",
                             lambda r: _tail(series(r["history"], *ACCURACY_KEYS)[1])),
    "eval_greedy": Metric("held-out greedy accuracy (final)", _eval_greedy),
    "eval_greedy_gain": Metric("Δ held-out greedy accuracy", _eval_gain),
    "logp_correct": Metric(
        "log p of correct responses (per token, last iterations)",
        lambda r: _tail(series(r["history"], "likelihood/correct_token_logp")[1])),
    "logp_correct_change": Metric(
        "Δ log p of correct responses (last − first iterations)",
        lambda r: _change(series(r["history"], "likelihood/correct_token_logp")[1])),
    "collapsed": Metric("collapsed", lambda r: collapsed(r["history"]), count=True),
    "length": Metric("mean response length (last iterations)",
                     lambda r: _tail(series(r["history"], "completion/mean_length")[1]), 1),
    "length_change": Metric("Δ mean response length (last − first iterations)",
                            lambda r: _change(series(r["history"], "completion/mean_length")[1]),
                            1),
}


def metric(name: str) -> Metric:
  """A metric of METRICS, or `pass@<k>` from the post-run evaluation."""
  if name in METRICS:
    return METRICS[name]
  if name.startswith("pass@") and name[5:].isdigit():
    def fn(run, key=name):
      post = run.get("posteval")
      return post["metrics"].get(key) if post else None
    return Metric(f"{name} (held-out)", fn)
  raise ValueError(f"unknown metric {name!r}; valid: {sorted(METRICS)} or pass@<k>.")


PROBABILITY_CURVES = ("accuracy", "eval_accuracy", "passk")   # CI bands clipped to [0, 1]
CURVES: dict[str, tuple[str, tuple[str, ...]]] = {
    "accuracy": ("train accuracy (reward/accuracy)", ACCURACY_KEYS),
    "eval_accuracy": ("held-out greedy accuracy", ("eval/accuracy_greedy",)),
    "logp_correct": ("log p of correct responses (per token)",
                     ("likelihood/correct_token_logp",)),
    "length": ("mean response length (tokens)", ("completion/mean_length",)),
    "passk": ("pass@k (held-out, after training)", ()),
}


def summarize(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
  """{arm: {metric: {"mean", "ci", "n", "values"}}} over the runs of `results`."""
  out: dict[str, dict[str, dict[str, Any]]] = {}
  for arm in results["arms"]:
    runs = [r for r in results["runs"] if r["arm"] == arm]
    out[arm] = {}
    for name in results["metrics"]:
      values = [metric(name).fn(r) for r in runs]
      values = [float(v) for v in values if v is not None]
      mean, half, n = mean_ci(values)
      out[arm][name] = {"mean": mean, "ci": half, "n": n, "values": values}
  return out


# ----------------------------------------------------------------------------------------- plots


def _pyplot():
  """pyplot, on the file-only Agg backend unless the caller (a notebook) imported it first."""
  import sys  # pylint: disable=g-import-not-at-top
  import matplotlib  # pylint: disable=g-import-not-at-top
  if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def curve_data(results: dict[str, Any], curve: str) -> dict[str, dict[str, np.ndarray]]:
  """{arm (or "initial model"): {"x", "mean", "lo", "hi"}} of a curve, over seeds: x is the
  iteration (the steps every seed reached) or, for `passk`, k."""
  if curve not in CURVES:
    raise ValueError(f"unknown curve {curve!r}; valid: {sorted(CURVES)}.")
  _, keys = CURVES[curve]
  out = {}
  for arm in results["arms"]:
    runs = [r for r in results["runs"] if r["arm"] == arm]
    if curve == "passk":
      per_seed = [_passk_points(r.get("posteval")) for r in runs]
    else:
      per_seed = [series(r["history"], *keys) for r in runs]
    per_seed = [(x, y) for x, y in per_seed if len(x)]
    if not per_seed:
      continue
    common = sorted(set.intersection(*[set(x.tolist()) for x, _ in per_seed]))
    if not common:
      continue
    ys = np.asarray([[dict(zip(x.tolist(), y.tolist()))[c] for c in common]
                     for x, y in per_seed])
    stats = [mean_ci(ys[:, j]) for j in range(len(common))]
    mean = np.asarray([s[0] for s in stats])
    half = np.asarray([s[1] if s[1] is not None else 0.0 for s in stats])
    lo, hi = mean - half, mean + half
    if curve in PROBABILITY_CURVES:
      lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    out[arm] = {"x": np.asarray(common), "mean": mean, "lo": lo, "hi": hi}
  if curve == "passk" and results.get("initial"):
    x, y = _passk_points(results["initial"])
    if len(x):
      out["initial model"] = {"x": x, "mean": y, "lo": y, "hi": y}
  return out


def _passk_points(post: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
  if not post:
    return np.zeros((0,), np.int64), np.zeros((0,))
  ks = sorted(int(k[5:]) for k in post["metrics"] if k.startswith("pass@"))
  return np.asarray(ks), np.asarray([post["metrics"][f"pass@{k}"] for k in ks])


def plot_curve(results: dict[str, Any], curve: str, ax=None):
  """Draws one curve of `results` (mean over seeds, shaded 95 % CI) on `ax` (a new figure by
  default); returns the axes, or None when no run has data for it."""
  data = curve_data(results, curve)
  if not data:
    return None
  plt = _pyplot()
  if ax is None:
    _, ax = plt.subplots(figsize=(6, 4))
  for arm, d in data.items():
    style = "--" if arm == "initial model" else "-"
    (line,) = ax.plot(d["x"], d["mean"], style, marker="o", markersize=3, label=arm)
    if np.any(d["hi"] > d["lo"]):
      ax.fill_between(d["x"], d["lo"], d["hi"], alpha=0.15, color=line.get_color())
  label, _ = CURVES[curve]
  ax.set_ylabel(label)
  if curve == "passk":
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
  else:
    from matplotlib.ticker import MaxNLocator  # pylint: disable=g-import-not-at-top
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("iteration")
  ax.set_title(f"{results['title']} — {results['scale']} scale")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return ax


def write_plots(results: dict[str, Any], out_dir: str | pathlib.Path) -> list[pathlib.Path]:
  """One PNG per curve of `results["curves"]` that has data; returns their paths."""
  plt = _pyplot()
  paths = []
  for curve in results["curves"]:
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
      if plot_curve(results, curve, ax) is None:
        continue
      path = pathlib.Path(out_dir) / f"{curve}.png"
      fig.tight_layout()
      fig.savefig(path, dpi=110)
      paths.append(path)
    finally:
      plt.close(fig)
  return paths


# ----------------------------------------------------------------------------------- table.md


def _cell(stats: dict[str, Any], m: Metric) -> str:
  if m.count:
    if not stats["n"]:
      return "—"
    return f"{int(round(sum(stats['values'])))}/{stats['n']} seeds"
  return format_ci(stats["mean"], stats["ci"], stats["n"], m.digits)


def _initial_row(results: dict[str, Any]) -> dict[str, str]:
  """Cells of the initial model: its pass@k (post-run eval) and greedy accuracy (step 0)."""
  cells = {}
  initial = results.get("initial")
  step0 = [series(r["history"], "eval/accuracy_greedy") for r in results["runs"]]
  step0 = [float(y[0]) for x, y in step0 if len(x) and x[0] == 0]
  for name in results["metrics"]:
    if name.startswith("pass@") and initial:
      value = initial["metrics"].get(name)
      cells[name] = "—" if value is None else f"{value:.3f}"
    elif name == "eval_greedy" and (initial or step0):
      value = initial["metrics"]["accuracy/greedy"] if initial else float(np.mean(step0))
      cells[name] = f"{value:.3f}"
  return cells


def render_table(results: dict[str, Any]) -> str:
  """The markdown of table.md."""
  summary = results["summary"]
  names = results["metrics"]
  headline = results.get("headline")
  reported = results.get("reported", [])
  by_arm = {r["arm"]: r for r in reported if r.get("arm")}
  seeds = results["seeds"]
  lines = [f"# {results['title']}", "",
           f"{results['paper']}, arXiv {results['arxiv']} ({results['spec_ref']}).", "",
           f"**Scale `{results['scale']}`**: {results['about']}. Every arm runs with the same "
           f"seeds ({', '.join(map(str, seeds))}), prompts and budget.", "",
           "Ours: mean ± 95% CI over seeds (t-distribution, n − 1 degrees of freedom); "
           "n=1 means one seed and no CI."]
  if headline and reported:
    lines += ["", "**The paper's numbers are at a different scale** "
                  f"({results['reported_setting']}): a different model, data and budget. "
                  "They sit beside ours for the direction of the effect, not as values to "
                  "match."]
  header = ["arm"] + [metric(n).label for n in names]
  if headline and reported:
    header.append(f"paper: {headline}")
  lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  initial = _initial_row(results)
  if initial:
    row = ["initial model"] + [initial.get(n, "—") for n in names]
    if headline and reported:
      row.append("")
    lines.append("| " + " | ".join(row) + " |")
  for arm in results["arms"]:
    row = [arm] + [_cell(summary[arm][n], metric(n)) for n in names]
    if headline and reported:
      paper = by_arm.get(arm)
      row.append(f"{paper['values'].get(headline, '')} ({paper['setting']})" if paper else "")
    lines.append("| " + " | ".join(row) + " |")
  done = {(r["arm"], r["seed"]) for r in results["runs"]}
  missing = [f"{a} seed {s}" for a in results["arms"] for s in seeds if (a, s) not in done]
  if missing:
    lines += ["", f"*Incomplete: not run yet: {', '.join(missing)}.*"]
  if reported:
    columns = []
    for r in reported:
      columns += [c for c in r["values"] if c not in columns]
    lines += ["", f"## The paper's reported numbers ({results['reported_setting']})", "",
              "| setting | method | " + " | ".join(columns) + " |",
              "|" + "---|" * (len(columns) + 2)]
    for r in reported:
      lines.append(f"| {r['setting']} | {r['method']} | "
                   + " | ".join(r["values"].get(c, "") for c in columns) + " |")
  lines += ["", "## Runs", "", "| arm | seed | iterations | folder |", "|---|---|---|---|"]
  for r in results["runs"]:
    steps = [h["step"] for h in r["history"] if "reward/mean" in h]
    lines.append(f"| {r['arm']} | {r['seed']} | {max(steps) if steps else 0} | {r['dir']} |")
  plots = results.get("plots", [])
  if plots:
    lines += ["", "## Curves", ""] + [f"![{p}]({p})" for p in plots]
  if results.get("notes"):
    lines += ["", "## Notes", "", results["notes"]]
  return "\n".join(lines) + "\n"


def load_results(folder: str | pathlib.Path) -> dict[str, Any]:
  """The results dict of a reproduction folder (`<workdir>/<table>`), with a clear error when
  the folder holds none yet."""
  path = pathlib.Path(folder) / RESULTS_FILE
  if not path.is_file():
    raise FileNotFoundError(
        f"no {RESULTS_FILE} in {folder}: run the reproduction first, e.g. `python "
        f"launch/reproduce.py --table={pathlib.Path(folder).name} --scale=cpu "
        f"--workdir={pathlib.Path(folder).parent}`.")
  return json.loads(path.read_text(encoding="utf-8"))


def write_report(results: dict[str, Any], out_dir: str | pathlib.Path) -> pathlib.Path:
  """Writes results.json, the PNG curves and table.md into `out_dir`; returns table.md's path."""
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  results = dict(results)
  results["summary"] = summarize(results)
  results["plots"] = [p.name for p in write_plots(results, out_dir)]
  (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, default=_json_default),
                                      encoding="utf-8")
  path = out_dir / TABLE_FILE
  path.write_text(render_table(results), encoding="utf-8")
  return path


def _json_default(x):
  if isinstance(x, (np.floating, np.integer)):
    return x.item()
  if isinstance(x, np.ndarray):
    return x.tolist()
  raise TypeError(f"not JSON serialisable: {type(x)}")
