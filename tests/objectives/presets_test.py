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


# ------------------------------------------------------------------ custom: a chain from a config
def _same(a: ob.Objective, b: ob.Objective, ctx=None):
  ctx = worked_example_ctx() if ctx is None else ctx
  la, ma, ga = loss_and_grad(a, ctx)
  lb, mb, gb = loss_and_grad(b, ctx)
  assert la == lb and set(ma) == set(mb)
  np.testing.assert_array_equal(ga, gb)


def test_custom_chain_equals_the_preset_it_spells_out():
  spelled = presets.build({"name": "custom", "rollout": ("group_advantage",),
                           "loss": ("ppo_clip", "kl_penalty", "aggregate"),
                           "args": {"kl_penalty": {"coef": 0.04},
                                    "aggregate": {"mode": "seq_mean_token_mean"}}})
  _same(spelled, presets.grpo())
  assert spelled.requires == presets.grpo().requires == {"ref_logp"}
  dr = presets.build({"name": "custom", "rollout": ("group_advantage",),
                      "args": {"group_advantage": {"scale": "none"},
                               "aggregate": {"mode": "seq_mean_token_sum_norm", "norm": 3000}}})
  _same(dr, presets.dr_grpo())


def test_custom_from_a_locked_config_keeps_the_tuple_order():
  cfg = presets.default_config("custom")
  cfg.lock()
  cfg.loss = ("ppo_clip", "kl_penalty", "aggregate")        # not alphabetical: order is kept
  cfg.args = {"kl_penalty": {"coef": 0.5}, "aggregate": {"mode": "token_mean"}}
  obj = presets.build(cfg)
  assert obj.requires == {"ref_logp"}
  loss_kl, _, _ = loss_and_grad(obj, worked_example_ctx())
  cfg.args.kl_penalty.coef = 0.0
  loss_0, _, _ = loss_and_grad(presets.build(cfg), worked_example_ctx())
  assert loss_kl > loss_0                                  # the KL term reached the loss
  cfg.loss = ("aggregate", "ppo_clip")                      # aggregate first: nothing to reduce
  with pytest.raises(ValueError, match="found no loss terms"):
    loss_and_grad(presets.build(cfg, args=None), worked_example_ctx())


@pytest.mark.parametrize("kwargs,message", [
    (dict(loss=("ppo_clp", "aggregate")), "unknown transform 'ppo_clp'; did you mean 'ppo_clip'"),
    (dict(args={"ppo_clip": {"eps_hgh": 0.3}}), "unknown argument 'eps_hgh' for ppo_clip; did you "
                                                "mean 'eps_high'"),
    (dict(args={"kl_penalty": {"coef": 0.1}}), "args for 'kl_penalty', which neither chain uses"),
    (dict(rollout=("group_advantage", "ppo_clip")), "rollout holds a loss-phase transform"),
    (dict(loss=("ppo_clip", "stratified_advantage", "aggregate")), "loss holds a rollout-phase"),
    (dict(rollout="group_advantage"), r"rollout must be a tuple .* \('group_advantage',\)"),
])
def test_custom_errors_name_the_problem(kwargs, message):
  with pytest.raises(ValueError, match=message):
    presets.build("custom", **kwargs)
