"""Loss transforms for group-relative RL of language models (GRPO and its family).

The protocol (`STYLE.md` §2): a `LossTransform(init, update, requires)` maps a `LossContext` to a
new one; `chain`/`named_chain` compose them; an `Objective(rollout, loss)` runs the rollout chain
once per batch (advantages, shaping, group filters) and the loss chain per minibatch inside
`value_and_grad`. `presets` holds one function per method with the paper's defaults.

  ctx = LossContext.create(logp=..., old_logp=..., ref_logp=..., mask=..., rewards=...,
                           group_size=G)
  loss, metrics = presets.grpo()(ctx)
"""
from jaxrl_llm.objectives import presets
from jaxrl_llm.objectives.advantages import (
    SCALES, group_advantage, reinforce_pp_advantage, rloo_advantage)
from jaxrl_llm.objectives.aggregation import AGGREGATION_MODES, aggregate
# Attention-Illuminates (spec B13): preplan-and-anchor credit from attention statistics.
from jaxrl_llm.objectives.attention_credit import (
    ATTENTION_STRATEGIES, attention_credit, selected_tokens, top_fraction)
from jaxrl_llm.objectives.base import (
    EmptyState, LossTransform, Objective, ObjectiveState, ScalarOrSchedule, Schedule, at_step,
    identity, metric_values, stateless)
from jaxrl_llm.objectives.combine import chain, named_chain
from jaxrl_llm.objectives.context import LossContext, Mean, split_rows, sum_means
# LaSeR (spec B8): last-token self-rewarding.
from jaxrl_llm.objectives.laser import (
    SR_PHASES, self_reward_advantage, self_reward_loss, self_reward_score, self_reward_weights)
from jaxrl_llm.objectives.numerics import (
    KL_ESTIMATORS, GroupStats, group_all_equal, group_stats, group_sum, kl_estimate)
from jaxrl_llm.objectives.presets import (
    dapo, dr_grpo, grpo, gspo, reinforce_pp, rloo, trl_compatible)
# Methods with extra model calls (spec B11 PAV, B12 Critique-GRPO).
from jaxrl_llm.objectives.process import (
    bok_value, critique_shaping, critique_surrogate, pav_advantage, step_progress)
# Process rewards from a judge (spec B6 PPR / ReNorm, B7 Posterior-GRPO).
from jaxrl_llm.objectives.process_rewards import (
    THINK_NORMS, posterior_reward, ppr_advantage, renorm_step_rewards, think_scores)
from jaxrl_llm.objectives.ratios import (
    GSPO_LEVELS, clipped_surrogate, gspo_clip, ppo_clip, reinforce, sequence_log_ratio)
from jaxrl_llm.objectives.regularizers import entropy_bonus, kl_in_reward, kl_penalty
from jaxrl_llm.objectives.seed import (
    RefreshState, divergence_weights, future_kl_weights, llds, low_prob_weights, nsr_clip,
    owpo_weights, reference_refresh, refresh_due, thr_weights, unlikeliness_reward)
# Methods that regroup the batch (spec B2 Stratified GRPO, B4 COPO, B5 D3S).
from jaxrl_llm.objectives.seed_groups import (
    COPO_GATES, D3S_SCOPES, answer_entropy, copo_advantage, copo_clip, d3s_downsample,
    stratified_advantage, variance_max_subset)
from jaxrl_llm.objectives.shaping import overlong_penalty, overlong_reward, rescale_rewards
from jaxrl_llm.objectives.weights import (
    drop_truncated, drop_uniform_groups, tis_weights, top_entropy)

# The public transform factories: every one of them goes through the conformance suite.
TRANSFORMS = (
    # baselines (spec part A)
    "group_advantage", "rloo_advantage", "reinforce_pp_advantage", "overlong_penalty",
    "rescale_rewards", "drop_uniform_groups", "drop_truncated", "tis_weights", "top_entropy",
    "ppo_clip", "gspo_clip", "reinforce", "kl_penalty", "kl_in_reward", "entropy_bonus",
    "aggregate",
    # seed papers I (spec/seed_methods.md, B1)
    "llds", "nsr_clip", "owpo_weights", "reference_refresh", "low_prob_weights",
    "divergence_weights", "unlikeliness_reward", "future_kl_weights", "thr_weights",
    # seed papers II (B2-B13; their host-side inputs come from `training.hooks`)
    "stratified_advantage", "copo_advantage", "copo_clip", "d3s_downsample", "ppr_advantage",
    "posterior_reward", "self_reward_weights", "self_reward_loss", "self_reward_advantage",
    "pav_advantage", "critique_surrogate", "attention_credit",
)

__all__ = [
    "AGGREGATION_MODES", "ATTENTION_STRATEGIES", "COPO_GATES", "D3S_SCOPES", "EmptyState",
    "GSPO_LEVELS", "GroupStats", "KL_ESTIMATORS", "LossContext", "LossTransform", "Mean",
    "Objective", "ObjectiveState", "RefreshState", "SCALES", "SR_PHASES", "ScalarOrSchedule",
    "Schedule", "THINK_NORMS", "TRANSFORMS", *TRANSFORMS, "answer_entropy", "at_step",
    "bok_value", "chain", "clipped_surrogate", "critique_shaping", "dapo", "dr_grpo",
    "group_all_equal", "group_stats", "group_sum", "grpo", "gspo", "identity", "kl_estimate",
    "metric_values", "named_chain", "overlong_reward", "presets", "refresh_due", "reinforce_pp",
    "renorm_step_rewards", "rloo", "selected_tokens", "self_reward_score", "sequence_log_ratio",
    "split_rows", "stateless", "step_progress", "sum_means", "think_scores", "top_fraction",
    "trl_compatible", "variance_max_subset",
]
