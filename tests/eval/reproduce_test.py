"""The reproduction harness: every seed paper registered, every paper config builds, table.md's
mean ± CI against an independent formula, and a tiny end-to-end reproduction."""
import dataclasses
import json
import math
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrl_llm import data
from jaxrl_llm.eval import reproduce
from jaxrl_llm.eval.reproduce import report
from jaxrl_llm.training import loop
from tests.training.helpers import byte_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[2]

# spec/seed_methods.md §1-§7 and spec/baselines_and_more.md B1-B13.
SEED_PAPERS = {
    "llds": "2512.04220", "thr": "2510.03669", "fipo": "2603.19835", "divergence": "2603.22446",
    "delta_logp": "2603.22117", "owpo": "2605.22156", "nsr": "2605.22703",
    "unlikely": "2506.02355", "stratified": "2510.06214", "knapsack": "2509.25849",
    "copo": "2508.04138", "d3s": "2509.22115", "ppr": "2509.25598",
    "posterior_grpo": "2508.05170", "laser": "2510.14943", "co_reward": "2508.00410",
    "mm_upt": "2505.22453", "pav": "2410.08146", "critique_grpo": "2506.03106",
    "preplan_anchor": "2510.13554",
}
IMPLEMENTED = tuple(SEED_PAPERS)
# What a method's own config may set beyond its objective: its rollout hooks, and the trainer's
# recomputed behaviour logp (Critique-GRPO's refinements were sampled under another prompt).
METHOD_KEYS = ("hooks.", "train.recompute_old_logp")


def test_every_seed_paper_has_a_table():
  assert {n: s.arxiv for n, s in reproduce.TABLES.items()} == SEED_PAPERS
  for spec in reproduce.TABLES.values():
    names = {a.name for a in spec.arms}
    assert spec.method and spec.baselines, spec.name
    for r in spec.reported:                       # the paper's rows point at real arms
      assert r.arm is None or r.arm in names, (spec.name, r.arm)
      assert spec.headline is None or not r.arm or spec.headline in r.values, spec.name
    for m in spec.metrics:
      report.metric(m)
    assert set(spec.curves) <= set(report.CURVES), spec.name
    for scale in (spec.cpu, spec.paper_scale):
      spec.arms_at(scale)


def test_unknown_table_names_the_registered_ones():
  with pytest.raises(ValueError, match="unknown table 'lld'. Did you mean 'llds'.*unlikely"):
    reproduce.get_table("lld")


@pytest.mark.parametrize("name", sorted(SEED_PAPERS))
def test_paper_config_builds_and_passes_check_config(name):
  """--scale=paper builds for every arm, on 1 device and on the 8 of the test session."""
  spec = reproduce.get_table(name)
  configs = reproduce.table_configs(spec, spec.paper_scale)
  assert list(configs) == [a.name for a in spec.arms_at(spec.paper_scale)]
  for arm_name, config in configs.items():
    assert "/" in config.model.source, (arm_name, config.model.source)   # a hub id
    data.parse_spec(config.data.source)
    for devices in (1, 8):
      config.mesh.num_devices = devices
      loop.check_config(config)
    arm = next(a for a in spec.arms if a.name == arm_name)
    expected = arm.preset if arm.implemented else arm.host
    assert config.objective.name == expected


@pytest.mark.parametrize("name", IMPLEMENTED)
def test_cpu_arms_differ_only_where_the_spec_says(name):
  """Same budget, prompts, model and optimizer for every arm: outside the objective, configs
  differ only in keys the spec overrides for one arm."""
  spec = reproduce.get_table(name)
  scale = spec.cpu
  configs = reproduce.table_configs(spec, scale)
  flat = {arm: _flatten(c.to_dict()) for arm, c in configs.items()}
  allowed = set()
  for arm in spec.arms_at(scale):
    allowed |= set(arm.overrides) | set(scale.arm_overrides.get(arm.name, {}))
  first, *rest = flat.values()
  for other in rest:
    differ = {k for k in set(first) | set(other)
              if not k.startswith(("objective.",) + METHOD_KEYS) and first.get(k) != other.get(k)}
    assert differ <= allowed, (name, differ - allowed)
  for config in configs.values():
    assert config.model.source == "smollm2-135m-instruct"
    config.mesh.num_devices = 1
    loop.check_config(config)
  assert reproduce.estimate_minutes(spec, scale) <= 60, name


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def test_a_method_without_a_preset_refuses_to_run(tmp_path):
  """An arm whose preset is not registered builds its host's config but refuses to run, before
  anything is written."""
  spec = dataclasses.replace(reproduce.get_table("copo"), name="copo_unregistered",
                             method=(reproduce.Arm("X", "grpo", "no_such_preset", host="grpo"),))
  assert [a.name for a in spec.missing()] == ["X"]
  config = reproduce.arm_config(spec, spec.method[0], spec.cpu, 0)
  assert config.objective.name == "grpo"
  with pytest.raises(NotImplementedError, match="not implemented.*no_such_preset"):
    reproduce.run_table(spec, "cpu", str(tmp_path))
  assert not (tmp_path / spec.name).exists()


def test_bad_override_names_the_closest_key():
  spec = reproduce.get_table("llds")
  with pytest.raises(ValueError, match="unknown config key 'train.num_stepz'.*train.num_steps"):
    reproduce.arm_config(spec, spec.arms[0], spec.cpu, 0, extra={"train.num_stepz": 1})
  assert reproduce.parse_override("train.num_steps=3") == ("train.num_steps", 3)
  assert reproduce.parse_override("model.source=/m/x") == ("model.source", "/m/x")
  with pytest.raises(ValueError, match="key=value"):
    reproduce.parse_override("train.num_steps")


# ------------------------------------------------------------------------ statistics and table.md

# Student's t 0.975 quantiles (printed tables): the CI's factor for n = 2, 3, 5, 10, 31 seeds.
T975 = {1: 12.706204736, 2: 4.302652730, 4: 2.776445105, 9: 2.262157163, 30: 2.042272456}


@pytest.mark.parametrize("df, expected", sorted(T975.items()))
def test_t_quantile_matches_printed_tables(df, expected):
  assert reproduce.t_quantile(0.975, df) == pytest.approx(expected, abs=1e-6)


def _record(step, acc, logp=None, eval_acc=None):
  r = {"step": step, "reward/mean": acc, "reward/accuracy": acc, "completion/mean_length": 10.0}
  if logp is not None:
    r["likelihood/correct_token_logp"] = logp
  if eval_acc is not None:
    r["eval/accuracy_greedy"] = eval_acc
  return r


def _made_up_results(values_by_arm):
  """Histories whose last 3 iterations average to the given value per seed (the train-accuracy
  metric), plus a collapse in one seed."""
  runs = []
  for arm, values in values_by_arm.items():
    for seed, v in enumerate(values):
      history = [{"step": 0, "eval/accuracy_greedy": 0.2}]
      history += [_record(s, 0.1, -1.0 - 0.1 * s) for s in range(1, 7)]
      history += [_record(s, v, -1.5) for s in range(7, 10)]
      runs.append({"arm": arm, "seed": seed, "dir": f"{arm}/seed_{seed}", "history": history,
                   "posteval": None})
  return {"table": "t", "title": "Made up", "paper": "nobody", "arxiv": "0000.00000",
          "spec_ref": "none", "scale": "test", "about": "made-up histories",
          "seeds": [0, 1, 2], "arms": list(values_by_arm), "curves": ["accuracy", "logp_correct"],
          "metrics": ["train_accuracy", "logp_correct_change", "collapsed"], "headline": "Avg",
          "reported_setting": "Big-7B on Hard-Bench",
          "reported": [{"setting": "Big-7B", "method": "ours", "values": {"Avg": "42.0"},
                        "arm": "B"}],
          "notes": "", "runs": runs, "initial": None}


def test_table_md_reports_mean_and_t_interval_over_seeds(tmp_path):
  values = {"A": [0.30, 0.42, 0.37], "B": [0.01]}
  path = reproduce.write_report(_made_up_results(values), tmp_path)
  text = path.read_text()
  x = np.asarray(values["A"], np.float64)                       # independent float64 formula
  mean = x.sum() / 3
  sd = math.sqrt(((x - mean) ** 2).sum() / 2)
  half = T975[2] * sd / math.sqrt(3)
  row_a = next(line for line in text.splitlines() if line.startswith("| A |"))
  assert f"{mean:.3f} ± {half:.3f}" in row_a
  # logp of correct responses: first 3 iterations -1.1, -1.2, -1.3; last 3 at -1.5.
  assert f"{-1.5 + 1.2:.3f} ± 0.000" in row_a
  row_b = next(line for line in text.splitlines() if line.startswith("| B |"))
  assert "0.010 (n=1, no CI)" in row_b and "1/1 seeds" in row_b    # 0.1 -> 0.01: collapsed
  assert "0/3 seeds" in row_a
  assert "42.0 (Big-7B)" in row_b and "different scale" in text and "Big-7B on Hard-Bench" in text
  assert (tmp_path / "accuracy.png").stat().st_size > 1000
  assert (tmp_path / "logp_correct.png").is_file()
  loaded = reproduce.load_results(tmp_path)
  assert loaded["summary"]["A"]["train_accuracy"]["n"] == 3
  assert loaded["summary"]["A"]["train_accuracy"]["ci"] == pytest.approx(half, abs=1e-9)


def test_resumed_history_keeps_the_last_record_of_each_step(tmp_path):
  lines = [_record(1, 0.1), _record(2, 0.2), _record(2, 0.3), _record(3, 0.4)]
  (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
  history = reproduce.read_history(tmp_path)
  assert [r["step"] for r in history] == [1, 2, 3] and history[1]["reward/mean"] == 0.3


def test_missing_results_say_how_to_produce_them(tmp_path):
  with pytest.raises(FileNotFoundError, match="launch/reproduce.py --table=llds --scale=cpu"):
    reproduce.load_results(tmp_path / "llds")


# ------------------------------------------------------------------------- end to end, tiny scale


def parity_reward(completion: str, example) -> float:
  """1 when the completion's byte sum is even: a random model is right about half the time."""
  del example
  return float(sum(completion.encode("utf-8", "replace")) % 2 == 0)


@pytest.fixture
def compilation_cache(tmp_path):
  """A persistent compilation cache, as launch/reproduce.py sets up: the second seed's runs reuse
  the first's compiled steps (the same results, checked when it was introduced)."""
  from jax.experimental.compilation_cache import compilation_cache as cc
  keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  old = {k: getattr(jax.config, k) for k in keys}
  jax.config.update(keys[0], str(tmp_path / "jax_cache"))
  jax.config.update(keys[1], 0.0)
  cc.reset_cache()
  yield
  for k, v in old.items():
    jax.config.update(k, v)
  cc.reset_cache()


def _tiny_scale(tokenizer) -> reproduce.Scale:
  """configs/tiny.py as a scale: its differences from base.py (random 2-layer model, 4 prompts
  x 2 samples), 2 iterations, greedy eval at 0 and 2, pass@k of 4 samples."""
  base = _flatten(reproduce.load_config_file("base").to_dict())
  tiny = _flatten(reproduce.load_config_file("tiny").to_dict())
  overrides = {k: v for k, v in tiny.items()
               if base.get(k) != v and not k.startswith("objective.")}
  overrides.update({"model.random_config.vocab_size": len(tokenizer), "train.num_steps": 2,
                    "eval.every_steps": 2, "ckpt.every_steps": 1})
  return reproduce.Scale(model="smollm2", overrides=overrides, seeds=(0, 1),
                         arms=("GRPO", "GRPO+LLDS"),
                         passk=reproduce.PassK(num_prompts=2, n=4, ks=(1, 2, 4), batch_size=2),
                         arm_overrides={"GRPO+LLDS": {"objective.kl_coef": 0.0}},
                         about="tiny random model")


def test_tiny_reproduction_end_to_end_and_resume(tmp_path, compilation_cache):
  del compilation_cache
  tokenizer = byte_tokenizer()
  spec = dataclasses.replace(
      reproduce.get_table("llds"),
      metrics=("train_accuracy", "eval_greedy", "logp_correct", "collapsed", "pass@4"),
      curves=("accuracy", "logp_correct", "eval_accuracy", "passk"))
  scale = _tiny_scale(tokenizer)
  path = reproduce.run_table(spec, scale, str(tmp_path / "r"), tokenizer=tokenizer,
                             reward=parity_reward, scale_name="tiny")
  out = tmp_path / "r" / "llds"
  assert path == out / "table.md"
  text = path.read_text()
  for arm in ("GRPO", "GRPO+LLDS"):
    row = next(line for line in text.splitlines() if line.startswith(f"| {arm} |"))
    assert row.count(" ± ") >= 2, row           # two seeds: mean ± CI
  assert "| initial model |" in text and ".441 (+31.3%) (Qwen2.5-3B-Instruct)" in text
  for curve in ("accuracy", "logp_correct", "eval_accuracy", "passk"):
    assert (out / f"{curve}.png").stat().st_size > 1000, curve
  results = reproduce.load_results(out)
  assert [(r["arm"], r["seed"]) for r in results["runs"]] == [
      ("GRPO", 0), ("GRPO+LLDS", 0), ("GRPO", 1), ("GRPO+LLDS", 1)]
  for r in results["runs"]:
    assert [h["step"] for h in r["history"]] == [0, 1, 2]
    assert set(r["posteval"]["metrics"]) >= {"pass@1", "pass@4", "accuracy/greedy"}
    assert not (out / r["dir"] / "ckpt").exists() and (out / r["dir"] / "done.json").is_file()
  assert "likelihood/correct_token_logp" in results["runs"][0]["history"][1]
  # Same prompts for every arm and seed; seeds differ in their samples.
  configs = [json.loads((out / r["dir"] / "config.json").read_text()) for r in results["runs"]]
  assert len({c["data"]["source"] for c in configs}) == 1
  assert [c["seed"] for c in configs] == [0, 0, 1, 1]
  assert results["initial"]["n"] == 4

  # Started again: every run is read back, nothing retrains.
  before = {r["dir"]: (out / r["dir"] / "metrics.jsonl").read_text() for r in results["runs"]}
  reproduce.run_table(spec, scale, str(tmp_path / "r"), tokenizer=tokenizer,
                      reward=parity_reward, scale_name="tiny")
  assert before == {d: (out / d / "metrics.jsonl").read_text() for d in before}
  # Another budget in the same folder is refused before anything runs.
  with pytest.raises(ValueError, match="another config.*--workdir"):
    reproduce.run_table(spec, scale, str(tmp_path / "r"), tokenizer=tokenizer,
                        reward=parity_reward, extra={"train.num_steps": 3})


def _launch(*args):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, str(ROOT / "launch" / "reproduce.py"), *args],
                        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_launch_prints_the_paper_config_without_running(tmp_path):
  proc = _launch("--table=llds", "--scale=paper", "--print_config", f"--workdir={tmp_path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.count("## arm ") == 4 and "Qwen/Qwen2.5-3B-Instruct" in proc.stdout
  assert re.search(r"prompts_per_step: 512", proc.stdout)
  assert not any(tmp_path.iterdir())
  bad = _launch("--table=lldz")
  assert bad.returncode != 0 and "llds" in bad.stderr and "unlikely" in bad.stderr
