"""Every seed-paper config trains end to end, and each method's own metric shows that it acted.

Each case is `configs/<preset>.py` shrunk the way `configs/tiny.py` shrinks `configs/base.py`
(`_tiny_of`): the method's objective and its own choices (`train.num_updates`, dynamic sampling,
the overlong window that follows `sampling.max_new_tokens`) on the random 2-layer model with the
byte tokenizer, 4 prompts x 2 samples, 3 iterations of mu = 2 passes over 2 minibatches (12
optimizer steps). The metrics are the loss chain's, averaged over an iteration's optimizer steps
(`train/<name>`) or the rollout phase's (`<name>`), as `loop.train_and_evaluate` records them.

Methods that compare π_θ with π_old are exact no-ops on the first update of a batch, so their
metric can only be nonzero if the loop runs the later updates with the batch's old logp and the
moved parameters. Overrides that make a metric reliably nonzero on a random model are given, with
the reason, in each test.
"""
import jax
import ml_collections
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import RefreshState, presets
from jaxrl_llm.training import loop
from tests.training.helpers import (
    byte_mean_reward, byte_parity_reward, byte_tokenizer, load_config)

NUM_ITERATIONS = 3
# The presets that read logp − old_logp: their configs must reuse each batch (mu >= 2).
RATIO_BASED = ("grpo_llds", "gspo_llds", "dapo_nsr", "gspo_nsr", "dapo_divergence", "fipo")


def _tiny_of(name: str) -> ml_collections.ConfigDict:
  """`configs/<name>.py` with every field `tiny` changes in `base` set to tiny's value, unless the
  method config changes that field too (then the method's value stays). The objective is the
  method's; fields it ties to others by reference (DAPO's `max_len`) follow them."""
  base, tiny, c = load_config("base"), load_config("tiny"), load_config(name)
  for section, fields in tiny.items():
    if not isinstance(fields, ml_collections.ConfigDict) or section == "objective":
      continue
    for key, value in fields.items():
      if value != base[section][key] and c[section][key] == base[section][key]:
        c[section][key] = value
  return c


def _run(tmp_path, name, reward=byte_mean_reward, **overrides):
  """3 iterations of the shrunk config with `overrides` ({"section.key": value}); returns
  (history, final state, config)."""
  c = _tiny_of(name)
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  c.train.num_steps = NUM_ITERATIONS
  c.ckpt.every_steps = NUM_ITERATIONS
  c.log.tensorboard = False
  for path, value in overrides.items():
    section, key = path.split(".")
    c[section][key] = value
  history, state = loop.train_and_evaluate(c, str(tmp_path / name), tokenizer=tokenizer,
                                           reward=reward)
  t = c.train
  assert t.num_updates >= 2
  assert [r["step"] for r in history] == list(range(1, NUM_ITERATIONS + 1))
  assert history[-1]["train_steps"] == NUM_ITERATIONS * t.num_updates * t.num_minibatches
  for r in history:
    assert np.isfinite(r["train/loss"]) and r["train/skipped"] == 0.0, r
  return history, state, c


def _values(history, key):
  return np.asarray([r[key] for r in history])


@pytest.mark.parametrize("name", RATIO_BASED + ("unlikeliness",))
def test_configs_of_ratio_based_methods_reuse_each_batch(name):
  """mu >= 2: on the first update of a batch these methods do nothing (the unlikeliness recipe
  takes 2 PPO epochs per batch)."""
  assert load_config(name).train.num_updates >= 2


def test_shrinking_keeps_the_method_and_ties_the_overlong_window_to_the_budget():
  c = _tiny_of("dapo_nsr")
  assert c.objective.name == "dapo_nsr" and c.train.num_updates == 2
  assert c.train.max_sampling_rounds == load_config("dapo_nsr").train.max_sampling_rounds
  assert c.model.random_init and c.sampling.max_new_tokens == 8
  assert (c.objective.max_len, c.objective.cache_len) == (8, 2)
  c.objective.max_len = 100                  # a one-way tie: the sampling budget stays
  assert c.sampling.max_new_tokens == 8


def test_a_refresh_without_a_reference_is_a_clear_error(tmp_path, monkeypatch):
  """`reference_refresh` in an objective that reads no `ref_logp` has nothing to refresh."""
  def refresh_only():
    return ob.Objective(rollout=ob.chain(ob.group_advantage("group")),
                        loss=ob.chain(ob.ppo_clip(), ob.reference_refresh(2),
                                      ob.aggregate("token_mean"))).check()
  monkeypatch.setitem(presets.PRESETS, "refresh_only", refresh_only)
  c = _tiny_of("tiny")
  c.objective = presets.default_config("refresh_only")
  tokenizer = byte_tokenizer()
  c.model.random_config.vocab_size = len(tokenizer)
  with pytest.raises(ValueError, match="no transform reads ref_logp.*drop reference_refresh"):
    loop.train_and_evaluate(c, str(tmp_path / "run"), tokenizer=tokenizer,
                            reward=byte_mean_reward)


@pytest.mark.parametrize("name", ["grpo_llds", "gspo_llds"])
def test_llds_penalises_correct_responses_that_lost_likelihood(tmp_path, name):
  """`llds/active_frac`: the fraction of valid tokens penalised (Δ = old_logp − logp > 0 in a
  non-negative-advantage row whose action lost likelihood). Continuous rewards put about half
  the rows in the preserving set, and after an update about half the likelihoods fall."""
  history, _, _ = _run(tmp_path, name)
  active = _values(history, "train/llds/active_frac")
  assert active.max() > 0.0, active
  assert _values(history, "train/loss/llds").max() > 0.0


@pytest.mark.parametrize("name, overrides", [
    # Token level: DAPO's band (ratios in (1.28, 1.64)) is rarely reached by one Adam step of a
    # random model; ε = 0.02 with a wide band (u_min = 0.5) rescues ratios in (1.02, 2.04).
    ("dapo_nsr", {"objective.eps_low": 0.02, "objective.eps_high": 0.02,
                  "objective.u_min": 0.5}),
    # Sequence level: GSPO's ε = 4e-4 clips nearly every moved row, but its default band ends at
    # s = 1.0008; u_min = 0.5 rescues rows with s in (1.0004, 2.0008).
    ("gspo_nsr", {"objective.u_min": 0.5}),
])
def test_nsr_rescues_clipped_tokens(tmp_path, name, overrides):
  """`nsr/rescued_frac` > 0, and only clipped tokens are rescued."""
  history, _, _ = _run(tmp_path, name, **overrides)
  rescued, clipped = (_values(history, "train/nsr/rescued_frac"),
                      _values(history, "train/nsr/clipped_frac"))
  assert rescued.max() > 0.0, (rescued, clipped)
  assert np.all(rescued <= clipped + 1e-6), (rescued, clipped)


def test_owpo_refreshes_the_reference_when_its_state_says_so(tmp_path):
  """K = 4 with 3 optimizer steps per iteration (mu = 3, one minibatch): `ctx.step` runs 0..8,
  the refresh fires after the updates at steps 4 and 8. The last update is a refresh, so the
  final reference is the final policy exactly; without the loop's refresh it would still be the
  initial model. Between refreshes the policy moves away from π_ref and the weights vary."""
  history, state, c = _run(tmp_path, "owpo", **{
      "objective.refresh_every": 4, "train.num_updates": 3, "train.num_minibatches": 1})
  assert c.objective.refresh_every == 4
  assert _values(history, "ref/refreshed").tolist() == [0.0, 1.0, 1.0]
  refresh = [s for s in jax.tree.leaves(state.objective_state,
                                        is_leaf=lambda x: isinstance(x, RefreshState))
             if isinstance(s, RefreshState)]
  assert len(refresh) == 1
  assert int(refresh[0].num_refreshes) == 2 and int(refresh[0].last_refresh_step) == 8
  for ref, policy in zip(jax.tree.leaves(state.ref_params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(np.asarray(ref), np.asarray(policy))
  initial, _ = loop.load_model(c.model, byte_tokenizer())
  assert not np.array_equal(np.asarray(state.ref_params["embed"]),
                            np.asarray(initial.params()["embed"]))
  assert _values(history, "train/owpo/weight_std").max() > 0.0


def test_lowprob_weights_favour_unlikely_tokens(tmp_path):
  """`lowprob/weight_*`: 1 + α(1 − p_old) in [1, 1 + α], not constant (sampled tokens differ in
  probability), from the first update on."""
  history, _, c = _run(tmp_path, "dapo_lowprob")
  alpha = c.objective.alpha
  lo = _values(history, "train/lowprob/weight_min")
  hi = _values(history, "train/lowprob/weight_max")
  assert np.all(lo >= 1.0) and np.all(hi <= 1.0 + alpha + 1e-6)
  assert np.all(hi > lo) and _values(history, "train/lowprob/weight_std").min() > 0.0


def test_divergence_weights_follow_the_policy_change(tmp_path):
  """`divergence/weight_std` > 0: the k3 divergence to π_old is nonzero once the policy moved."""
  history, _, _ = _run(tmp_path, "dapo_divergence")
  assert _values(history, "train/divergence/kl_mean").max() > 0.0
  assert _values(history, "train/divergence/weight_std").max() > 0.0
  assert _values(history, "train/divergence/weight_max").max() > 1.0


def test_unlikeliness_lowers_the_reward_of_likely_correct_samples(tmp_path):
  """`unlikely/penalty_mean` (rollout phase) > 0: with a binary verifier, a correct sample loses
  β·rank/n of its reward, rank 1 of 2 when it is the more likely one (incorrect ones have none
  to lose). Dynamic sampling keeps mixed groups, each penalised with probability 1/2: about 4
  per iteration, so no penalty in 3 iterations has probability about 2^-12."""
  history, _, _ = _run(tmp_path, "unlikeliness", byte_parity_reward)
  assert _values(history, "unlikely/penalty_mean").max() > 0.0


def test_fipo_weights_vary_once_the_policy_moved(tmp_path):
  """`fipo/weight_std` > 0: the discounted future log-ratios are nonzero from the second
  update of a batch on (FIPO is DAPO on the first)."""
  history, _, _ = _run(tmp_path, "fipo")
  assert _values(history, "train/fipo/weight_std").max() > 0.0


def test_thr_keeps_and_reweights_tokens_of_mixed_groups(tmp_path):
  """`thr/kept_frac` in (0, 1) and `thr/weight_std` > 0: THR acts on groups with a correct and
  an incorrect sample (a binary verifier: half the groups of 2; none among 12 groups has
  probability 2^-12), from hidden states the train step returns because THR requires them."""
  history, _, _ = _run(tmp_path, "grpo_thr", byte_parity_reward)
  kept = _values(history, "train/thr/kept_frac")
  assert np.any((kept > 0.0) & (kept < 1.0)), kept
  assert _values(history, "train/thr/weight_std").max() > 0.0
