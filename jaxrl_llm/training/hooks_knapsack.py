"""Knapsack RL: a per-prompt rollout budget from each prompt's success history (spec B3).

Knapsack RL (Li et al., ByteDance Seed, arXiv 2509.25849) treats every prompt of a step as a
knapsack item. Giving prompt k N rollouts costs N and is worth

  V(N, p) = (1 − p^N − (1 − p)^N) · p (1 − p)²

(the probability that a group of N binary rewards is not uniform, i.e. that GRPO gets a non-zero
gradient, times the paper's information-gain proxy p(1 − p)²), with p the prompt's success rate
estimated from its previous visit. A fixed total of K·N_def rollouts is then allocated by an exact
integer dynamic programme. Advantages and loss stay GRPO's, on groups of unequal size (the loop's
`to_rollout_batch` gives them explicit `group_ids`; group statistics use segment sums).

The allocation (`allocate`) is host-side NumPy; the `knapsack` hook keeps the success history,
returns the allocation from `counts()`, records the rewards in `process()` and checkpoints the
history through `state()` / `restore()`.

Allocation rules (spec B3 (b), from the official code `liziniu/KnapsackRL` @ ca5d5f5b,
`verl/trainer/ppo/exploration_utils.py`):
  * invalid prompts (fewer than `min_history` historical rollouts): N_def;
  * valid prompts with p = 0 or p = 1: N_min;
  * "effective" prompts (0 < p < 1): N_min + x_k, with x maximising Σ_k V(N_min + x_k, p_k)
    subject to Σ_k x_k = R (the remaining budget) and 0 ≤ x_k ≤ N_max − N_min;
  * fallback (α): c_k = ⌊min(N_max, ln(1 − α)/ln max(p_k, 1 − p_k))⌋, the rollouts needed for a
    non-uniform group with probability α; if Σ c_k < R the surplus R − Σ c_k goes evenly to the
    p = 0 prompts (else to the other non-effective prompts) and the DP gets R = Σ c_k. As in the
    code, Σ c_k is compared with R (extra rollouts), not with R + K_eff·N_min;
  * no effective prompt: R goes evenly to the p = 0 prompts, else every prompt gets N_def.
Even splits give the first prompts (in batch order) one more when R does not divide.
Where the DP cannot place the whole R under the N_max cap (R > K_eff·(N_max − N_min): only with
the fallback off or when Σ c_k ≥ R nonetheless), the code spreads the rest over the effective
prompts past N_max; here it goes to the non-effective prompts as the fallback's surplus does, so effective
prompts stay within [N_min, N_max] [decision: spec (f)2 asks N_k ≤ N_max for them].

`code_quirk=True` reproduces the release's DP, which scores an item that receives no extra
rollout 0 instead of V(N_min, p); the default uses the clean objective above.
"""
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np

from jaxrl_llm.training.hooks import HookEnv, HostBatch, RolloutHook, register_hook


def value(n: Any, p: Any) -> np.ndarray:
  """V(N, p) = (1 − p^N − (1 − p)^N) · p (1 − p)², elementwise (float64)."""
  n, p = np.asarray(n, np.float64), np.asarray(p, np.float64)
  return (1.0 - p ** n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


def solve_dp(p: Sequence[float], budget: int, n_min: int, cap: int, code_quirk: bool = False
             ) -> tuple[np.ndarray, int]:
  """Exact integer DP: x maximising Σ_k V(n_min + x_k, p_k), Σ x_k = budget, 0 ≤ x_k ≤ cap.

  O(K · budget · cap) (vectorised over the budget). Ties go to the smallest x_k of the last item
  first (backtracking from the last item). With `code_quirk`, an item with x_k = 0 is worth 0
  (the release) rather than V(n_min, p_k).

  Returns:
    (x int64 [K], placed): `placed` = Σ x_k, less than `budget` only when K·cap < budget (then
    every x_k = cap).
  """
  p = np.asarray(p, np.float64)
  k_items = p.shape[0]
  budget = int(budget)
  if k_items == 0 or budget <= 0:
    return np.zeros(k_items, np.int64), 0
  placed = min(budget, k_items * cap)
  dp = np.full(placed + 1, -np.inf)
  dp[0] = 0.0
  choice = np.zeros((k_items, placed + 1), np.int64)
  for i in range(k_items):
    gains = value(n_min + np.arange(cap + 1), p[i])
    if code_quirk:
      gains[0] = 0.0
    best = np.full(placed + 1, -np.inf)
    arg = np.zeros(placed + 1, np.int64)
    for x in range(min(cap, placed) + 1):
      cand = np.full(placed + 1, -np.inf)
      cand[x:] = dp[:placed + 1 - x] + gains[x]
      better = cand > best
      best = np.where(better, cand, best)
      arg = np.where(better, x, arg)
    dp, choice[i] = best, arg
  x = np.zeros(k_items, np.int64)
  w = placed
  for i in range(k_items - 1, -1, -1):
    x[i] = choice[i, w]
    w -= x[i]
  assert w == 0, w
  return x, placed


def _spread(counts: np.ndarray, where: np.ndarray, amount: int) -> None:
  """Adds `amount` to `counts[where]` as evenly as possible (first ones get the remainder)."""
  if amount <= 0 or where.size == 0:
    return
  base, rem = divmod(int(amount), where.size)
  counts[where] += base
  counts[where[:rem]] += 1


def allocate(valid: Sequence[bool], p: Sequence[float], n_def: int = 8, n_min: int = 2,
             n_max: int = 128, alpha: float = 0.9, code_quirk: bool = False,
             fallback: bool = True) -> tuple[np.ndarray, dict[str, float]]:
  """Knapsack RL's rollout budget per prompt (spec B3 (b); rules in the module docstring).

  Args:
    valid: [K] whether the prompt has enough history for its success rate to be used.
    p: [K] success rates (ignored where not valid).
    n_def: N_def, rollouts of an invalid prompt; the total budget is K·N_def.
    n_min: N_min, rollouts of a valid prompt with p = 0 or 1, and the floor of effective ones.
    n_max: N_max, the cap of an effective prompt.
    alpha: the fallback's confidence α.
    code_quirk: the release's DP value 0 for an item with no extra rollout.
    fallback: the α fallback on (the release's `allow_fallback`, on by default).
  Returns:
    (counts int64 [K] summing to K·N_def, info): info has `fallback` (1.0 if it fired) and
    `effective` (the number of prompts with 0 < p < 1).
  """
  valid = np.asarray(valid, bool)
  p = np.where(valid, np.asarray(p, np.float64), 0.0)
  k = valid.shape[0]
  if p.shape != (k,):
    raise ValueError(f"valid and p must have the same length [K], got {valid.shape} and "
                     f"{p.shape}")
  if not 1 <= n_min <= n_def <= n_max:
    raise ValueError(f"knapsack needs 1 <= n_min <= n_def <= n_max; got n_min={n_min}, "
                     f"n_def={n_def}, n_max={n_max}")
  if not 0.0 < alpha < 1.0:
    raise ValueError(f"knapsack alpha must be in (0, 1), got {alpha}")
  if np.any(valid & ((p < 0) | (p > 1) | ~np.isfinite(p))):
    raise ValueError(f"success rates must lie in [0, 1]; got {p[valid].tolist()}")
  effective = valid & (p > 0) & (p < 1)
  zero = valid & (p == 0)
  counts = np.where(valid, n_min, n_def).astype(np.int64)
  remaining = k * n_def - int(counts.sum())
  info = {"fallback": 0.0, "effective": float(effective.sum())}
  if remaining <= 0:
    return counts, info
  eff = np.flatnonzero(effective)
  others = np.flatnonzero(zero) if zero.any() else np.flatnonzero(~effective)
  if eff.size == 0:
    if zero.any():
      _spread(counts, np.flatnonzero(zero), remaining)
    else:
      counts[:] = n_def
    return counts, info
  if fallback:
    pe = p[eff]
    cost = np.log(1.0 - alpha) / np.log(np.maximum(pe, 1.0 - pe))
    estimated = int(np.sum(np.floor(np.minimum(n_max, cost))))
    if estimated < remaining and others.size:
      _spread(counts, others, remaining - estimated)
      remaining = estimated
      info["fallback"] = 1.0
  x, placed = solve_dp(p[eff], remaining, n_min, n_max - n_min, code_quirk)
  counts[eff] += x
  _spread(counts, others, remaining - placed)
  return counts, info


def example_key(example: Any, text: Optional[str] = None) -> str:
  """A prompt's id in the history: its metadata's `source`#`index` when it has both, else the
  question text (else `text`, the encoded prompt's text)."""
  meta = getattr(example, "metadata", None)
  if meta is None and isinstance(example, Mapping):
    meta = example.get("metadata", example)
  if isinstance(meta, Mapping) and meta.get("source") is not None and "index" in meta:
    return f"{meta['source']}#{meta['index']}"
  question = getattr(example, "question", None)
  if question is None and isinstance(example, Mapping):
    question = example.get("question")
  if question is not None:
    return str(question)
  if text is not None:
    return text
  return repr(example)


@register_hook
class Knapsack(RolloutHook):
  """Knapsack RL's per-prompt rollout budget (Li et al., arXiv 2509.25849; spec B3).

  `counts()` allocates `len(prompts) · n` rollouts (n = `sampling.n` = N_def) with `allocate`
  from each prompt's success history; `process()` appends the step's rewards to the history and
  logs the budget: `knapsack/n_min`, `n_max`, `n_mean`, `n_std`, `frac_at_min`, `frac_at_max`,
  `frac_prompts_valid`, `frac_effective`, `fallback`, `num_tracked` (prompts with history) and
  `knapsack/nonzero_grad_frac` (groups whose rewards are not all equal).

  History per prompt (`example_key`): the rewards of its last visit, its last `window` rewards
  across visits and its total number of rollouts. Success rate p: the last visit's success
  fraction if that visit had ≥ `window` rollouts, else that of the last `window` rewards across
  visits; the prompt is valid iff it has ≥ `min_history` rollouts in total. A reward counts as a
  success when it is ≥ `success_threshold` (binary verifiers: 1).
  Defaults (official run script): N_min = 2, N_max = 128, α = 0.9, window 16, min history 8;
  N_def is the run's `sampling.n` (8 in the paper). The objective stays GRPO's with the
  advantage clipped to [−5, 5] (`configs/knapsack.py`).
  """
  name = "knapsack"
  order = 10
  uneven_counts = True   # the loop keeps even batches in the ragged form too (one compilation)

  def __init__(self, n_min: int = 2, n_max: int = 128, alpha: float = 0.9, window: int = 16,
               min_history: int = 8, success_threshold: float = 1.0, code_quirk: bool = False,
               fallback: bool = True):
    if n_min < 1 or n_max < n_min:
      raise ValueError(f"config.hooks.knapsack: need 1 <= n_min <= n_max, got n_min={n_min}, "
                       f"n_max={n_max}")
    if window < 1 or min_history < 1:
      raise ValueError(f"config.hooks.knapsack: window ({window}) and min_history "
                       f"({min_history}) must be >= 1")
    if not 0.0 < alpha < 1.0:
      raise ValueError(f"config.hooks.knapsack.alpha must be in (0, 1), got {alpha}")
    self.n_min, self.n_max, self.alpha = int(n_min), int(n_max), float(alpha)
    self.window, self.min_history = int(window), int(min_history)
    self.success_threshold = float(success_threshold)
    self.code_quirk, self.fallback = bool(code_quirk), bool(fallback)
    # key -> {"last": [rewards of the last visit], "recent": [last `window`], "count": int}
    self.history: dict[str, dict[str, Any]] = {}
    self._info: dict[str, float] = {}

  def success_rate(self, key: str) -> tuple[bool, float]:
    """(valid, p) of a prompt from its history."""
    h = self.history.get(key)
    if h is None:
      return False, 0.0
    rewards = h["last"] if len(h["last"]) >= self.window else h["recent"]
    p = float(np.mean(np.asarray(rewards) >= self.success_threshold)) if rewards else 0.0
    return h["count"] >= self.min_history, p

  def counts(self, prompts: list, n: int, env: HookEnv) -> list[int]:
    del env
    if not self.n_min <= n <= self.n_max:
      raise ValueError(f"knapsack: sampling.n = {n} is N_def and must lie in [n_min, n_max] = "
                       f"[{self.n_min}, {self.n_max}] (config.hooks.knapsack)")
    rates = [self.success_rate(example_key(q.example, getattr(q, "text", None)))
             for q in prompts]
    valid = [v for v, _ in rates]
    counts, info = allocate(valid, [p for _, p in rates], n, self.n_min, self.n_max,
                            self.alpha, self.code_quirk, self.fallback)
    c = counts.astype(np.float64)
    self._info = {
        "knapsack/n_min": float(c.min()), "knapsack/n_max": float(c.max()),
        "knapsack/n_mean": float(c.mean()), "knapsack/n_std": float(c.std()),
        "knapsack/frac_at_min": float(np.mean(c == self.n_min)),
        "knapsack/frac_at_max": float(np.mean(c == self.n_max)),
        "knapsack/frac_prompts_valid": float(np.mean(valid)) if valid else 0.0,
        "knapsack/frac_effective": info["effective"] / max(len(prompts), 1),
        "knapsack/fallback": info["fallback"]}
    return [int(x) for x in counts]

  def process(self, batch: HostBatch, env: HookEnv) -> HostBatch:
    del env
    rewards = np.asarray(batch.rewards, np.float64)
    nonzero = []
    for g in range(batch.num_groups):
      r = rewards[batch.group_rows(g)]
      nonzero.append(bool(r.size) and bool(np.any(r != r[0])))
      q = batch.prompts[g]
      self.record(example_key(q.example, getattr(q, "text", None)), r.tolist())
    batch.metrics.update(self._info)
    batch.metrics["knapsack/nonzero_grad_frac"] = float(np.mean(nonzero)) if nonzero else 0.0
    batch.metrics["knapsack/num_tracked"] = float(len(self.history))
    self._info = {}
    return batch

  def record(self, key: str, rewards: Sequence[float]) -> None:
    """Appends one visit's rewards to the history of `key`."""
    rewards = [float(r) for r in rewards]
    h = self.history.setdefault(key, {"last": [], "recent": [], "count": 0})
    h["last"] = rewards
    h["recent"] = (h["recent"] + rewards)[-self.window:]
    h["count"] += len(rewards)

  def state(self) -> dict:
    return {"history": {k: {"last": list(v["last"]), "recent": list(v["recent"]),
                            "count": int(v["count"])} for k, v in self.history.items()}}

  def restore(self, state: Mapping[str, Any]) -> None:
    self.history = {str(k): {"last": [float(r) for r in v["last"]],
                             "recent": [float(r) for r in v["recent"]], "count": int(v["count"])}
                    for k, v in dict(state.get("history", {})).items()}

