"""The loop's likelihood metrics (LLDS's curve) against a per-row Python loop."""
import numpy as np

from jaxrl_llm.training import loop


def test_correct_and_incorrect_likelihoods_match_a_row_loop():
  rng = np.random.default_rng(0)
  logp = -rng.uniform(0.1, 3.0, (6, 5))
  lengths = np.array([5, 3, 1, 4, 2, 5])
  mask = (np.arange(5)[None, :] < lengths[:, None]).astype(np.int32)
  logp = logp * mask + 7.0 * (1 - mask)            # junk beyond the mask must not count
  rewards = np.array([1.0, 0.0, 1.0, 0.5, 1.0, 0.0])
  out = loop.likelihood_metrics(logp, mask, rewards)
  rows = [(sum(logp[b, :lengths[b]]), sum(logp[b, :lengths[b]]) / lengths[b]) for b in range(6)]
  correct = [b for b in range(6) if rewards[b] >= 1.0]
  wrong = [b for b in range(6) if rewards[b] < 1.0]
  assert np.isclose(out["likelihood/correct_seq_logp"], np.mean([rows[b][0] for b in correct]))
  assert np.isclose(out["likelihood/correct_token_logp"], np.mean([rows[b][1] for b in correct]))
  assert np.isclose(out["likelihood/incorrect_token_logp"], np.mean([rows[b][1] for b in wrong]))


def test_a_split_without_rows_is_left_out():
  logp, mask = -np.ones((2, 3)), np.ones((2, 3))
  assert set(loop.likelihood_metrics(logp, mask, np.zeros(2))) == {
      "likelihood/incorrect_token_logp"}
  assert "likelihood/incorrect_token_logp" not in loop.likelihood_metrics(logp, mask, np.ones(2))
