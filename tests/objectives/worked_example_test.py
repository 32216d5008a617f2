"""The worked example of `spec/baselines_and_more.md` §3, reproduced by the presets via jax.grad.

Every number below is typed in from the spec (§3.2–§3.8); they are the independent reference.
float32 computation, tolerance 1e-6 absolute (the spec prints gradients to 6 decimals).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_llm import objectives as ob
from tests.objectives.helpers import WE_MASK, loss_and_grad, worked_example_ctx

ATOL = 1e-6

# --- §3.2 intermediates ---------------------------------------------------------------------------
RATIOS = np.array([
    [1.010050, 1.363425, 0.886920, 1.094174, 0, 0],
    [0.852144, 0.733447, 1.323130, 0.895834, 1.537258, 1.083287],
    [1.094174, 1.127497, 1.173511, 0, 0, 0],
    [0.913931, 0.697676, 1.521962, 0.771052, 1.161834, 0],
    [1.404948, 1.161834, 0.718924, 1.258600, 1.491825, 1.433329],
    [1.061837, 0.726149, 0, 0, 0, 0],
    [1.419068, 1.138828, 1.061837, 0.895834, 0.923116, 0],
    [0.657047, 1.404948, 0.970446, 1.040811, 0, 0]])
K3 = np.array([
    [0.038264, 0.067057, 0.012144, 0.046149, 0, 0],
    [0.007497, 0.057128, 0.001765, 0.000201, 0.063861, 0.000455],
    [0.015270, 0.005834, 0.000000, 0, 0, 0],
    [0.020584, 0.155291, 0.024534, 0.000811, 0.018731, 0],
    [0.162592, 0.002394, 0.155291, 0.022519, 0.031052, 0.114521],
    [0.026628, 0.031249, 0, 0, 0, 0],
    [0.087628, 0.033379, 0.023678, 0.003287, 0.077735, 0],
    [0.107258, 0.004837, 0.017217, 0.000050, 0, 0]])
ADVANTAGES = {
    "grpo": [0.866024, -0.866024, -0.866024, 0.866024, -1.499997, 0.499999, 0.499999, 0.499999],
    "dr_grpo": [0.5, -0.5, -0.5, 0.5, -0.75, 0.25, 0.25, 0.25],
    "rloo": [0.666667, -0.666667, -0.666667, 0.666667, -1.0, 0.333333, 0.333333, 0.333333],
    "trl_group": [0.865875, -0.865875, -0.865875, 0.865875, -1.499700, 0.499900, 0.499900,
                  0.499900],
    "trl_batch": [0.965905, -0.965905, -0.965905, 0.965905, -1.448858, 0.482953, 0.482953,
                  0.482953],
    "reinforce_pp": [1.101621, -0.901326, -0.901326, 1.101621, -1.402063, 0.600884, 0.600884,
                     0.600884],
}
SEQ_RATIOS = [1.075193, 1.035620, 1.131261, 0.972388, 1.211267, 0.878095, 1.072508, 0.982652]

_ESTIMATORS = {
    "grpo": ob.group_advantage("group", eps=1e-6),
    "dr_grpo": ob.group_advantage("none"),
    "rloo": ob.rloo_advantage(),
    "trl_group": ob.group_advantage("group", eps=1e-4),
    "trl_batch": ob.group_advantage("batch", eps=1e-4),
    "reinforce_pp": ob.reinforce_pp_advantage(),
}


@pytest.mark.parametrize("name", sorted(ADVANTAGES))
def test_advantages_match_table_3_2(name):
  ctx = worked_example_ctx()
  out, _ = _ESTIMATORS[name].update(ctx, _ESTIMATORS[name].init(ctx))
  expected = np.asarray(ADVANTAGES[name])[:, None] * WE_MASK
  np.testing.assert_allclose(out.advantages, expected, atol=ATOL)


def test_token_ratios_and_k3_match_section_3_2():
  ctx = worked_example_ctx(advantages=jnp.ones((8, 6)))
  out, _ = ob.chain(ob.ppo_clip(), ob.kl_penalty(1.0)).update(ctx, ob.chain(
      ob.ppo_clip(), ob.kl_penalty(1.0)).init(ctx))
  np.testing.assert_allclose(np.asarray(out.ratio) * WE_MASK, RATIOS, atol=ATOL)
  np.testing.assert_allclose(out.terms["kl"], K3, atol=ATOL)


def test_sequence_ratios_match_section_3_3():
  s = jnp.exp(ob.sequence_log_ratio(worked_example_ctx()))
  np.testing.assert_allclose(s, SEQ_RATIOS, atol=ATOL)


# --- §3.3 loss values: method × aggregation -------------------------------------------------------
MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm")
TABLE_3_3 = {
    "grpo": [0.19340212, 0.07938919, 0.84613428, 0.08461343, 0.67690742],
    "grpo_beta0": [0.19175996, 0.07788138, 0.83894983, 0.08389498, 0.67115987],
    "dr_grpo": [0.09770069, 0.04075767, 0.42744050, 0.04274405, 0.34195240],
    "dapo": [0.18551529, 0.07173428, 0.81162937, 0.08116294, 0.64930350],
}
L_NORM = 10


def _preset(method, mode):
  if method == "grpo":
    return ob.presets.grpo(aggregation=mode, norm_len=L_NORM)
  if method == "grpo_beta0":
    return ob.presets.grpo(kl_coef=0.0, aggregation=mode, norm_len=L_NORM)
  if method == "dr_grpo":
    return ob.presets.dr_grpo(aggregation=mode, norm_len=L_NORM)
  return ob.presets.build("dapo", aggregation=mode) if mode != "seq_mean_token_sum_norm" else (
      ob.Objective(ob.presets.dapo().rollout,
                   ob.chain(ob.ppo_clip(0.2, 0.28), ob.aggregate(mode, norm=L_NORM))))


@pytest.mark.parametrize("method", sorted(TABLE_3_3))
@pytest.mark.parametrize("col", range(4))
def test_table_3_3_loss_values(method, col):
  loss, _, _ = loss_and_grad(_preset(method, MODES[col]), worked_example_ctx())
  assert loss == pytest.approx(TABLE_3_3[method][col], abs=ATOL)


@pytest.mark.parametrize("method", sorted(TABLE_3_3))
def test_table_3_3_verl_literal_is_the_norm_total(method):
  """verl's literal seq-mean-token-sum-norm (÷ L only, no 1/N) is our `loss.total`."""
  objective = _preset(method, "seq_mean_token_sum_norm")
  _, lctx, _ = objective.run(worked_example_ctx())
  assert float(lctx.loss.total) == pytest.approx(TABLE_3_3[method][4], abs=ATOL)
  assert float(lctx.loss.count) == 8.0


OTHER_BASELINES = [
    ("gspo", lambda: ob.presets.gspo(), 0.06930180),
    ("gspo_token_mean", lambda: ob.presets.gspo(aggregation="token_mean"), 0.17717934),
    ("gspo_eps_0.2", lambda: ob.presets.gspo(eps_low=0.2, eps_high=0.2), 0.05669851),
    ("gspo_eps_0.2_token_mean",
     lambda: ob.presets.gspo(eps_low=0.2, eps_high=0.2, aggregation="token_mean"), 0.16462621),
    ("gspo_token", lambda: ob.presets.gspo(level="token"), 0.06930180),
    ("rloo_ppo_token_mean",
     lambda: ob.presets.rloo(surrogate="ppo_clip", aggregation="token_mean"), 0.13026758),
    ("rloo_ppo_seq_mean",
     lambda: ob.presets.rloo(surrogate="ppo_clip", aggregation="seq_mean_token_mean"), 0.05434356),
    ("rloo_reinforce", lambda: ob.presets.rloo(), -0.32125000),
    ("reinforce_pp_token_mean", lambda: ob.presets.reinforce_pp(), 0.08910704),
    ("reinforce_pp_seq_mean",
     lambda: ob.presets.reinforce_pp(aggregation="seq_mean_token_mean"), -0.02319090),
]


@pytest.mark.parametrize("name,make,expected", OTHER_BASELINES,
                         ids=[c[0] for c in OTHER_BASELINES])
def test_table_3_3_other_baselines(name, make, expected):
  del name
  loss, _, _ = loss_and_grad(make(), worked_example_ctx())
  assert loss == pytest.approx(expected, abs=ATOL)


# --- §3.4 TRL loss_type × scale_rewards ------------------------------------------------------------
TABLE_3_4 = {
    "group": {"grpo": 0.07937439, "bnpo": 0.19336478, "dr_grpo": 0.08459709, "dapo": 0.19336478},
    "batch": {"grpo": 0.08024389, "bnpo": 0.19038135, "dr_grpo": 0.08329184, "dapo": 0.19038135},
    "none": {"grpo": 0.04226547, "bnpo": 0.09934284, "dr_grpo": 0.04346249, "dapo": 0.09934284},
}


@pytest.mark.parametrize("scale", sorted(TABLE_3_4))
@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_table_3_4_trl(scale, loss_type):
  objective = ob.presets.trl_compatible(loss_type=loss_type, scale_rewards=scale, beta=0.04,
                                        epsilon=0.2, max_completion_length=10)
  loss, _, _ = loss_and_grad(objective, worked_example_ctx())
  assert loss == pytest.approx(TABLE_3_4[scale][loss_type], abs=ATOL)


# --- §3.5–§3.8 gradient tables --------------------------------------------------------------------
GRAD_3_5 = np.array([  # GRPO, seq-mean-token-mean, β = 0.04
    [-0.027021, 0.000404, -0.023818, -0.029270, 0, 0],
    [0.015268, -0.000314, 0.023921, 0.016146, 0.027999, 0.019519],
    [0.039757, 0.040859, 0.042345, 0, 0, 0],
    [-0.019598, -0.015770, 0.000205, -0.016735, -0.024973, 0],
    [0.044294, 0.036364, -0.000554, 0.039496, 0.046810, 0.045129],
    [-0.032649, -0.023370, 0, 0, 0, 0],
    [0.000362, -0.013999, -0.013507, -0.011281, -0.011987, 0],
    [-0.010938, 0.000119, -0.015410, -0.016275, 0, 0]])
GRAD_3_6 = np.array([  # Dr. GRPO, seq-mean-token-sum-norm, L_norm = 10, β = 0
    [-0.006313, 0, -0.005543, -0.006839, 0, 0],
    [0.005326, 0, 0.008270, 0.005599, 0.009608, 0.006771],
    [0.006839, 0.007047, 0.007334, 0, 0, 0],
    [-0.005712, -0.004360, 0, -0.004819, -0.007261, 0],
    [0.013171, 0.010892, 0, 0.011799, 0.013986, 0.013437],
    [-0.003318, -0.002269, 0, 0, 0, 0],
    [0, -0.003559, -0.003318, -0.002799, -0.002885, 0],
    [-0.002053, 0, -0.003033, -0.003253, 0, 0]])
GRAD_3_7 = np.array([  # DAPO, token-mean, ε = (0.2, 0.28), β = 0
    [-0.024992, 0, -0.021946, -0.027074, 0, 0],
    [0.021085, 0, 0.032739, 0.022166, 0.038037, 0.026804],
    [0.027074, 0.027898, 0.029037, 0, 0, 0],
    [-0.022614, -0.017263, 0, -0.019079, -0.028748, 0],
    [0.060212, 0.049793, 0, 0.053940, 0.063935, 0.061428],
    [-0.015169, -0.010374, 0, 0, 0, 0],
    [0, -0.016269, -0.015169, -0.012798, -0.013187, 0],
    [-0.009386, 0, -0.013863, -0.014869, 0, 0]])
GRAD_3_8_ROWS = [0, 0.018685, 0.040821, -0.021053, 0.037852, -0.027440, 0, -0.015354]


@pytest.mark.parametrize("make,value,grad", [
    (lambda: ob.presets.grpo(), 0.07938919, GRAD_3_5),
    (lambda: ob.presets.dr_grpo(norm_len=10), 0.04274405, GRAD_3_6),
    (lambda: ob.presets.dapo(), 0.18551529, GRAD_3_7),
], ids=["grpo_3_5", "dr_grpo_3_6", "dapo_3_7"])
def test_gradient_tables(make, value, grad):
  loss, _, g = loss_and_grad(make(), worked_example_ctx())
  assert loss == pytest.approx(value, abs=ATOL)
  np.testing.assert_allclose(g, grad, atol=ATOL)
  assert np.all(g[WE_MASK == 0] == 0.0), "padded positions must have exactly zero gradient"


@pytest.mark.parametrize("level", ["sequence", "token"])
def test_gradient_table_3_8_gspo(level):
  loss, _, g = loss_and_grad(ob.presets.gspo(level=level), worked_example_ctx())
  assert loss == pytest.approx(0.06930180, abs=ATOL)
  np.testing.assert_allclose(g, np.asarray(GRAD_3_8_ROWS)[:, None] * WE_MASK, atol=ATOL)


def test_gradient_table_3_8_gspo_wide_clip_rows_0_and_6():
  _, _, g = loss_and_grad(ob.presets.gspo(eps_low=0.2, eps_high=0.2), worked_example_ctx())
  rows = list(GRAD_3_8_ROWS)
  rows[0], rows[6] = -0.029098, -0.013406
  np.testing.assert_allclose(g, np.asarray(rows)[:, None] * WE_MASK, atol=ATOL)


def test_grpo_gradient_under_jit_matches_table_3_5():
  ctx = worked_example_ctx()
  objective = ob.presets.grpo()
  grad = jax.jit(jax.grad(lambda lp: objective(ctx.replace(logp=lp))[0]))(ctx.logp)
  np.testing.assert_allclose(grad, GRAD_3_5, atol=ATOL)
