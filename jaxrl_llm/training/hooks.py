"""Rollout hooks: host-side steps of the RL loop that act before the loss.

Some methods change what is sampled or scored rather than the loss: how many samples each prompt
gets (Knapsack RL), extra prompts (Co-Reward's rephrasings), rewards computed from the group's own
answers (majority vote), extra rows (Critique-GRPO's refinements), per-row inputs that need text or
a model call (answer ids, strata, prover values). They run on the host, between the sampler and the
jitted rollout phase, as `RolloutHook`s:

  prompts = [next(source) for _ in range(P)]            # data.EncodedPrompt
  for hook in hooks: prompts = hook.expand(prompts, env)
  counts = the first hook.counts(prompts, n, env) that is not None, else [n] * len(prompts)
  sample (prompt i repeated counts[i] times), decode, score with the reward runner
  batch = HostBatch(...)                                 # rows group-major, groups contiguous
  for hook in hooks: batch = hook.process(batch, env)
  to_rollout_batch(batch) -> RolloutBatch                # extras -> ctx.extras

A config turns a hook on with a section `config.hooks.<name>` holding its constructor's arguments
(`check_hooks` checks them against the signature). Hooks run in increasing `order`. A hook's
`provides` names the `ctx.extras` fields it writes; an objective whose `requires` names a host-side
field that no configured hook provides fails before the run starts, naming the hook to turn on.
Host state a hook keeps across iterations (Knapsack's success history) is saved with the checkpoint
through `state()` / `restore()`.
"""
import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxrl_llm import sampling
from jaxrl_llm.data import prompts as prompts_lib
from jaxrl_llm.objectives import LossContext
from jaxrl_llm.training.batch import RolloutBatch, concat_completions, prompts_shared, take_rows

# Per-row inputs produced on the host (spec/baselines_and_more.md §0.2) that some hook must provide
# when an objective requires them. Forward-pass fields (logp, entropy, hidden, ref_logp, sr_logp,
# waad, fai) are the trainer's and are not listed.
HOST_FIELDS = ("answer_id", "pair_group", "stratum", "step_id", "step_value", "proc_score",
               "format_reward", "offpolicy")
# Host extras laid out over the completion's tokens ([B, T]): `to_rollout_batch` fits them to the
# completion width (fill −1 for ints, 0 for floats). Other 2-D extras ([B, S]) are left as they are.
TOKEN_FIELDS = ("step_id",)


@dataclasses.dataclass
class HostBatch:
  """One iteration's scored samples on the host, before they become a `RolloutBatch`.

  Rows are group-major and groups contiguous: `group_ids` is non-decreasing, 0..num_groups-1.
  Groups may differ in size (Knapsack RL); `group_size` is then None.

  Attributes:
    completions: the sampler's output for the B rows (`prompt_tokens` per row).
    rewards: float32 [B], the verifier's rewards until a hook replaces them.
    examples: [B] the data example of each row's prompt.
    texts: [B] the decoded completions.
    group_ids: int32 [B].
    prompts: [num_groups] the `data.EncodedPrompt` of each group.
    answers: [B] each completion's extracted (canonical) final answer, None where none was found.
    extras: per-row arrays, [B] or [B, T], that become `ctx.extras` under the same names.
    metrics: scalars logged as they are (`"<hook>/<quantity>"`).
  """
  completions: sampling.Completions
  rewards: np.ndarray
  examples: list
  texts: list
  group_ids: np.ndarray
  prompts: list
  answers: list = dataclasses.field(default_factory=list)
  extras: dict = dataclasses.field(default_factory=dict)
  metrics: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    self.rewards = np.asarray(self.rewards, np.float32)
    self.group_ids = np.asarray(self.group_ids, np.int32)
    if not self.answers:
      self.answers = [None] * self.rewards.shape[0]
    self.validate()

  def validate(self) -> "HostBatch":
    """Raises ValueError if the fields disagree (row counts, group layout, extras' rows)."""
    b = self.rewards.shape[0]
    lengths = {"rewards": b, "examples": len(self.examples), "texts": len(self.texts),
               "group_ids": self.group_ids.shape[0], "answers": len(self.answers),
               "completions": int(self.completions.tokens.shape[0])}
    if len(set(lengths.values())) != 1:
      raise ValueError(f"HostBatch fields disagree on the number of rows: {lengths}")
    if b and (np.any(np.diff(self.group_ids) < 0) or self.group_ids[0] != 0
              or np.any(np.diff(self.group_ids) > 1)):
      raise ValueError("HostBatch.group_ids must be non-decreasing 0..num_groups-1 (groups "
                       f"contiguous, none empty); got {self.group_ids.tolist()}")
    if b and len(self.prompts) != self.num_groups:
      raise ValueError(f"{len(self.prompts)} prompts for {self.num_groups} groups")
    for name, x in self.extras.items():
      if np.shape(x)[:1] != (b,):
        raise ValueError(f"extras[{name!r}] has shape {np.shape(x)}; per-row extras need a leading "
                         f"axis of {b} rows")
    return self

  @property
  def batch_size(self) -> int:
    return int(self.rewards.shape[0])

  @property
  def num_groups(self) -> int:
    return int(self.group_ids[-1]) + 1 if self.batch_size else 0

  @property
  def group_sizes(self) -> np.ndarray:
    """int [num_groups]: rows per group."""
    return np.bincount(self.group_ids, minlength=self.num_groups)

  @property
  def group_size(self) -> Optional[int]:
    """The common group size, or None when groups differ in size."""
    sizes = self.group_sizes
    return int(sizes[0]) if sizes.size and np.all(sizes == sizes[0]) else None

  def group_rows(self, k: int) -> np.ndarray:
    """The row indices of group `k`."""
    return np.flatnonzero(self.group_ids == k)

  def take(self, rows: Sequence[int]) -> "HostBatch":
    """The batch restricted to `rows` (in that order; whole groups keep their rows contiguous);
    groups are renumbered 0.. in order of first appearance."""
    self.validate()
    rows = np.asarray(rows, np.int64)
    old = self.group_ids[rows]
    _, first, inverse = np.unique(old, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    new_ids = rank[inverse].astype(np.int32)
    order = [int(g) for g in old[np.sort(first)]]
    return HostBatch(
        completions=take_rows(self.completions, rows), rewards=self.rewards[rows],
        examples=[self.examples[i] for i in rows], texts=[self.texts[i] for i in rows],
        group_ids=new_ids, prompts=[self.prompts[g] for g in order],
        answers=[self.answers[i] for i in rows],
        extras={k: np.asarray(v)[rows] for k, v in self.extras.items()},
        metrics=dict(self.metrics))

  @staticmethod
  def concat(parts: Sequence["HostBatch"]) -> "HostBatch":
    """The rows of `parts` one after another (group ids offset); extras must match in names."""
    names = set(parts[0].extras)
    if any(set(p.extras) != names for p in parts):
      raise ValueError("HostBatch.concat: the parts' extras differ in names")
    offsets = np.cumsum([0] + [p.num_groups for p in parts[:-1]])
    extras = {}
    for k in names:
      arrays = [np.asarray(p.extras[k]) for p in parts]
      if arrays[0].ndim == 2:   # [B, T]: pad to the widest
        width = max(a.shape[1] for a in arrays)
        fill = -1 if np.issubdtype(arrays[0].dtype, np.integer) else 0
        arrays = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill)
                  for a in arrays]
      extras[k] = np.concatenate(arrays)
    metrics = {}
    for p in parts:
      metrics.update(p.metrics)
    return HostBatch(
        completions=concat_completions([p.completions for p in parts]),
        rewards=np.concatenate([p.rewards for p in parts]),
        examples=[e for p in parts for e in p.examples], texts=[t for p in parts for t in p.texts],
        group_ids=np.concatenate([p.group_ids + o for p, o in zip(parts, offsets)]),
        prompts=[q for p in parts for q in p.prompts],
        answers=[a for p in parts for a in p.answers], extras=extras, metrics=metrics)


def to_rollout_batch(batch: HostBatch, *, step: Any = 0) -> RolloutBatch:
  """The `RolloutBatch` of a host batch: equal groups keep `group_size`; groups of unequal size
  become explicit `group_ids` with a static `num_groups` (segment statistics); extras go to
  `ctx.extras` as jax arrays (`TOKEN_FIELDS` fitted to the completion width)."""
  c = batch.validate().completions
  tokens, attention_mask = c.sequences()
  mask = jnp.asarray(c.mask, jnp.float32)
  width = mask.shape[1]
  extras = {"sampler_logp": jnp.asarray(c.logp, jnp.float32),
            "truncated": jnp.asarray(c.truncated),
            "lengths": jnp.asarray(c.lengths, jnp.float32)}
  for k, v in batch.extras.items():
    v = np.asarray(v)
    if k in TOKEN_FIELDS and v.ndim == 2 and v.shape[1] != width:
      if v.shape[1] > width:
        v = v[:, :width]
      else:
        fill = -1 if np.issubdtype(v.dtype, np.integer) else 0
        v = np.pad(v, ((0, 0), (0, width - v.shape[1])), constant_values=fill)
    extras[k] = jnp.asarray(v)
  g = batch.group_size
  groups = (dict(group_size=g) if g is not None else
            dict(group_ids=jnp.asarray(batch.group_ids), num_groups=batch.num_groups))
  ctx = LossContext.create(
      mask=mask, rewards=jnp.asarray(batch.rewards, jnp.float32),
      old_logp=jnp.asarray(c.logp, jnp.float32) * mask, tokens=jnp.asarray(c.tokens), step=step,
      extras=extras, **groups)
  return RolloutBatch(tokens=jnp.asarray(tokens, jnp.int32),
                      attention_mask=jnp.asarray(attention_mask, jnp.int32), ctx=ctx,
                      prompt_len=int(c.prompt_tokens.shape[1]),
                      shared_prompts=prompts_shared(c.prompt_tokens, c.prompt_mask, g))


@dataclasses.dataclass
class HookEnv:
  """What a hook may use: the policy and its sampler, the run's verifier, the tokenizer.

  Attributes:
    model: the policy `models.Transformer` (its config; parameters are `params`).
    tokenizer: the run's tokenizer.
    params: the policy's current parameters (on `mesh`).
    mesh: the run's mesh.
    sampling_config: the run's `sampling.SamplingConfig`.
    step: the iteration (0-based).
    key: a PRNG key for this iteration's hook sampling.
    answer_fn: `completion -> canonical answer | None`, the run's extractor.
    score_fn: `(texts, examples) -> float32 [B]` rewards from the run's verifier (the reward
      runner: failures score 0 and are counted).
  """
  model: Any
  tokenizer: Any
  params: Any
  mesh: Any
  sampling_config: sampling.SamplingConfig
  key: jax.Array
  score_fn: Callable[[Sequence[str], Sequence[Any]], np.ndarray]
  step: int = 0
  answer_fn: Optional[Callable[[str], Optional[str]]] = None
  max_prompt_tokens: Optional[int] = None

  def generate_with(self, model: Any, params: Any, prompt_tokens: Sequence[Sequence[int]],
                    n: int, key: jax.Array, **overrides: Any
                    ) -> tuple[sampling.Completions, list[str]]:
    """`n` samples per prompt from `model` with `params` (None: the model's own), with the
    run's sampling settings except `overrides` (`max_new_tokens`, `temperature`, ...); returns
    the completions (on the host) and their decoded texts. Row counts that do not divide the
    mesh's data shards are padded with copies of the last prompt and cut back."""
    cfg = dataclasses.replace(self.sampling_config, n=n, **overrides)
    prompt_tokens = [list(p) for p in prompt_tokens]
    mesh = self.mesh if params is self.params else None
    shards = _data_shards(mesh)
    extra = (-len(prompt_tokens) * n) % shards
    while extra % n:       # whole prompts of padding
      extra += shards
    padded = prompt_tokens + [prompt_tokens[-1]] * (extra // n)
    comps = sampling.sample(model, padded, key, cfg, params=params, mesh=mesh)
    comps = jax.tree.map(np.asarray, jax.device_get(comps))
    if extra:
      comps = take_rows(comps, np.arange(len(prompt_tokens) * n))
      comps = jax.tree.map(np.asarray, comps)
    texts = decode(self.tokenizer, comps)
    return comps, texts

  def sample(self, prompt_tokens: Sequence[Sequence[int]], n: int, key: jax.Array,
             **overrides: Any) -> tuple[sampling.Completions, list[str]]:
    """`n` samples per prompt from the policy (current parameters, on the mesh)."""
    return self.generate_with(self.model, self.params, prompt_tokens, n, key, **overrides)

  def score(self, texts: Sequence[str], examples: Sequence[Any]) -> np.ndarray:
    """The run's verifier on `texts` (one example per text)."""
    return np.asarray(self.score_fn(texts, examples), np.float32)

  def encode_chat(self, user_text: str, system: Optional[str] = None) -> list[int]:
    """Token ids of a one-turn chat prompt (the run's chat template, generation prompt added)."""
    messages = ([{"role": "system", "content": system}] if system else [])
    messages.append({"role": "user", "content": user_text})
    return prompts_lib.encode_prompt(self.tokenizer, messages)


def _data_shards(mesh) -> int:
  if mesh is None:
    return 1
  return int(np.prod([mesh.shape[a] for a in ("data", "fsdp") if a in mesh.axis_names]))


def decode(tokenizer: Any, completions: sampling.Completions) -> list[str]:
  """The completions' texts (up to each row's length, special tokens skipped)."""
  tokens, lengths = np.asarray(completions.tokens), np.asarray(completions.lengths)
  return tokenizer.batch_decode([row[:n] for row, n in zip(tokens, lengths)],
                                skip_special_tokens=True)


class RolloutHook:
  """Base class of the host-side hooks: every method is a no-op.

  Subclasses set `name` (their key under `config.hooks`), `order` (hooks run in increasing order)
  and `provides` (the `ctx.extras` fields they write), take their configuration as keyword
  arguments with defaults, and override what they need.
  """
  name: ClassVar[str] = ""
  order: ClassVar[int] = 50
  provides: ClassVar[tuple[str, ...]] = ()
  needs_answers: ClassVar[bool] = False   # the runner extracts answers for `HostBatch.answers`
  # counts() usually makes groups of unequal size (Knapsack RL): the loop then gives every batch,
  # equal groups included, the ragged layout, so the rollout phase and train step compile once.
  uneven_counts: ClassVar[bool] = False

  def expand(self, prompts: list, env: HookEnv) -> list:
    """The prompts to sample this iteration (default: unchanged)."""
    del env
    return prompts

  def counts(self, prompts: list, n: int, env: HookEnv) -> Optional[list[int]]:
    """Samples per prompt, or None for `n` each. The total must stay `len(prompts) * n`."""
    del prompts, n, env
    return None

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    """The scored batch, changed (rewards, extras, rows, metrics)."""
    del env
    return batch

  def state(self) -> dict:
    """Host state to checkpoint (JSON-serialisable)."""
    return {}

  def restore(self, state: Mapping[str, Any]) -> None:
    del state


HOOKS: dict[str, type[RolloutHook]] = {}


def register_hook(cls: type[RolloutHook]) -> type[RolloutHook]:
  """Adds a hook class to `HOOKS` under its `name` (every constructor argument defaulted)."""
  if not cls.name:
    raise TypeError(f"{cls.__name__} needs a `name`")
  for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
    if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
      raise TypeError(f"hook {cls.name}: argument {p.name!r} needs a default (the signature is "
                      "the config schema)")
  HOOKS[cls.name] = cls
  return cls


def _load_builtin_hooks() -> None:
  """Imports the modules that register the library's hooks (they import this one)."""
  import importlib  # pylint: disable=g-import-not-at-top
  for module in ("hooks_groups", "hooks_voting", "hooks_knapsack", "hooks_models", "hooks_judge"):
    try:
      importlib.import_module(f"jaxrl_llm.training.{module}")
    except ModuleNotFoundError as e:
      if e.name != f"jaxrl_llm.training.{module}":
        raise


def hook_names() -> list[str]:
  _load_builtin_hooks()
  return sorted(HOOKS)


def build_hooks(section: Optional[Mapping[str, Any]]) -> list[RolloutHook]:
  """The hooks of a `config.hooks` section, in run order; unknown names or arguments fail with
  the closest valid one."""
  _load_builtin_hooks()
  if section is None:
    return []
  items = (section.to_dict() if isinstance(section, ml_collections.ConfigDict) else dict(section))
  hooks = []
  for name, kwargs in items.items():
    if name not in HOOKS:
      close = difflib.get_close_matches(name, list(HOOKS), n=1)
      raise ValueError(f"unknown hook {name!r} in config.hooks"
                       + (f"; did you mean {close[0]!r}?" if close else "")
                       + f" (hooks: {sorted(HOOKS)})")
    kwargs = dict(kwargs or {})
    params = list(inspect.signature(HOOKS[name].__init__).parameters)[1:]
    for key in kwargs:
      if key not in params:
        close = difflib.get_close_matches(key, params, n=1)
        raise ValueError(f"unknown argument {key!r} of hook {name!r} (config.hooks.{name})"
                         + (f"; did you mean {close[0]!r}?" if close else "")
                         + f" (valid: {sorted(params)})")
    hooks.append(HOOKS[name](**kwargs))
  return sorted(hooks, key=lambda h: h.order)


def check_requirements(requires: frozenset[str], hooks: Sequence[RolloutHook]) -> None:
  """Raises if the objective requires a host-side field that none of `hooks` provides."""
  _load_builtin_hooks()
  provided = {f for h in hooks for f in h.provides}
  for field in sorted(set(requires) & set(HOST_FIELDS)):
    if field not in provided:
      makers = sorted(n for n, cls in HOOKS.items() if field in cls.provides)
      fix = (f"turn on a hook that provides it: {', '.join(f'config.hooks.{m}' for m in makers)}"
             if makers else "no registered hook provides it")
      raise ValueError(f"the objective requires ctx.extras[{field!r}], which no configured hook "
                       f"provides: {fix} (e.g. --config.hooks.{makers[0] if makers else '...'}"
                       "={}).")


def group_local_ids(answers: Sequence[Optional[str]], group_ids: np.ndarray) -> np.ndarray:
  """int32 [B]: each row's answer as an id local to its group (0, 1, ... in order of first
  appearance in the group), −1 where there is no answer (COPO, majority vote, Co-Reward)."""
  out = np.full(len(answers), -1, np.int32)
  seen: dict[tuple[int, str], int] = {}
  next_id: dict[int, int] = {}
  for i, (a, g) in enumerate(zip(answers, np.asarray(group_ids))):
    if a is None:
      continue
    key = (int(g), a)
    if key not in seen:
      seen[key] = next_id.get(int(g), 0)
      next_id[int(g)] = seen[key] + 1
    out[i] = seen[key]
  return out


@register_hook
class AnswerIds(RolloutHook):
  """`answer_id` [B]: the extracted final answers as group-local ids (−1: none extracted), for
  objectives that compare answers within a group (COPO). Logs `answers/none_frac` and
  `answers/distinct_per_group` (mean number of distinct answers in a group)."""
  name = "answers"
  order = 20
  provides = ("answer_id",)
  needs_answers = True

  def __init__(self):
    pass

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    del env
    ids = group_local_ids(batch.answers, batch.group_ids)
    distinct = [len(set(ids[batch.group_rows(k)]) - {-1}) for k in range(batch.num_groups)]
    batch.extras["answer_id"] = ids
    batch.metrics["answers/none_frac"] = float(np.mean(ids < 0)) if ids.size else 0.0
    batch.metrics["answers/distinct_per_group"] = float(np.mean(distinct)) if distinct else 0.0
    return batch
