"""Presets: the registry, config from the signature, build, and error messages with suggestions."""
import inspect

import ml_collections
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from jaxrl_llm.objectives import presets
from tests.objectives.helpers import loss_and_grad, worked_example_ctx

BASELINES = ("grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "trl_compatible")


def test_registry_holds_every_baseline():
  assert set(BASELINES) <= set(presets.PRESETS)
  for name in BASELINES:
    assert getattr(ob, name) is presets.PRESETS[name]      # also at the package top level


@pytest.mark.parametrize("name", BASELINES)
def test_every_preset_builds_runs_and_documents_itself(name):
  objective = presets.build(name)
  loss, metrics, grad = loss_and_grad(objective, worked_example_ctx())
  assert np.isfinite(loss) and np.all(np.isfinite(grad)) and metrics
  doc = presets.PRESETS[name].__doc__
  assert "Defaults" in doc and ("arXiv" in doc or "TRL" in doc)


@pytest.mark.parametrize("name", BASELINES)
def test_default_config_is_the_signature(name):
  cfg = presets.default_config(name)
  params = inspect.signature(presets.PRESETS[name]).parameters
  assert set(cfg.keys()) == set(params) | {"name"}
  for key, p in params.items():
    assert cfg[key] == p.default
  a = loss_and_grad(presets.build(cfg), worked_example_ctx())
  b = loss_and_grad(presets.PRESETS[name](), worked_example_ctx())
  assert a[0] == b[0]
  np.testing.assert_array_equal(a[2], b[2])


def test_config_overrides_reach_the_objective():
  cfg = presets.default_config("grpo")
  cfg.kl_coef = 0.0
  assert presets.build(cfg).requires == frozenset()
  assert presets.build(cfg, kl_coef=0.04).requires == {"ref_logp"}
  cfg.aggregation = "token_mean"
  loss, _, _ = loss_and_grad(presets.build(cfg), worked_example_ctx())
  assert loss == pytest.approx(0.19175996, abs=1e-6)       # spec §3.3 "GRPO policy term only"
  assert presets.build({"name": "dr_grpo", "norm_len": 10}) is not None


def test_unknown_preset_suggests_the_closest_name():
  with pytest.raises(ValueError, match="unknown preset 'grop'; did you mean 'grpo'"):
    presets.build("grop")
  with pytest.raises(ValueError, match="did you mean 'dapo'"):
    presets.default_config("dapoo")
  with pytest.raises(ValueError, match="needs a 'name' key"):
    presets.build({"kl_coef": 0.1})


def test_unknown_key_suggests_the_closest_key():
  with pytest.raises(ValueError, match="unknown key 'kl_cof' for preset 'grpo'; did you mean "
                     "'kl_coef'"):
    presets.build("grpo", kl_cof=0.1)
  cfg = ml_collections.ConfigDict({"name": "dapo", "eps_hihg": 0.3})
  with pytest.raises(ValueError, match="did you mean 'eps_high'"):
    presets.build(cfg)


def test_bad_mode_and_estimator_names_list_the_valid_ones():
  with pytest.raises(ValueError, match=r"unknown aggregation mode 'seq_mean'; valid modes: "
                     r"\('token_mean', 'seq_mean_token_mean'"):
    presets.build("grpo", aggregation="seq_mean")
  with pytest.raises(ValueError, match=r"unknown KL estimator 'k4'; valid estimators: "
                     r"\('k1', 'k2', 'k3'\)"):
    presets.build("grpo", kl_estimator="k4")
  with pytest.raises(ValueError, match="valid values: \\('group', 'batch', 'none'\\)"):
    ob.group_advantage("std")
  with pytest.raises(ValueError, match="valid levels"):
    presets.build("gspo", level="seq")
  with pytest.raises(ValueError, match="unknown loss_type 'dr-grpo'; did you mean 'dr_grpo'"):
    presets.trl_compatible(loss_type="dr-grpo")
  with pytest.raises(ValueError, match="valid surrogates"):
    presets.rloo(surrogate="ppo")
  with pytest.raises(ValueError, match="valid placements"):
    presets.reinforce_pp(kl_placement="advantage")


def test_trl_accepts_boolean_scale_rewards():
  ctx = worked_example_ctx()
  for alias, name in ((True, "group"), (False, "none")):
    a = loss_and_grad(presets.trl_compatible(scale_rewards=alias), ctx)[0]
    b = loss_and_grad(presets.trl_compatible(scale_rewards=name), ctx)[0]
    assert a == b


def test_register_adds_a_preset_and_refuses_undefaulted_arguments():
  def my_method(kl_coef: float = 0.0) -> ob.Objective:
    """A test preset."""
    return presets.grpo(kl_coef=kl_coef)

  try:
    presets.register(my_method)
    assert presets.default_config("my_method").kl_coef == 0.0
    assert presets.build("my_method").requires == frozenset()
  finally:
    presets.PRESETS.pop("my_method", None)

  def bad(eps):
    return presets.grpo(eps_low=eps)
  with pytest.raises(TypeError, match="needs a default"):
    presets.register(bad)
