"""Stratified GRPO, COPO and D3S train end to end from their configs, and their metrics show that
they acted (spec B2, B4, B5).

Each case is `configs/<name>.py` shrunk with `seed_e2e_test._tiny_of` (the random 2-layer model,
the byte tokenizer, 4 prompts, 3 iterations of mu = 2 passes over 2 minibatches), with groups of
4 samples instead of tiny's 2 for Stratified GRPO and D3S, so that a group can hold two strata
of two rows, or a subset of half its rows. Rollout-phase metrics are logged under their own names
(`stratified/*`, `copo/*`, `d3s/*`), loss-phase ones under `train/`. The `stratum` hook's own
tests (counting, data fields, errors) are at the end.
"""
import ml_collections
import numpy as np
import pytest

from jaxrl_llm.training import hooks, loop
from tests.training.helpers import byte_parity_reward, load_config, random_completions
from tests.training.seed_e2e_test import _run, _values

GROUP = {"sampling.n": 4}


def test_stratified_grpo_normalises_within_strata(tmp_path):
  """The random model writes no `<search>` tags, so the stratum hook counts letters a-u instead
  (about 8 % of its byte tokens), capped at 1: a completion of up to 8 tokens holds one with
  probability about 1/2, so groups of 4 mix strata 0 and 1. Then rows alone in their stratum
  exist, strata means differ from group means (cross-stratum bias > 0), and groups average more
  than one stratum."""
  hook = ml_collections.ConfigDict(dict(pattern="[a-u]", field=None, max_stratum=1))
  history, _, c = _run(tmp_path, "stratified_grpo", **GROUP, **{"hooks.stratum": hook})
  assert c.objective.name == "stratified_grpo" and c.hooks.stratum.pattern == "[a-u]"
  assert _values(history, "stratum/max").max() <= 1.0
  assert _values(history, "stratum/num_distinct").max() == 2.0
  assert np.all(_values(history, "stratified/num_strata") >= 1.0)
  assert _values(history, "stratified/num_strata").max() > 1.0
  assert _values(history, "stratified/cross_bias").max() > 0.0
  assert _values(history, "adv/abs_mean").max() > 0.0


def test_copo_gates_between_global_and_local_losses(tmp_path):
  """Tiny's groups of 2 under a binary verifier (byte parity) are uniform with probability 1/2:
  the rows of a uniform group have A^l = 0 and "soft_with_forced" puts them on the global loss
  (gate 0), so `copo/forced_frac` > 0 and the loss phase's `copo/global_weight` > 0 unless all
  12 groups of the run are mixed (probability 2^-12). The global advantage is nonzero unless the
  4 groups of every iteration have equal accuracy (probability about 3e-4). The random model's
  completions rarely hold an answer: rows without one are their own answer class, so a group's
  entropy is mostly 1 bit and the gate of its mixed groups near 1."""
  history, _, c = _run(tmp_path, "copo", byte_parity_reward)
  assert "answers" in c.hooks and c.sampling.n == 2
  gate = _values(history, "copo/gate_mean")
  forced = _values(history, "copo/forced_frac")
  assert np.all((gate >= 0.0) & (gate <= 1.0)) and np.all(gate <= 1.0 - forced + 1e-6)
  assert forced.max() > 0.0
  assert _values(history, "train/copo/global_weight").max() > 0.0
  assert _values(history, "copo/global_adv_abs_mean").max() > 0.0
  entropy = _values(history, "copo/entropy")
  assert np.all((entropy >= 0.0) & (entropy <= 1.0 + 1e-6))      # at most log2(2) bits
  assert np.all(_values(history, "answers/none_frac") >= 0.0)


def test_d3s_downsamples_early_and_relaxes_to_the_full_batch(tmp_path):
  """τ_ramp = 3 iterations x 2 updates x 2 minibatches / 2 = 6 optimizer steps (the config's
  field references follow the shrunk run); the rollout phase sees τ = 0, 4, 8: κ_s = 0.5, 5/6,
  1 and κ_t = 0.2, 0.73, 1. So the first batch keeps 2 of 4 rows per group and at most about a
  fifth of their tokens, and the last keeps everything."""
  history, _, c = _run(tmp_path, "d3s", **GROUP)
  assert c.objective.ramp_steps == 6
  np.testing.assert_allclose(_values(history, "d3s/sample_frac"), [0.5, 5 / 6, 1.0], rtol=1e-6)
  rows = _values(history, "d3s/kept_rows_frac")
  tokens = _values(history, "d3s/kept_tokens_frac")
  assert rows[0] <= 0.5 + 1e-6 and tokens[0] < 0.5, (rows, tokens)
  assert rows[-1] == 1.0 and tokens[-1] == 1.0, (rows, tokens)


# --- the stratum hook -----------------------------------------------------------------------------
def _host_batch(texts, examples=None, group_size=2):
  b = len(texts)
  return hooks.HostBatch(completions=random_completions(0, b // group_size, group_size),
                   rewards=np.zeros(b), examples=examples or [{}] * b, texts=list(texts),
                   group_ids=np.arange(b) // group_size,
                   prompts=[None] * (b // group_size))


def test_stratum_hook_counts_search_calls_and_caps():
  texts = ["<search>a</search><search>b</search>", "no tools", "<search>x</search>",
           "<search>1</search>" * 7]
  (hook,) = hooks.build_hooks({"stratum": {"max_stratum": 4}})
  batch = hook.process(_host_batch(texts), env=None)
  np.testing.assert_array_equal(batch.extras["stratum"], [2, 0, 1, 4])
  assert batch.extras["stratum"].dtype == np.int32
  assert batch.metrics["stratum/mean"] == 7 / 4 and batch.metrics["stratum/max"] == 4.0
  assert batch.metrics["stratum/num_distinct"] == 4.0
  assert batch.metrics["stratum/distinct_per_group"] == 2.0
  assert hook.provides == ("stratum",)


def test_stratum_hook_reads_a_data_field():
  (hook,) = hooks.build_hooks({"stratum": {"field": "hops", "pattern": "ignored"}})
  batch = hook.process(_host_batch(["a", "b"], [{"hops": 3}, {"hops": "1"}]), env=None)
  np.testing.assert_array_equal(batch.extras["stratum"], [3, 1])
  with pytest.raises(ValueError, match="field='hops' is not a field.*fields: \\['depth'\\]"):
    hook.process(_host_batch(["a", "b"], [{"depth": 1}] * 2), env=None)
  with pytest.raises(ValueError, match="not an integer"):
    hook.process(_host_batch(["a", "b"], [{"hops": "many"}] * 2), env=None)


def test_stratum_hook_config_errors():
  with pytest.raises(ValueError, match="not a valid regular expression"):
    hooks.build_hooks({"stratum": {"pattern": "(unclosed"}})
  with pytest.raises(ValueError, match="max_stratum"):
    hooks.build_hooks({"stratum": {"max_stratum": -1}})
  with pytest.raises(ValueError, match="unknown argument 'max_strata'.*max_stratum"):
    hooks.build_hooks({"stratum": {"max_strata": 2}})


@pytest.mark.parametrize("name, hook", [("stratified_grpo", "stratum"), ("copo", "answers")])
def test_configs_without_their_hook_fail_at_start_naming_it(name, hook):
  c = load_config(name)
  c.mesh.num_devices = 1
  loop.check_config(c)
  del c.hooks[hook]
  with pytest.raises(ValueError, match=f"config.hooks.{hook}"):
    loop.check_config(c)
