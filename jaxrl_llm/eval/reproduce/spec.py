"""What a paper table is made of: arms, scales, post-run evaluation and the paper's numbers.

A `TableSpec` names a paper, the method arm and its baseline arms (each a config file of
`configs/` plus overrides), the metrics and curves the table reports, the paper's own numbers (at
the paper's scale: shown beside ours, never compared as equals) and two scales:
  * `cpu`: SmolLM2-135M-Instruct on a reasoning-gym task, sized for about an hour on 2 CPU cores;
  * `paper`: the paper's model, data and hyperparameters, a config for accelerators.
Every arm of a table runs with the same seeds, prompts and budget: a scale's `overrides` apply to
every arm, after the arm's config file and before the arm's own `overrides`.
"""
import dataclasses
from collections.abc import Mapping
from typing import Any

from jaxrl_llm.objectives import presets

SCALES = ("cpu", "paper")


@dataclasses.dataclass(frozen=True)
class Arm:
  """One training run of a table (per seed).

  Attributes:
    name: the label in table.md and the plots ("GRPO", "GRPO+LLDS").
    config: the config file `configs/<config>.py` it starts from.
    preset: the objective preset it trains with (`objectives.presets`).
    overrides: dotted config keys set after the scale's (`{"objective.p": -0.2}`).
    host: for a method whose preset does not exist yet, the preset its config is built on (the
      arm's recipe minus the method), so that the paper config still builds; such an arm
      refuses to run (`implemented` is False).
  """
  name: str
  config: str
  preset: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  host: str | None = None

  @property
  def implemented(self) -> bool:
    return self.preset in presets.PRESETS

  @property
  def slug(self) -> str:
    """The arm's folder name: lowercase, `+`/spaces/signs spelled out."""
    text = self.name.lower().replace("+", "_plus_").replace("−", "-")
    out = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    while "__" in out:
      out = out.replace("__", "_")
    return out.strip("_")


@dataclasses.dataclass(frozen=True)
class PassK:
  """Post-run sampled evaluation of each trained policy (and of the initial model, `base`):
  pass@k for each k of `ks` from `n` samples of each of `num_prompts` held-out prompts."""
  num_prompts: int
  n: int
  ks: tuple[int, ...]
  temperature: float = 1.0
  batch_size: int = 2          # prompts per sampling call (n rows each)
  base: bool = True            # also evaluate the initial model (once, seed 0's key)


@dataclasses.dataclass(frozen=True)
class Scale:
  """A size at which a table runs.

  Attributes:
    model: the config arg naming the model (`configs/base.py` MODELS key, hub id or folder).
    overrides: dotted config keys applied to every arm (budget, data, hyperparameters).
    seeds: default seeds (`config.seed`; prompts are the same for every seed and arm).
    arms: names of the arms run at this scale (None: all).
    passk: post-run pass@k evaluation, or None.
    arm_overrides: per arm name, dotted keys applied after `overrides` at this scale only.
    about: one line for table.md and --print_config (what the scale is, what it lacks).
  """
  model: str
  overrides: Mapping[str, Any]
  seeds: tuple[int, ...] = (0, 1)
  arms: tuple[str, ...] | None = None
  passk: PassK | None = None
  arm_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  about: str = ""


@dataclasses.dataclass(frozen=True)
class Reported:
  """One row of the paper's results: `values` by column, `arm` the arm of ours it matches."""
  setting: str                  # model / data of the paper's row
  method: str                   # the paper's name for the row
  values: Mapping[str, str]     # column -> value as printed in the paper
  arm: str | None = None        # our arm's name, when the row is one of our arms


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """A paper table to reproduce (see the module docstring).

  Attributes:
    name: registry key and `--table` value.
    title: the paper's method name.
    paper: short citation (authors / venue).
    arxiv: arXiv id.
    spec_ref: where the method is specified (`spec/seed_methods.md §1`).
    method: the method's arm(s); baselines: the arms it is compared with.
    metrics: summary metrics of table.md (keys of `report.METRICS`).
    curves: curves to plot (keys of `report.CURVES`).
    reported_setting: the paper's model, data and metric of `reported` (their scale).
    reported: the paper's numbers; headline: the column shown beside our arms.
    cpu, paper: the two scales.
    notes: caveats (reconstructed defaults, missing environments).
  """
  name: str
  title: str
  paper: str
  arxiv: str
  spec_ref: str
  method: tuple[Arm, ...]
  baselines: tuple[Arm, ...]
  metrics: tuple[str, ...]
  curves: tuple[str, ...]
  cpu: Scale
  paper_scale: Scale
  reported_setting: str = ""
  reported: tuple[Reported, ...] = ()
  headline: str | None = None
  notes: str = ""

  @property
  def arms(self) -> tuple[Arm, ...]:
    return tuple(self.baselines) + tuple(self.method)

  def scale(self, name: str) -> Scale:
    if name not in SCALES:
      raise ValueError(f"unknown scale {name!r}; valid scales: {', '.join(SCALES)}.")
    return self.cpu if name == "cpu" else self.paper_scale

  def arms_at(self, scale: Scale) -> tuple[Arm, ...]:
    """The arms that run at `scale`, in table order."""
    if scale.arms is None:
      return self.arms
    by_name = {a.name: a for a in self.arms}
    unknown = [n for n in scale.arms if n not in by_name]
    if unknown:
      raise ValueError(f"table {self.name!r}: scale lists unknown arms {unknown}; arms are "
                       f"{sorted(by_name)}.")
    return tuple(by_name[n] for n in scale.arms)

  def missing(self) -> tuple[Arm, ...]:
    """Arms whose method preset is not implemented yet."""
    return tuple(a for a in self.arms if not a.implemented)

  def check_runnable(self, scale: Scale) -> None:
    """Raises NotImplementedError naming the methods a run of `scale` lacks."""
    missing = [a for a in self.arms_at(scale) if not a.implemented]
    if missing:
      names = ", ".join(f"{a.name} (preset {a.preset!r})" for a in missing)
      raise NotImplementedError(
          f"table {self.name!r}: method {names} is not implemented (no such preset). The table "
          "spec and its paper config are registered (`--print_config` shows them); the run "
          f"needs `objectives.presets.{missing[0].preset}` first.")
