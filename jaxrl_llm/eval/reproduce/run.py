"""`run_table`: every arm x seed of a table through the RL loop, then table.md and the curves.

  table_md = run_table(get_table("llds"), "cpu", "runs/reproduce")

Layout of `<workdir>/<table>/`:
  <arm slug>/seed_<s>/   one run: the loop's metrics.jsonl, tb/, ckpt/ (deleted once the run is
                         done unless keep_checkpoints), config.json, posteval.json (pass@k of the
                         trained policy, when the table has a post-run evaluation), done.json
  initial/posteval.json  pass@k of the initial model (same prompts and sampling)
  table.md, results.json, <curve>.png
A killed reproduction continues where it stopped: finished runs (done.json) are read back, an
unfinished one resumes from its latest checkpoint. A folder written with another config is
refused (a different budget would mix two experiments). The report is rewritten after each run,
so a partial table is there to read while the rest runs.
"""
import json
import logging
import math
import pathlib
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from jaxrl_llm.eval.reproduce import report
from jaxrl_llm.eval.reproduce.configs import arm_config
from jaxrl_llm.eval.reproduce.spec import PassK, Scale, TableSpec


def _config_json(config: ml_collections.ConfigDict) -> str:
  return config.to_json_best_effort(indent=1, sort_keys=True)


def _claim(run_dir: pathlib.Path, config: ml_collections.ConfigDict, write: bool = True
           ) -> None:
  """Checks that the folder holds no run of another config, and (`write`) writes config.json."""
  path = run_dir / "config.json"
  text = _config_json(config)
  if path.is_file():
    if json.loads(path.read_text(encoding="utf-8")) != json.loads(text):
      raise ValueError(
          f"{run_dir} holds a run with another config (see its config.json): pass another "
          "--workdir, or delete that folder to start this run afresh.")
    return
  if write:
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def posteval(model, tokenizer, config: ml_collections.ConfigDict, passk: PassK, reward,
             params=None, mesh=None, seed: int | None = None) -> dict[str, Any]:
  """pass@k (and greedy accuracy) on the first `passk.num_prompts` held-out prompts of the
  config's data, sampled like the training rollouts (same completion budget)."""
  from jaxrl_llm import data, rewards  # pylint: disable=g-import-not-at-top
  from jaxrl_llm import eval as eval_lib  # pylint: disable=g-import-not-at-top
  d = config.data
  source = data.make_source(d.source, split="eval", eval_size=d.eval_size, shuffle=False,
                            num_epochs=1)
  result = eval_lib.evaluate(
      model, tokenizer, source, reward, num_prompts=passk.num_prompts, n=passk.n, ks=passk.ks,
      temperature=passk.temperature, max_new_tokens=config.sampling.max_new_tokens,
      max_prompt_tokens=d.max_prompt_tokens, batch_size=passk.batch_size,
      seed=config.seed if seed is None else seed,
      answer_fn=rewards.AnswerExtractor(tuple(config.reward.extract)),
      timeout_s=config.reward.timeout_s, num_workers=config.reward.num_workers,
      progress=config.log.progress, params=params, mesh=mesh)
  correct = [int(sum(x >= 1.0 for x in r["rewards"])) for r in result.records]
  return {"metrics": result.metrics, "n": passk.n, "correct": correct}


def _reward_fn(config: ml_collections.ConfigDict, reward):
  from jaxrl_llm.training import loop  # pylint: disable=g-import-not-at-top
  if reward is not None:
    return reward
  return loop.REWARD_FNS[config.reward.name](modes=tuple(config.reward.extract))


def _run_one(config: ml_collections.ConfigDict, run_dir: pathlib.Path, *, model, tokenizer,
             reward, passk: PassK | None, keep_checkpoints: bool) -> dict[str, Any]:
  """Trains one arm x seed (or reads it back when done); returns {history, posteval}."""
  from jaxrl_llm import parallel  # pylint: disable=g-import-not-at-top
  from jaxrl_llm.training import loop  # pylint: disable=g-import-not-at-top
  _claim(run_dir, config)
  done = run_dir / "done.json"
  post_path = run_dir / "posteval.json"
  if not done.is_file():
    _, state = loop.train_and_evaluate(config, str(run_dir), model=model, tokenizer=tokenizer,
                                       reward=reward)
    if passk is not None and not post_path.is_file():
      result = posteval(model, tokenizer, config, passk, _reward_fn(config, reward),
                        params=state.params, mesh=parallel.make_mesh(config.mesh))
      post_path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    del state
    done.write_text(json.dumps({"num_steps": config.train.num_steps, "time": time.time()}),
                    encoding="utf-8")
    if not keep_checkpoints:
      shutil.rmtree(run_dir / "ckpt", ignore_errors=True)
  post = (json.loads(post_path.read_text(encoding="utf-8")) if post_path.is_file() else None)
  return {"history": report.read_history(run_dir), "posteval": post}


def _results(spec: TableSpec, scale_name: str, scale: Scale, arms: Sequence[str],
             seeds: Sequence[int], runs: list[dict[str, Any]], initial) -> dict[str, Any]:
  metrics = [m for m in spec.metrics
             if not (m.startswith("pass@") and (scale.passk is None
                                                or int(m[5:]) not in scale.passk.ks))]
  return {
      "table": spec.name, "title": spec.title, "paper": spec.paper, "arxiv": spec.arxiv,
      "spec_ref": spec.spec_ref, "scale": scale_name, "about": scale.about,
      "seeds": list(seeds), "arms": list(arms), "curves": list(spec.curves),
      "metrics": metrics, "headline": spec.headline, "reported_setting": spec.reported_setting,
      "reported": [{"setting": r.setting, "method": r.method, "values": dict(r.values),
                    "arm": r.arm} for r in spec.reported],
      "notes": spec.notes, "runs": runs, "initial": initial,
  }


def prepare(spec: TableSpec, scale: str | Scale, workdir: str, *,
            seeds: Sequence[int] | None = None, extra: Mapping[str, Any] | None = None,
            configs_dir=None):
  """Every check of `run_table` that needs no model: the methods exist, the overrides name real
  keys, every arm x seed config passes `loop.check_config` (its run folder writable), pass@k
  has held-out prompts. Returns (scale, seeds, arms, {(arm name, seed): config})."""
  from jaxrl_llm.training import loop  # pylint: disable=g-import-not-at-top
  scale = spec.scale(scale) if isinstance(scale, str) else scale
  spec.check_runnable(scale)
  seeds = tuple(scale.seeds if seeds is None else seeds)
  if not seeds:
    raise ValueError("no seeds to run: pass at least one (e.g. --seeds=0,1).")
  arms = spec.arms_at(scale)
  out = pathlib.Path(workdir) / spec.name
  configs = {(arm.name, s): arm_config(spec, arm, scale, s, extra=extra,
                                       configs_dir=configs_dir)
             for s in seeds for arm in arms}
  for arm in arms:
    for s in seeds:
      config = configs[(arm.name, s)]
      run_dir = out / arm.slug / f"seed_{s}"
      _claim(run_dir, config, write=False)
      try:
        loop.check_config(config, str(run_dir))
      except ValueError as e:
        raise ValueError(f"table {spec.name!r}, arm {arm.name!r}: {e}") from e
      if scale.passk is not None and not config.data.eval_size:
        raise ValueError(f"table {spec.name!r} evaluates pass@k on held-out prompts: set "
                         "data.eval_size > 0.")
  return scale, seeds, arms, configs


def run_table(spec: TableSpec, scale: str | Scale = "cpu", workdir: str = "runs/reproduce", *,
              seeds: Sequence[int] | None = None, extra: Mapping[str, Any] | None = None,
              model=None, tokenizer=None, reward=None, configs_dir=None,
              keep_checkpoints: bool = False, scale_name: str | None = None,
              log: Callable[[str], None] = logging.info) -> pathlib.Path:
  """Runs every arm of `spec` at `scale` for every seed and writes the report.

  Args:
    spec: the table (`tables.get_table(name)`).
    scale: "cpu", "paper" or a `Scale` (tests use a tiny one).
    workdir: the reproduction goes to `<workdir>/<spec.name>/`.
    seeds: the seeds (default: the scale's). Seed s gives every arm `config.seed = s`; the
      prompts are the same for every arm and seed.
    extra: dotted config overrides for every arm (a smoke run's `{"train.num_steps": 1}`).
    model, tokenizer, reward: as `train_and_evaluate`'s; by default the model is loaded once
      from the configs' `model` section and shared by the arms (each run trains a copy).
    keep_checkpoints: keep each finished run's ckpt/ (default: delete it, the table needs only
      the metrics).
  Returns:
    the path of table.md.
  Raises:
    NotImplementedError: a method of the table has no preset yet.
    ValueError: a bad override, a config that fails `loop.check_config`, or a run folder
      written with another config.
  """
  from jaxrl_llm.training import loop  # pylint: disable=g-import-not-at-top
  name = scale_name or (scale if isinstance(scale, str) else "custom")
  scale, seeds, arms, configs = prepare(spec, scale, workdir, seeds=seeds, extra=extra,
                                        configs_dir=configs_dir)
  out = pathlib.Path(workdir) / spec.name
  first = configs[(arms[0].name, seeds[0])]
  if model is None:
    sections = {_config_json(c.model) for c in configs.values()}
    if len(sections) > 1:
      raise ValueError(f"table {spec.name!r}: the arms name different models; a table "
                       "compares methods on one model.")
    log(f"[{spec.name}] loading {first.model.source}")
    model, tokenizer = loop.load_model(first.model, tokenizer)
  initial = None
  if scale.passk is not None and scale.passk.base:
    path = out / "initial" / "posteval.json"
    if not path.is_file():
      log(f"[{spec.name}] pass@k of the initial model")
      result = posteval(model, tokenizer, first, scale.passk, _reward_fn(first, reward),
                        seed=seeds[0])
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    initial = json.loads(path.read_text(encoding="utf-8"))
  runs: list[dict[str, Any]] = []
  table_md = report.write_report(
      _results(spec, name, scale, [a.name for a in arms], seeds, runs, initial), out)
  total = len(configs)
  for i, s in enumerate(seeds):
    for j, arm in enumerate(arms):
      t0 = time.perf_counter()
      log(f"[{spec.name}] run {i * len(arms) + j + 1}/{total}: {arm.name}, seed {s}")
      run_dir = out / arm.slug / f"seed_{s}"
      result = _run_one(configs[(arm.name, s)], run_dir, model=model, tokenizer=tokenizer,
                        reward=reward, passk=scale.passk, keep_checkpoints=keep_checkpoints)
      runs.append({"arm": arm.name, "seed": s, "dir": str(run_dir.relative_to(out)), **result})
      table_md = report.write_report(
          _results(spec, name, scale, [a.name for a in arms], seeds, runs, initial), out)
      log(f"[{spec.name}] {arm.name}, seed {s}: {time.perf_counter() - t0:.0f} s")
  return table_md


def estimate_minutes(spec: TableSpec, scale: Scale, seeds: Sequence[int] | None = None,
                     configs_dir=None) -> float:
  """A rough wall-clock estimate on 2 CPU cores with SmolLM2-135M (64-token completions), from
  measured costs: 0.4 s per sampled row of a rollout batch, 0.8 s per row per pass of the train
  step (+30 % with a reference model), 15 s per greedy eval of 64 prompts, 60 s per run to
  compile, and for pass@k 0.25 s per sample (batches of 128 rows) + 4 s per greedy call."""
  seeds = tuple(scale.seeds if seeds is None else seeds)

  def passk_s(passk: PassK, tokens: float) -> float:
    calls = math.ceil(passk.num_prompts / passk.batch_size)
    return (0.25 * passk.num_prompts * passk.n + 4 * calls) * tokens

  total = 0.0
  for arm in spec.arms_at(scale):
    c = arm_config(spec, arm, scale, seeds[0], configs_dir=configs_dir)
    rows = c.train.prompts_per_step * c.sampling.n
    tokens = c.sampling.max_new_tokens / 64
    rounds = 1 + 0.5 * (c.train.max_sampling_rounds - 1)
    ref = 1.3 if c.objective.get("kl_coef", 0.0) or c.objective.name == "owpo" else 1.0
    per_iter = rows * tokens * (0.4 * rounds + 0.8 * c.train.num_updates * ref)
    evals = (c.train.num_steps // c.eval.every_steps + 1) if c.eval.every_steps else 0
    per_run = c.train.num_steps * per_iter + evals * 15 * c.eval.num_prompts / 64 + 60
    if scale.passk is not None:
      per_run += passk_s(scale.passk, tokens)
    total += per_run * len(seeds)
  if scale.passk is not None and scale.passk.base:
    total += passk_s(scale.passk, 1.0)
  return total / 60
