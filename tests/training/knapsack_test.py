"""Knapsack RL (spec B3): the allocation maths, the `knapsack` hook, and the config end to end.

References are independent of `hooks_knapsack`: brute force over every allocation for small
problems, the spec's worked fixture, hand-derived fallback cases, and a float64 NumPy value
function written here.
"""
import itertools
import json

import ml_collections
import numpy as np
import pytest

from jaxrl_llm.data.prompts import EncodedPrompt, Example
from jaxrl_llm.training import hooks as hooks_lib
from jaxrl_llm.training import hooks_knapsack as ks
from jaxrl_llm.training import loop
from tests.training.helpers import byte_parity_reward, byte_tokenizer
from tests.training.seed_e2e_test import _tiny_of


def _v(n, p):
  """V(N, p) written out again, float64."""
  return (1.0 - p ** n - (1.0 - p) ** n) * p * (1.0 - p) ** 2


# ------------------------------------------------------------------------------------------------
# Allocation (spec B3 (f))


@pytest.mark.parametrize("code_quirk", [False, True])
def test_fixture_f1(code_quirk):
  counts, info = ks.allocate([1, 1, 1, 1, 1, 0], [0.0, 0.125, 0.5, 0.875, 1.0, 0.3], n_def=8,
                             n_min=2, n_max=128, alpha=0.9, code_quirk=code_quirk)
  assert counts.tolist() == [2, 21, 8, 7, 2, 8] and counts.sum() == 48
  assert info == {"fallback": 0.0, "effective": 3.0}


def test_value_function_f3():
  assert ks.value(8, 0.125) == pytest.approx(0.0628187, abs=5e-8)
  assert 1 - 0.125 ** 8 - 0.875 ** 8 == pytest.approx(0.656391, abs=5e-7)
  n, p = np.arange(1, 20)[:, None], np.linspace(0, 1, 9)[None, :]
  np.testing.assert_allclose(ks.value(n, p), _v(n.astype(float), p), rtol=1e-12, atol=1e-15)
  assert np.all(ks.value(n, np.array([0.0, 1.0])[None, :]) == 0.0)


def _brute_force(p, budget, n_min, cap, code_quirk):
  best = -np.inf
  for x in itertools.product(range(cap + 1), repeat=len(p)):
    if sum(x) != budget:
      continue
    total = sum(0.0 if (code_quirk and xi == 0) else _v(n_min + xi, pi) for xi, pi in zip(x, p))
    best = max(best, total)
  return best


@pytest.mark.parametrize("code_quirk", [False, True])
def test_dp_equals_brute_force_f3(code_quirk):
  rng = np.random.default_rng(0)
  for _ in range(40):
    k = int(rng.integers(1, 5))
    p = rng.choice([0.05, 0.125, 0.3, 0.5, 0.7, 0.875, 0.95], k)
    cap = int(rng.integers(1, 7))
    budget = int(rng.integers(0, min(12, k * cap) + 1))
    n_min = int(rng.integers(1, 4))
    x, placed = ks.solve_dp(p, budget, n_min, cap, code_quirk)
    assert placed == budget and x.sum() == budget and np.all((0 <= x) & (x <= cap))
    got = sum(0.0 if (code_quirk and xi == 0) else _v(n_min + xi, pi) for xi, pi in zip(x, p))
    assert got == pytest.approx(_brute_force(p, budget, n_min, cap, code_quirk), abs=1e-12)


def test_dp_places_what_fits_under_the_cap():
  x, placed = ks.solve_dp([0.5, 0.5], 10, 2, 3)
  assert placed == 6 and x.tolist() == [3, 3]


def test_budget_is_conserved_and_bounded_f2():
  rng = np.random.default_rng(1)
  for trial in range(300):
    k = int(rng.integers(1, 24))
    valid = rng.random(k) < 0.7
    p = rng.choice([0.0, 1.0, 0.1, 0.25, 0.5, 0.75, 0.9, rng.random()], k)
    n_min = int(rng.integers(1, 4))
    n_def = int(rng.integers(n_min, 12))
    n_max = int(rng.integers(n_def, 40))
    counts, _ = ks.allocate(valid, p, n_def, n_min, n_max, alpha=float(rng.uniform(0.5, 0.99)),
                            code_quirk=bool(trial % 2), fallback=bool(trial % 3))
    assert counts.sum() == k * n_def, (valid, p)
    assert np.all(counts >= 1)
    effective = valid & (p > 0) & (p < 1)
    assert np.all((counts[effective] >= n_min) & (counts[effective] <= n_max))
    assert np.all(counts[~valid] >= n_def)      # invalid prompts: N_def, plus any surplus
    if not effective.any() and not (valid & (p == 0)).any():
      assert np.all(counts[~valid] == n_def) and np.all(counts[valid] == n_def)


def test_rules_for_invalid_and_solved_prompts():
  # Only invalid prompts: N_def each.
  assert ks.allocate([0, 0, 0], [0.5, 0.0, 1.0], 8)[0].tolist() == [8, 8, 8]
  # No effective prompt: the remaining budget goes evenly to the p = 0 prompts (first get +1).
  assert ks.allocate([1, 1, 1, 0], [0.0, 1.0, 0.0, 0.0], 8)[0].tolist() == [11, 2, 11, 8]
  assert ks.allocate([1, 1, 1, 1, 1], [0.0, 1.0, 0.0, 0.0, 1.0], 4)[0].tolist() == [6, 2, 5, 5, 2]
  # ... and with no p = 0 prompt either, everyone gets N_def (the solved ones too).
  assert ks.allocate([1, 1, 0], [1.0, 1.0, 0.2], 8)[0].tolist() == [8, 8, 8]


def test_fallback_spreads_the_surplus_over_unsolved_prompts():
  # p = 0.5: c = floor(ln 0.1 / ln 0.5) = 3 each, Σc = 6 < R = 24 − 6 = 18: the surplus 12 goes
  # to the p = 0 prompt and the DP places 6, evenly over the two identical items.
  counts, info = ks.allocate([1, 1, 1], [0.0, 0.5, 0.5], 8)
  assert counts.tolist() == [14, 5, 5] and info["fallback"] == 1.0
  # No p = 0 prompt: the surplus goes to the other non-effective prompts (invalid, p = 1).
  counts, _ = ks.allocate([1, 1, 0, 1], [0.5, 0.5, 0.0, 1.0], 8)
  # Start [2, 2, 8, 2], R = 18, Σc = 6: the surplus 12 goes 6 + 6 to the invalid and p = 1 ones.
  assert counts.tolist() == [5, 5, 14, 8]
  # Without the fallback the DP spends everything on the effective prompts.
  counts, info = ks.allocate([1, 1, 1], [0.0, 0.5, 0.5], 8, fallback=False)
  assert counts.tolist() == [2, 11, 11] and info["fallback"] == 0.0


def test_code_quirk_changes_the_dp_objective():
  """The release's DP counts an item with no extra rollout as 0 (not V(N_min, p)), which pays
  a full V for touching an item: p = (0.5, 0.1), N_min = 2, two extra rollouts.
  Clean: the marginal gains are 0.03125, then 0.015625 (p = 0.5) > 0.00729 (p = 0.1) → [2, 0].
  Quirk: V(4, .5) = 0.109375 < V(3, .5) + V(3, .1) = 0.09375 + 0.02187 → [1, 1]."""
  assert _v(4, 0.5) - _v(3, 0.5) > _v(3, 0.1) - _v(2, 0.1)
  assert _v(4, 0.5) < _v(3, 0.5) + _v(3, 0.1)
  assert ks.solve_dp([0.5, 0.1], 2, 2, 2)[0].tolist() == [2, 0]
  assert ks.solve_dp([0.5, 0.1], 2, 2, 2, code_quirk=True)[0].tolist() == [1, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_min=0), "n_min <= n_def"), (dict(n_def=200), "n_def <= n_max"),
    (dict(alpha=1.0), "alpha"), (dict(p=[1.5, 0.5]), r"\[0, 1\]")])
def test_bad_allocation_inputs_name_the_problem(kwargs, message):
  args = dict(valid=[1, 1], p=[0.5, 0.5], n_def=8)
  args.update(kwargs)
  with pytest.raises(ValueError, match=message):
    ks.allocate(**args)


# ------------------------------------------------------------------------------------------------
# The hook


def _prompt(index, source="rg:chain_sum"):
  ex = Example(prompt=[{"role": "user", "content": f"q{index}"}], answer="1",
               metadata={"source": source, "index": index})
  return EncodedPrompt(example=ex, tokens=[1, 2, index])


def _batch(prompts, counts, rewards):
  from tests.training.uneven_groups_test import host_batch
  hb = host_batch(counts)
  hb.rewards = np.asarray(rewards, np.float32)
  hb.prompts = list(prompts)
  hb.examples = [prompts[g].example for g in hb.group_ids]
  return hb.validate()


def test_example_keys():
  assert ks.example_key(_prompt(3).example) == "rg:chain_sum#3"
  ex = Example(prompt=[{"role": "user", "content": "what?"}], answer="1", metadata={})
  assert ks.example_key(ex) == "what?"
  assert ks.example_key({"question": "x"}) == "x"


def test_hook_history_success_rate_and_validity():
  hook = ks.Knapsack(window=4, min_history=3)
  hook.record("a", [1, 0])                          # 2 < min_history: invalid
  assert hook.success_rate("a") == (False, 0.5)
  hook.record("a", [1, 1])                          # last visit < window: the last 4 rewards
  assert hook.success_rate("a") == (True, 0.75)
  hook.record("a", [0, 0, 0, 1, 0])                 # a visit with >= window rollouts: it alone
  assert hook.success_rate("a") == (True, 0.2)
  assert hook.history["a"]["recent"] == [0.0, 0.0, 1.0, 0.0] and hook.history["a"]["count"] == 9
  assert hook.success_rate("never seen") == (False, 0.0)
  thresholded = ks.Knapsack(window=2, min_history=1, success_threshold=0.5)
  thresholded.record("b", [0.4, 0.6])
  assert thresholded.success_rate("b") == (True, 0.5)


def test_hook_counts_process_metrics_and_state():
  hook = hooks_lib.build_hooks(ml_collections.ConfigDict(
      {"knapsack": {"window": 2, "min_history": 2}}))[0]
  assert isinstance(hook, ks.Knapsack)
  prompts = [_prompt(i) for i in range(4)]
  first = hook.counts(prompts, 4, None)
  assert first == [4, 4, 4, 4]                      # no history: N_def each
  batch = hook.process(_batch(prompts, first, [1, 1, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0,
                                               1, 0, 0, 0]), None)
  m = batch.metrics
  assert m["knapsack/frac_prompts_valid"] == 0.0 and m["knapsack/n_mean"] == 4.0
  assert m["knapsack/nonzero_grad_frac"] == 0.5 and m["knapsack/num_tracked"] == 4.0
  # Second visit: p = (1, 0, 0.5, 0.25); solved/unsolved get N_min = 2, the rest the DP's.
  second = hook.counts(prompts, 4, None)
  expected, _ = ks.allocate([1, 1, 1, 1], [1.0, 0.0, 0.5, 0.25], 4)
  assert second == expected.tolist() and sum(second) == 16 and second[:2] == [2, 2]
  assert len(set(second)) > 1
  batch = hook.process(_batch(prompts, second, [1.0] * 16), None)
  m = batch.metrics
  assert m["knapsack/frac_prompts_valid"] == 1.0 and m["knapsack/n_min"] == 2.0
  assert m["knapsack/n_max"] == max(second) and m["knapsack/frac_at_min"] == 0.5
  assert m["knapsack/nonzero_grad_frac"] == 0.0
  # state() is JSON and restores the same allocation.
  state = json.loads(json.dumps(hook.state()))
  other = ks.Knapsack(window=2, min_history=2)
  other.restore(state)
  assert other.history == hook.history
  assert other.counts(prompts, 4, None) == hook.counts(prompts, 4, None)


def test_hook_rejects_bad_arguments():
  with pytest.raises(ValueError, match="n_min <= n_max"):
    ks.Knapsack(n_min=4, n_max=2)
  with pytest.raises(ValueError, match="sampling.n"):
    ks.Knapsack(n_min=4).counts([_prompt(0)], 2, None)
  with pytest.raises(ValueError, match="unknown argument 'windows'.*'window'"):
    hooks_lib.build_hooks(ml_collections.ConfigDict({"knapsack": {"windows": 2}}))


# ------------------------------------------------------------------------------------------------
# End to end: configs/knapsack.py on the tiny random model

# 4 training prompts (reasoning_gym generates the eval items past `size`) at 4 per step: every
# prompt comes back each iteration, and one visit of 4 rollouts fills a history of window =
# min_history = 2. A binary verifier (byte parity) gives success rates 0 .. 1, so from
# iteration 2 on the allocation turns uneven.
E2E = {"data.source": "reasoning_gym:chain_sum?size=4&seed=0&answer_format=answer_tag",
       "data.eval_size": 4, "sampling.n": 4, "train.num_micro_batches": 2}
HOOK = {"window": 2, "min_history": 2}


def _knapsack_config(num_steps):
  c = _tiny_of("knapsack")
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  c.train.num_steps = num_steps
  c.ckpt.every_steps = 1
  c.log.tensorboard = False
  for path, v in E2E.items():
    section, key = path.split(".")
    c[section][key] = v
  c.hooks.knapsack.update(HOOK)
  return c, tokenizer


def _train(workdir, num_steps):
  c, tokenizer = _knapsack_config(num_steps)
  history, _ = loop.train_and_evaluate(c, str(workdir), tokenizer=tokenizer,
                                       reward=byte_parity_reward)
  return history, c


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
  return _train(tmp_path_factory.mktemp("knapsack") / "straight", 3)


def test_config_is_the_paper_recipe():
  from tests.training.helpers import load_config
  c = load_config("knapsack")
  o = c.objective
  assert (o.name, o.eps_low, o.eps_high, o.dual_clip, o.kl_coef, o.aggregation, o.adv_clip) == (
      "grpo", 0.2, 0.28, 10.0, 0.0, "token_mean", 5.0)
  h = c.hooks.knapsack
  assert (c.sampling.n, h.n_min, h.n_max, h.alpha, h.window, h.min_history) == (
      8, 2, 128, 0.9, 16, 8)
  assert c.train.max_sampling_rounds == 1


def test_knapsack_trains_end_to_end_and_the_budget_turns_uneven(straight_run):
  history, c = straight_run
  t = c.train
  assert [r["step"] for r in history] == [1, 2, 3]
  assert history[-1]["train_steps"] == 3 * t.num_updates * t.num_minibatches
  for r in history:
    assert np.isfinite(r["train/loss"]) and r["train/skipped"] == 0.0, r
    assert r["knapsack/n_mean"] == 4.0                        # the budget is P x n every step
    for key in ("n_min", "n_max", "frac_at_min", "frac_prompts_valid", "nonzero_grad_frac",
                "num_tracked"):
      assert f"knapsack/{key}" in r
  first = history[0]
  assert first["knapsack/frac_prompts_valid"] == 0.0 and first["knapsack/n_std"] == 0.0
  for r in history[1:]:
    assert r["knapsack/frac_prompts_valid"] == 1.0 and r["knapsack/num_tracked"] == 4.0
  uneven = [r for r in history[1:] if r["knapsack/n_std"] > 0.0]
  assert uneven, [r["knapsack/n_std"] for r in history]
  assert all(r["knapsack/n_min"] < 4 < r["knapsack/n_max"] for r in uneven)


def test_knapsack_history_survives_a_checkpoint(tmp_path, straight_run):
  """2 iterations, then a restart on the same workdir to 3: iteration 3 allocates from the
  restored history exactly as the uninterrupted run did."""
  straight, _ = straight_run
  _train(tmp_path / "resumed", 2)
  more, _ = _train(tmp_path / "resumed", 3)
  assert [r["step"] for r in more] == [3]
  for key, value in straight[-1].items():
    if key.startswith("knapsack/"):
      assert more[0][key] == value, key
  assert more[0]["knapsack/frac_prompts_valid"] == 1.0 and more[0]["knapsack/num_tracked"] == 4.0
