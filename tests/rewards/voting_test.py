"""Label-free voting rewards (spec B9, B10): MM-UPT majority, TTRV frequency, Co-Reward agreement.

The spec's fixtures (section (f) of B9 and B10) typed in, a float64 NumPy reference of TTRV's
reward written independently of `rewards.majority`, groups of unequal size and explicit ids, and
the property that a group whose answers all differ gives no advantage signal.
"""
import collections
import math

import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm import rewards

TTRV_VOTES = list("A" * 20 + "B" * 8 + "C" * 4)
TTRV_TRAIN = "ABACAABAACABABAA"


def _grpo_advantages(r, group_size=None, group_ids=None, num_groups=None):
  """`ob.group_advantage` (ε = 1e-6, Bessel std) on per-row rewards [B]."""
  r = jnp.asarray(r, jnp.float32)
  mask = jnp.ones((r.shape[0], 1), jnp.float32)
  kwargs = (dict(group_size=group_size) if group_size else
            dict(group_ids=jnp.asarray(group_ids), num_groups=num_groups))
  ctx = ob.LossContext.create(mask=mask, rewards=r, old_logp=jnp.zeros_like(mask), **kwargs)
  ctx, _ = ob.group_advantage().update(ctx.replace(phase="rollout"), ())
  return np.asarray(ctx.advantages[:, 0], np.float64)


def _ttrv_reference(votes, lam):
  """float64 TTRV reward per distinct answer, from the formula (spec B10 (b))."""
  n = len(votes)
  counts = collections.Counter(votes)
  p = {a: c / n for a, c in counts.items()}
  h = -sum(q * math.log(q) for q in p.values())
  h = h / math.log(len(p)) if len(p) > 1 else 0.0
  return {a: p[a] - lam * h for a in p}, h


# --- MM-UPT ---------------------------------------------------------------------------------------

def test_mm_upt_fixture():
  answers = ["5", "3", "5", None, "5", "3", "2", "5", "3", None]
  majorities, r = rewards.majority_vote(answers, 10)
  assert majorities == ["5"]
  np.testing.assert_array_equal(r, [1, 0, 1, 0, 1, 0, 0, 1, 0, 0])
  # the same group as a list of sizes, as explicit ids, and with min_votes=2
  for kwargs in (dict(group_size=[10]), dict(group_ids=[7] * 10), dict(group_size=10,
                                                                           min_votes=2)):
    np.testing.assert_array_equal(rewards.majority_vote(answers, **kwargs)[1], r)


def test_majority_on_groups_of_unequal_size_and_non_contiguous_ids():
  answers = ["1", "1", "2", "9", "4", "4", "4", None, "7"]
  majorities, r = rewards.majority_vote(answers, [3, 1, 5])
  assert majorities == ["1", "9", "4"]
  np.testing.assert_array_equal(r, [1, 1, 0, 1, 1, 1, 1, 0, 0])
  ids = [2, 0, 2, 0, 1, 1, 1, 1, 1]          # groups in increasing id order: 0, 1, 2
  majorities, r = rewards.majority_vote(answers, group_ids=ids)
  assert majorities == ["1", "4", "1"]
  np.testing.assert_array_equal(r, [1, 1, 0, 0, 1, 1, 1, 0, 0])


def test_all_answers_distinct_give_no_signal():
  """min_votes=2: no majority, every reward 0, every advantage 0 (MM-UPT's code, min_votes=1,
  would reward whichever answer came first)."""
  answers = ["1", "2", "3", "4", "5", "6", "7", "7"]
  majorities, r = rewards.majority_vote(answers, 4, min_votes=2)
  assert majorities == [None, "7"]
  np.testing.assert_array_equal(r, [0, 0, 0, 0, 0, 0, 1, 1])
  np.testing.assert_array_equal(_grpo_advantages(r, 4)[:4], 0.0)
  assert rewards.majority_vote(answers, 4)[1][0] == 1.0   # the code's rule: first one wins
  # TTRV: equal frequencies, equal rewards, zero advantages, whatever λ
  r, h, _ = rewards.ttrv_rewards(answers[:4], 4, entropy_coef=0.75)
  assert h[0] == pytest.approx(1.0) and np.all(r == r[0])
  np.testing.assert_array_equal(_grpo_advantages(r, 4), 0.0)
  # Co-Reward: neither group has a majority
  r, maj = rewards.co_reward_rewards(answers[:4] + ["4", "3", "2", "1"], [1, 0], 4, min_votes=2)
  assert maj == [None, None]
  np.testing.assert_array_equal(r, 0.0)


def test_answer_ids_are_group_local():
  ids = rewards.answer_ids(["b", "a", "b", None, "a", "c", "a"], [4, 3])
  np.testing.assert_array_equal(ids, [0, 1, 0, -1, 0, 1, 0])
  ids = rewards.answer_ids(["x", "y", "x", "x"], group_ids=[1, 0, 0, 1])
  np.testing.assert_array_equal(ids, [0, 0, 1, 0])


def test_bad_groups_name_the_fix():
  with pytest.raises(ValueError, match="exactly one of group_size"):
    rewards.majority_vote(["1"], 1, group_ids=[0])
  with pytest.raises(ValueError, match=r"sum to the 3 answers"):
    rewards.majority_vote(["1", "2", "3"], [1, 1])
  with pytest.raises(ValueError, match="one id per answer"):
    rewards.answer_ids(["1", "2"], group_ids=[0])


# --- TTRV -----------------------------------------------------------------------------------------

def test_ttrv_fixture_rewards_and_entropy():
  r, h, p = rewards.ttrv_rewards(TTRV_VOTES, 32, entropy_coef=0.75)
  assert h[0] == pytest.approx(0.819448, abs=1e-6)
  expected = {"A": 0.010414, "B": -0.364586, "C": -0.489586}
  for i, a in enumerate(TTRV_VOTES):
    assert r[i] == pytest.approx(expected[a], abs=1e-6)
    assert p[i] == {"A": 20 / 32, "B": 8 / 32, "C": 4 / 32}[a]
  ref, ref_h = _ttrv_reference(TTRV_VOTES, 0.75)
  assert ref_h == pytest.approx(h[0], abs=1e-12)
  np.testing.assert_allclose(r, [ref[a] for a in TTRV_VOTES], atol=1e-7)


def test_ttrv_fixture_advantages_identical_with_lambda_zero():
  """GRPO advantages over the first 16 votes: A 0.738277, B −1.033588, C −1.624209, and λ·H̄
  cancels (it is constant in the group)."""
  for lam in (0.75, 0.0):
    r, _, _ = rewards.ttrv_rewards(TTRV_VOTES, 32, entropy_coef=lam)
    per_answer = {a: r[TTRV_VOTES.index(a)] for a in "ABC"}
    adv = _grpo_advantages([per_answer[a] for a in TTRV_TRAIN], 16)
    expected = {"A": 0.738277, "B": -1.033588, "C": -1.624209}
    np.testing.assert_allclose(adv, [expected[a] for a in TTRV_TRAIN], atol=2e-6)


def test_ttrv_voters_count_only_the_voting_rows():
  """N_vote voters, N_train trained rows: the first 16 of the 32 as the training rows and all
  32 as voters give the fixture's rewards on the training rows; voting on the first 16 only
  gives their own frequencies."""
  votes = list(TTRV_TRAIN) + TTRV_VOTES[:16]
  r_all, _, _ = rewards.ttrv_rewards(votes, 32)
  ref, _ = _ttrv_reference(votes, 0.75)
  np.testing.assert_allclose(r_all, [ref[a] for a in votes], atol=1e-7)
  voters = np.arange(32) < 16
  r_first, h, _ = rewards.ttrv_rewards(votes, 32, voters=voters)
  ref, ref_h = _ttrv_reference(list(TTRV_TRAIN), 0.75)
  np.testing.assert_allclose(r_first, [ref[a] for a in votes], atol=1e-7)
  assert h[0] == pytest.approx(ref_h)


def test_ttrv_all_votes_equal():
  r, h, _ = rewards.ttrv_rewards(["4"] * 6, 6)
  assert h[0] == 0.0
  np.testing.assert_array_equal(r, 1.0)
  np.testing.assert_array_equal(_grpo_advantages(r, 6), 0.0)


def test_ttrv_unparsable_answers():
  """None is no answer class: it counts in N_vote, not in the entropy, and scores −λ·H̄."""
  r, h, p = rewards.ttrv_rewards(["1", "1", "2", None], 4, entropy_coef=0.5)
  q = np.array([0.5, 0.25])
  ref_h = -np.sum(q * np.log(q)) / np.log(2)
  assert h[0] == pytest.approx(ref_h)
  np.testing.assert_allclose(p, [0.5, 0.5, 0.25, 0.0])
  np.testing.assert_allclose(r, p - 0.5 * ref_h, atol=1e-7)
  r, h, p = rewards.ttrv_rewards(["1", "1", "2", None], 4, count_missing=True)
  np.testing.assert_allclose(p, [0.5, 0.5, 0.25, 0.25])


def test_ttrv_ragged_groups():
  answers = ["a", "a", "b", "c", "c", "c", "d"]
  r, h, _ = rewards.ttrv_rewards(answers, [3, 4], entropy_coef=0.3)
  for rows in (slice(0, 3), slice(3, 7)):
    ref, ref_h = _ttrv_reference(answers[rows], 0.3)
    np.testing.assert_allclose(r[rows], [ref[a] for a in answers[rows]], atol=1e-7)
  adv = _grpo_advantages(r, group_ids=[0, 0, 0, 1, 1, 1, 1], num_groups=2)
  assert adv[0] > 0 > adv[2] and adv[3] > 0 > adv[6]


# --- Co-Reward ------------------------------------------------------------------------------------

def test_co_reward_fixture():
  orig, reph = ["12", "12", "7", "12"], ["7", "7", "12", "7"]
  r, maj = rewards.co_reward_rewards(orig + reph, [1, 0], 4)
  assert maj == ["12", "7"]
  np.testing.assert_array_equal(r, [0, 0, 1, 0, 0, 0, 1, 0])
  # swapping the roles of x and x' swaps r and r'
  r_swapped, maj = rewards.co_reward_rewards(reph + orig, [1, 0], 4)
  assert maj == ["7", "12"]
  np.testing.assert_array_equal(r_swapped, np.concatenate([r[4:], r[:4]]))


def test_co_reward_unanimous_pair_gives_ones_and_zero_advantages():
  r, _ = rewards.co_reward_rewards(["3"] * 8, [1, 0], 4)
  np.testing.assert_array_equal(r, 1.0)
  np.testing.assert_array_equal(_grpo_advantages(r, 4), 0.0)


def test_co_reward_interleaved_pairs_with_ids_and_missing_answers():
  # groups 0..3: pairs (0, 1), (2, 3); group 3 has no answer at all
  answers = ["1", "1", "2", "1", "5", None, None, None]
  r, maj = rewards.co_reward_rewards(answers, [1, 0, 3, 2], 2)
  assert maj == ["1", "2", "5", None]
  np.testing.assert_array_equal(r, [0, 0, 0, 1, 0, 0, 0, 0])
  r, _ = rewards.co_reward_rewards(answers, [1, 0, 3, 2], 2, count_missing=True)
  np.testing.assert_array_equal(r, [0, 0, 0, 1, 0, 1, 0, 0])
  with pytest.raises(ValueError, match="one group index"):
    rewards.co_reward_rewards(answers, [1, 0, 3], 2)
