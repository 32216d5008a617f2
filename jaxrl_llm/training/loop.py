"""The RL loop: prompts -> sample -> rewards -> rollout phase -> mu train steps -> log, ckpt, eval.

  history = train_and_evaluate(config, workdir)      # config: configs/base.py's ConfigDict

One iteration, for `train.num_steps` iterations:
  1. `train.prompts_per_step` prompts from the data source (chat template applied, long ones
     dropped and counted);
  2. `sampling.n` completions each, sampled with the *current* parameters on the mesh;
  3. rewards on worker processes with a per-sample timeout (`rewards.RewardRunner`: a crash or a
     hang scores 0 and is counted);
  4. the rollout phase once on the whole batch (`training.rollout`: reference logp, recomputed
     old logp, advantages, group filters);
  5. `train.num_updates` passes, each over `train.num_minibatches` shuffled minibatches of whole
     groups (of shuffled rows when groups differ in size: `batch.ragged_minibatches`), one
     jitted `train_step` each;
  6. one line of metrics appended to `<workdir>/metrics.jsonl` (and TensorBoard scalars in
     `<workdir>/tb` with `log.tensorboard`), a progress bar with `log.progress`;
  7. every `ckpt.every_steps` iterations and at the end, a checkpoint of the state and the data
     cursor in `<workdir>/ckpt` (keep `ckpt.keep`). A run started in a workdir that holds one
     resumes from it: same keys, same data, so it continues as if it had not stopped. At the
     end (`ckpt.export_hf`) the policy is also written as a Hugging Face folder `<workdir>/hf`;
  8. every `eval.every_steps` iterations, at the end, and (`eval.at_start`) before the first
     update: greedy accuracy on the first `eval.num_prompts` held-out prompts (`data.eval_size`
     items of the source set aside from training), logged as `eval/*` in the same JSONL.
With `train.max_sampling_rounds` > 1, steps 1-3 repeat (DAPO's dynamic sampling, the half that
changes the batch size and so cannot live in jit) until `prompts_per_step` groups with unequal
rewards are collected; short of that, uniform groups fill the batch (the objective's in-jit filter
then masks them). `train.ref_refresh_steps` > 0 copies the policy into the reference every that
many iterations. An objective with a `reference_refresh` transform (OWPO's ratchet) gets the same
copy right after each optimizer step its state marks as due (`objectives.refresh_due`, read on
device: no extra host sync); `ref/refreshed` counts an iteration's refreshes of either kind.

Host/device traffic: the loop synchronises once per iteration anyway (the sampled tokens must be
decoded to text for the rewards), so metrics are pulled right after the updates rather than one
step late. In a multi-process run the completions are gathered to every process
(`multihost_utils.process_allgather`), which scores all rows; the train step's metrics come back
replicated.
"""
import dataclasses
import json
import logging
import os
import tempfile
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorboardX
import tqdm

from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxrl_llm import data, models, parallel, rewards, sampling
from jaxrl_llm import eval as eval_lib
from jaxrl_llm.objectives import LossContext, RefreshState, presets, refresh_due
from jaxrl_llm.training import optim
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training.batch import RolloutBatch, group_minibatches, informative_groups
from jaxrl_llm.training.checkpoint import Checkpointer
from jaxrl_llm.training.rollout import jit_rollout
from jaxrl_llm.training.state import TrainState
from jaxrl_llm.training.step import init_train_state, jit_train_step

REWARD_FNS = {"reasoning_gym": rewards.reasoning_gym_reward,
              "math_verify": rewards.math_verify_reward,
              "exact_match": rewards.exact_match_reward}


def load_model(section: ml_collections.ConfigDict, tokenizer: Any = None
               ) -> tuple[models.Transformer, Any]:
  """(model, tokenizer) of the `model` section: pretrained, or random (`random_init`) with the
  given tokenizer or else the tokenizer of `source`."""
  if not section.random_init:
    model, loaded = models.from_pretrained(section.source, dtype=section.dtype)
    return model, tokenizer or loaded
  if tokenizer is None:
    from transformers import AutoTokenizer  # pylint: disable=g-import-not-at-top (slow import)
    if section.source in models.EMBEDDED_MODELS:
      path = models.embedded_model_path(section.source)
      tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    else:
      tokenizer = AutoTokenizer.from_pretrained(section.source)
  arch = section.random_config.to_dict()
  arch.setdefault("eos_token_id", tokenizer.eos_token_id)
  arch.setdefault("pad_token_id", tokenizer.pad_token_id)
  config = models.ModelConfig(**arch)
  if len(tokenizer) > config.vocab_size:
    raise ValueError(f"model.random_config.vocab_size={config.vocab_size} is smaller than the "
                     f"tokenizer's {len(tokenizer)} tokens: raise it.")
  params = models.init_params(config, jax.random.key(0),
                              models.loading.resolve_dtype(section.dtype))
  return models.Transformer(config, params), tokenizer


def check_workdir(workdir: str) -> None:
  """Creates `workdir` and checks that files can be written in it (a clear error, not a failure
  at the first checkpoint)."""
  try:
    os.makedirs(workdir, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=workdir, prefix=".write_check_"):
      pass
  except OSError as e:
    raise ValueError(f"workdir {workdir!r} is not writable ({e.strerror or e}): pass "
                     "--workdir=<a folder you can write> or fix its permissions.") from e


def check_config(config: ml_collections.ConfigDict, workdir: str | None = None):
  """Checks what a run needs before anything slow happens; returns (objective, optimizer, mesh).

  Raises ValueError naming the key and the fix: unknown preset or preset argument, unknown reward
  or extraction mode, unknown hook or hook argument, an objective input no configured hook
  provides, a mesh that does not divide the devices, a batch that does not split into
  groups x batch shards x micro-batches or minibatches of whole groups, an unwritable workdir.
  """
  objective = presets.build(config.objective)
  optimizer = optim.from_config(config.optim)
  if config.reward.name not in REWARD_FNS:
    raise ValueError(f"unknown reward.name {config.reward.name!r}; valid: {sorted(REWARD_FNS)}.")
  rewards.AnswerExtractor(tuple(config.reward.extract))   # unknown modes fail here
  mesh = parallel.make_mesh(config.mesh)
  t, g = config.train, config.sampling.n
  p = t.prompts_per_step
  parallel.check_batch(p * g, g, mesh)
  if p % t.num_minibatches:
    raise ValueError(f"train.prompts_per_step={p} does not split into train.num_minibatches="
                     f"{t.num_minibatches} minibatches of whole groups.")
  parallel.check_batch(p // t.num_minibatches * g, g, mesh, t.num_micro_batches)
  try:
    models.remat_policy(t.remat)
  except ValueError as e:
    raise ValueError(f"train.remat: {e}") from None
  hooks = hooks_lib.build_hooks(config.get("hooks"))
  hooks_lib.check_requirements(objective.requires, hooks)
  if t.max_sampling_rounds > 1:
    changing = [h.name for h in hooks if type(h).expand is not hooks_lib.RolloutHook.expand
                or type(h).counts is not hooks_lib.RolloutHook.counts]
    if changing:
      raise ValueError(f"train.max_sampling_rounds={t.max_sampling_rounds} (dynamic sampling) "
                       f"does not combine with hooks that change what is sampled ({changing}): "
                       "set train.max_sampling_rounds=1.")
  if config.eval.every_steps and not config.data.eval_size:
    raise ValueError("eval.every_steps > 0 needs held-out prompts: set data.eval_size > 0 "
                     "(or eval.every_steps=0 for no periodic eval).")
  if workdir is not None:
    check_workdir(workdir)
  return objective, optimizer, mesh


def _sources(section: ml_collections.ConfigDict):
  """(train source, eval-source factory or None) of the `data` section."""
  if not section.eval_size:
    return data.make_source(section.source), None
  train = data.make_source(section.source, split="train", eval_size=section.eval_size)
  return train, lambda: data.make_source(section.source, split="eval",
                                         eval_size=section.eval_size, shuffle=False,
                                         num_epochs=1)


def _host(x) -> np.ndarray:
  """A (possibly multi-process) array as a NumPy array on every process."""
  if jax.process_count() > 1:
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def _empty_batch(rows: int, width: int, group_size: int) -> RolloutBatch:
  """Zeros of the batch's shape: enough for `objective.init` (shapes, not values)."""
  ctx = LossContext.create(mask=jnp.zeros((rows, width)), rewards=jnp.zeros((rows,)),
                           old_logp=jnp.zeros((rows, width)), group_size=group_size)
  return RolloutBatch(tokens=jnp.zeros((rows, width + 1), jnp.int32),
                      attention_mask=jnp.zeros((rows, width + 1), jnp.int32), ctx=ctx,
                      prompt_len=1)


def has_reference_refresh(objective_state: Any) -> bool:
  """Whether the objective holds a `reference_refresh` (OWPO's ratchet) anywhere in its state."""
  leaves = jax.tree.leaves(objective_state, is_leaf=lambda x: isinstance(x, RefreshState))
  return any(isinstance(x, RefreshState) for x in leaves)


def refresh_reference(state: TrainState) -> tuple[TrainState, jax.Array]:
  """π_ref ← π_θ when the objective's `reference_refresh` state says so now. Pure; jit it.

  Call it after every optimizer step: `refresh_due` is true in the state the step at which it
  fires (`ctx.step` a positive multiple of K) returns, so the reference becomes the policy right
  after that update, and the rollout of the next batch scores `ref_logp` with it.
  Returns (state, 1.0 if it refreshed else 0.0).
  """
  due = refresh_due(state.objective_state)
  ref = jax.lax.cond(due, lambda p, r: p, lambda p, r: r, state.params, state.ref_params)
  return state.replace(ref_params=ref), due.astype(jnp.float32)


def likelihood_metrics(logp: np.ndarray, mask: np.ndarray, rewards: np.ndarray,
                       threshold: float = 1.0) -> dict[str, float]:
  """Log-likelihood of the iteration's samples under the policy that sampled them, split by
  correctness (reward >= `threshold`): `likelihood/correct_token_logp` (mean over correct rows of
  their mean per-token logp), `likelihood/correct_seq_logp` (mean summed logp) and
  `likelihood/incorrect_token_logp`. A split with no rows is left out. LLDS's curve: the
  likelihood of correct responses over training (arXiv 2512.04220)."""
  mask = mask.astype(np.float64)
  seq = (logp * mask).sum(-1)
  token = seq / np.maximum(mask.sum(-1), 1.0)
  correct = rewards >= threshold
  out = {}
  if correct.any():
    out["likelihood/correct_token_logp"] = float(token[correct].mean())
    out["likelihood/correct_seq_logp"] = float(seq[correct].mean())
  if (~correct).any():
    out["likelihood/incorrect_token_logp"] = float(token[~correct].mean())
  return out


def _mean_dicts(dicts: list[dict[str, Any]]) -> dict[str, float]:
  return {k: float(np.mean([float(d[k]) for d in dicts])) for k in dicts[0]}


def _sample_and_score(model, tokenizer, source, runner, params, mesh, scfg, num_prompts: int,
                      max_rounds: int, key, hooks=(), env_kwargs=None
                      ) -> "hooks_lib.HostBatch":
  """Samples `num_prompts` groups, scores them and runs the rollout hooks; with `max_rounds` > 1,
  over-samples until that many groups have unequal rewards. Returns the host batch (its
  `metrics` include the sampling and scoring times)."""
  g = scfg.n
  kept, spare = [], []          # host batches of selected whole groups
  num_kept = 0
  metrics: dict[str, float] = {"time/sample": 0.0, "time/score": 0.0}
  for r in range(max(1, max_rounds)):
    t0 = time.perf_counter()
    encoded = [next(source) for _ in range(num_prompts)]
    env = hooks_lib.HookEnv(model=model, tokenizer=tokenizer, params=params, mesh=mesh,
                            sampling_config=scfg, key=jax.random.fold_in(key, 10_000 + r),
                            score_fn=lambda texts, examples: runner.score(texts, examples).rewards,
                            **(env_kwargs or {}))
    for hook in hooks:
      encoded = hook.expand(encoded, env)
    counts = next((c for c in (h.counts(encoded, g, env) for h in hooks) if c is not None), None)
    if counts is None:
      counts = [g] * len(encoded)
      comps = sampling.sample(model, [e.tokens for e in encoded], jax.random.fold_in(key, r),
                              scfg, params=params, mesh=mesh)
    else:
      counts = [int(c) for c in counts]
      if sum(counts) != len(encoded) * g or min(counts) < 0:
        raise ValueError(f"a hook's counts {counts} must be >= 0 and sum to {len(encoded) * g} "
                         f"(prompts x sampling.n), so the batch keeps its shape.")
      encoded = [e for e, c in zip(encoded, counts) if c > 0]
      counts = [c for c in counts if c > 0]
      comps = sampling.sample(model, [e.tokens for e, c in zip(encoded, counts) for _ in range(c)],
                              jax.random.fold_in(key, r), dataclasses.replace(scfg, n=1),
                              params=params, mesh=mesh)
    group_ids = np.repeat(np.arange(len(counts)), counts).astype(np.int32)
    host_comps = comps.replace(tokens=_host(comps.tokens), lengths=_host(comps.lengths))
    t1 = time.perf_counter()
    texts = hooks_lib.decode(tokenizer, host_comps)
    examples = [encoded[k].example for k in group_ids]
    scored = runner.score(texts, examples)
    metrics["time/sample"] += t1 - t0
    metrics["time/score"] += time.perf_counter() - t1
    if r == 0:
      metrics.update({k: float(v) for k, v in scored.metrics.items()})
    batch = hooks_lib.HostBatch(completions=comps, rewards=scored.rewards, examples=examples,
                                texts=texts, group_ids=group_ids, prompts=list(encoded),
                                answers=list(scored.answers))
    t2 = time.perf_counter()
    for hook in hooks:
      batch = hook.process(batch, env).validate()
    if hooks:
      metrics["time/hooks"] = metrics.get("time/hooks", 0.0) + time.perf_counter() - t2
    if r == 0:
      metrics.update(batch.metrics)
    if max_rounds <= 1:
      batch.metrics = metrics
      return batch
    good = informative_groups(batch.rewards, group_ids=batch.group_ids)
    for keep, out in ((good, kept), (~good, spare)):
      groups = np.flatnonzero(keep)
      if groups.size:
        out.append(batch.take(np.flatnonzero(np.isin(batch.group_ids, groups))))
    num_kept += int(good.sum())
    if num_kept >= num_prompts:
      break
  batch = hooks_lib.HostBatch.concat(kept + spare)
  rows = np.flatnonzero(batch.group_ids < num_prompts)
  batch = batch.take(rows)
  metrics["sampling/rounds"] = float(r + 1)
  metrics["sampling/kept_frac"] = min(num_kept, num_prompts) / num_prompts
  batch.metrics = metrics
  return batch


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       model: models.Transformer | None = None, tokenizer: Any = None,
                       reward: Any = None) -> tuple[list[dict[str, float]], Any]:
  """Runs RL iterations up to `config.train.num_steps` (resuming from the workdir's latest
  checkpoint); returns the metrics of the iterations it ran (also appended to metrics.jsonl) and
  the final TrainState.

  `model`/`tokenizer` override the `model` section (a tokenizer alone goes with a random model);
  `reward` (a reward function or `rewards.weighted_sum` mapping) overrides the `reward` section's
  verifier.
  """
  objective, optimizer, mesh = check_config(config, workdir)
  t = config.train
  if model is None:
    model, tokenizer = load_model(config.model, tokenizer)
  scfg = sampling.SamplingConfig(**config.sampling.to_dict())
  g, p = scfg.n, t.prompts_per_step

  key = jax.random.key(config.seed)
  params = model.params()
  ref_params = (jax.tree.map(jnp.copy, params) if "ref_logp" in objective.requires else None)
  obj_state = objective.init(_empty_batch(p * g, scfg.max_new_tokens, g).ctx)
  refreshing = has_reference_refresh(obj_state)
  if refreshing and ref_params is None:
    raise ValueError("the objective has a reference_refresh (OWPO's ratchet) but no transform "
                     "reads ref_logp, so there is no reference to refresh: add one that does "
                     "(owpo_weights, kl_penalty) or drop reference_refresh.")
  state, shardings = init_train_state(params, optimizer, jax.random.fold_in(key, 1), mesh,
                                      objective_state=obj_state, ref_params=ref_params)
  step_fn = jit_train_step(mesh, shardings, model_config=model.config, objective=objective,
                           optimizer=optimizer, num_micro_batches=t.num_micro_batches,
                           temperature=scfg.temperature, chunk_size=t.chunk_size, remat=t.remat)
  refresh_fn = None
  if refreshing:
    refresh_fn = jax.jit(refresh_reference, out_shardings=(shardings, NamedSharding(mesh, P())),
                         donate_argnums=(0,))
  roll = None
  train_source, eval_source = _sources(config.data)
  source = data.TokenizedSource(train_source, tokenizer, config.data.max_prompt_tokens)
  ckpt = Checkpointer(os.path.join(workdir, "ckpt"), keep=config.ckpt.keep)
  start = 0
  restored = ckpt.restore_latest(state, shardings)
  if restored is not None:
    start, state, extra = restored
    source.restore(extra["data"])
  if reward is None:
    reward = REWARD_FNS[config.reward.name](modes=tuple(config.reward.extract))
  hooks = hooks_lib.build_hooks(config.get("hooks"))
  if restored is not None:
    for hook in hooks:
      hook.restore(extra.get("hooks", {}).get(hook.name, {}))
  # Hooks whose counts make groups of unequal size most iterations (Knapsack RL) declare it.
  counting = any(h.uneven_counts for h in hooks)
  answer_fn = rewards.AnswerExtractor(tuple(config.reward.extract))
  env_kwargs = dict(answer_fn=answer_fn, step=0,
                    max_prompt_tokens=config.data.max_prompt_tokens)

  def run_eval(step: int) -> dict[str, float]:
    e = config.eval
    result = eval_lib.evaluate(
        model, tokenizer, eval_source(), reward, num_prompts=e.num_prompts, n=0,
        max_new_tokens=e.max_new_tokens or scfg.max_new_tokens,
        max_prompt_tokens=config.data.max_prompt_tokens, batch_size=e.batch_size,
        seed=config.seed + step, answer_fn=rewards.AnswerExtractor(tuple(config.reward.extract)),
        timeout_s=config.reward.timeout_s, num_workers=config.reward.num_workers,
        progress=False, params=state.params, mesh=mesh)
    return {f"eval/{k.replace('/', '_')}": v for k, v in result.metrics.items()}

  history = []
  writer = (tensorboardX.SummaryWriter(os.path.join(workdir, "tb")) if config.log.tensorboard
            else None)
  bar = tqdm.tqdm(range(start, t.num_steps), initial=start, total=t.num_steps, desc="rl",
                  disable=not config.log.progress, dynamic_ncols=True)
  with rewards.RewardRunner(reward, timeout_s=config.reward.timeout_s,
                            num_workers=config.reward.num_workers,
                            answer_fn=answer_fn if any(h.needs_answers for h in hooks) else None
                            ) as runner, \
       open(os.path.join(workdir, "metrics.jsonl"), "a", encoding="utf-8") as log:

    def write(record: dict[str, float]) -> None:
      log.write(json.dumps(record) + "\n")
      log.flush()
      if writer is not None:
        for k, v in record.items():
          writer.add_scalar(k, v, record["step"])

    evaluating = eval_source is not None and config.eval.every_steps > 0
    if evaluating and config.eval.at_start and start == 0 and t.num_steps > 0:
      record = {"step": 0, "train_steps": 0, **run_eval(0)}
      history.append(record)
      write(record)
    for it in bar:
      t0 = time.perf_counter()
      env_kwargs["step"] = it
      host = _sample_and_score(
          model, tokenizer, source, runner, state.params, mesh, scfg, p, t.max_sampling_rounds,
          jax.random.fold_in(key, 2 * it), hooks=hooks, env_kwargs=env_kwargs)
      comps, scores, sampling_metrics = host.completions, host.rewards, host.metrics
      lengths = _host(comps.lengths)
      t2 = time.perf_counter()
      batch = hooks_lib.to_rollout_batch(host, step=state.step)
      if not t.share_prompts:
        batch = batch.replace(shared_prompts=False)
      if counting and batch.ctx.group_size is not None:
        # Equal groups take the ragged batches' explicit-group_ids form (same ids, same
        # num_groups), so the rollout phase and the train step compile once for both.
        batch = batch.replace(ctx=batch.ctx.replace(group_size=None))
      if roll is None:
        roll = jit_rollout(mesh, state, batch, model_config=model.config, objective=objective,
                           temperature=scfg.temperature,
                           recompute_old_logp=t.recompute_old_logp, chunk_size=t.chunk_size)
      state, batch, rollout_metrics = roll(state, batch)
      train_metrics, refreshed = [], []
      for u in range(t.num_updates):
        shuffle = jax.random.fold_in(key, 2 * it + 1)
        for mb in group_minibatches(batch, t.num_minibatches, jax.random.fold_in(shuffle, u)):
          state, m = step_fn(state, mb)
          train_metrics.append(m)
          if refresh_fn is not None:
            state, r = refresh_fn(state)
            refreshed.append(r)
      train_metrics = _mean_dicts(jax.device_get(train_metrics))
      num_refreshed = float(np.sum(jax.device_get(refreshed))) if refreshed else 0.0
      refresh = t.ref_refresh_steps and (it + 1) % t.ref_refresh_steps == 0
      if state.ref_params is not None and refresh:
        state = state.replace(ref_params=jax.tree.map(jnp.copy, state.params))
        num_refreshed += 1.0
      t3 = time.perf_counter()
      record = {"step": it + 1, "train_steps": int(state.step),
                **{k: float(v) for k, v in jax.device_get(rollout_metrics).items()},
                **{f"train/{k}": v for k, v in train_metrics.items()},
                **sampling_metrics,
                **source.metrics(),
                **likelihood_metrics(_host(comps.logp), _host(comps.mask), scores),
                "completion/mean_length": float(lengths.mean()),
                "completion/truncated_frac": float(_host(comps.truncated).mean()),
                "time/train": t3 - t2,
                "tokens_per_s": float(lengths.sum()) / max(t3 - t0, 1e-9)}
      if state.ref_params is not None:
        record["ref/refreshed"] = num_refreshed
      if evaluating and ((it + 1) % config.eval.every_steps == 0 or it + 1 == t.num_steps):
        t4 = time.perf_counter()
        record.update(run_eval(it + 1))
        record["time/eval"] = time.perf_counter() - t4
      history.append(record)
      write(record)
      bar.set_postfix_str(_progress(record))
      if (it + 1) % config.ckpt.every_steps == 0 or it + 1 == t.num_steps:
        ckpt.save(it + 1, state, {"data": source.state(),
                                  "hooks": {h.name: h.state() for h in hooks}})
  bar.close()
  if writer is not None:
    writer.close()
  ckpt.wait()
  ckpt.close()
  if config.ckpt.export_hf and history:
    export_hf(model, tokenizer, state.params, os.path.join(workdir, "hf"))
  if history:
    logging.info("%s", _summary(history))
    if config.log.progress:
      print(_summary(history), flush=True)
  return history, state


def export_hf(model: models.Transformer, tokenizer: Any, params: Any, folder: str) -> None:
  """Writes the trained policy as a Hugging Face folder (safetensors, config, tokenizer) that
  transformers, `models.from_pretrained` and `launch/eval.py --model=<folder>` load. All
  processes gather the parameters; process 0 writes."""
  host_params = jax.tree.map(_host, params)
  if jax.process_index() == 0:
    models.save_pretrained(models.Transformer(model.config, host_params), tokenizer, folder)
    logging.info("exported the policy to %s", folder)


def _progress(r: dict[str, float]) -> str:
  acc = r.get("reward/accuracy")
  return (f"reward {r['reward/mean']:.3f}" + (f" acc {acc:.3f}" if acc is not None else "")
          + f" len {r['completion/mean_length']:.1f} {r['tokens_per_s']:.0f} tok/s"
          f" | sample {r['time/sample']:.1f}s score {r['time/score']:.1f}s"
          f" train {r['time/train']:.1f}s")


def _summary(history: list[dict[str, float]]) -> str:
  iterations = [r for r in history if "reward/mean" in r]
  evals = [r for r in history if "eval/accuracy_greedy" in r]
  if not iterations:
    return "done: no iterations run"
  first, last = iterations[0], iterations[-1]
  text = (f"done: iterations {first['step']}..{last['step']} ({last['train_steps']} optimizer "
          f"steps, {last.get('train/skipped', 0):.0f} skipped); reward {first['reward/mean']:.3f}"
          f" -> {last['reward/mean']:.3f}; mean length {last['completion/mean_length']:.1f}")
  if evals:
    text += (f"; held-out greedy accuracy {evals[0]['eval/accuracy_greedy']:.3f} (step "
             f"{evals[0]['step']}) -> {evals[-1]['eval/accuracy_greedy']:.3f} (step "
             f"{evals[-1]['step']})")
  return text
