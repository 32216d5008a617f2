"""Presets: one function per method, returning its `Objective` with the paper's defaults.

A preset's signature is the schema of its config section: `default_config(name)` builds an
`ml_collections.ConfigDict` from it (so every default lives in one place) and `build(config)` checks
the keys against it. Later issues add their methods with `@register`.

  obj = presets.grpo()                                   # paper defaults
  obj = presets.build("dapo", eps_high=0.3)              # by name, with overrides
  obj = presets.build(presets.default_config("gspo"))    # from a config section
"""
import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from jaxrl_llm.objectives import advantages as adv_lib
from jaxrl_llm.objectives import seed
from jaxrl_llm.objectives.aggregation import aggregate, check_mode
from jaxrl_llm.objectives.base import Objective
from jaxrl_llm.objectives.combine import chain
from jaxrl_llm.objectives.ratios import gspo_clip, ppo_clip, reinforce
from jaxrl_llm.objectives.regularizers import kl_in_reward, kl_penalty
from jaxrl_llm.objectives.shaping import overlong_penalty, rescale_rewards
from jaxrl_llm.objectives.weights import drop_truncated, drop_uniform_groups

PRESETS: dict[str, Callable[..., Objective]] = {}


def register(fn: Callable[..., Objective]) -> Callable[..., Objective]:
  """Adds a preset to the registry under its function name (all arguments keyword, defaulted)."""
  for p in inspect.signature(fn).parameters.values():
    if p.default is inspect.Parameter.empty:
      raise TypeError(f"preset {fn.__name__}: argument {p.name!r} needs a default (the signature "
                      "is the config schema)")
  PRESETS[fn.__name__] = fn
  return fn


def _suggest(name: str, valid) -> str:
  close = difflib.get_close_matches(name, list(valid), n=1)
  return f"; did you mean {close[0]!r}?" if close else ""


def get(name: str) -> Callable[..., Objective]:
  """The preset called `name`, or a ValueError with the closest registered name."""
  if name not in PRESETS:
    raise ValueError(f"unknown preset {name!r}{_suggest(name, PRESETS)} "
                     f"(registered presets: {sorted(PRESETS)})")
  return PRESETS[name]


def default_config(name: str) -> ml_collections.ConfigDict:
  """The config section of preset `name`: `{"name": name, <argument>: <default>, ...}`."""
  fn = get(name)
  values = {"name": name}
  for p in inspect.signature(fn).parameters.values():
    values[p.name] = p.default
  return ml_collections.ConfigDict(values)


def build(config_or_name: str | Mapping[str, Any] | ml_collections.ConfigDict,
          **overrides: Any) -> Objective:
  """Builds the objective of a config section (or a preset name), checking every key.

  Unknown keys fail with the closest valid key, so a typo never silently falls back to a default.
  """
  if isinstance(config_or_name, str):
    name, kwargs = config_or_name, {}
  else:
    kwargs = (config_or_name.to_dict() if isinstance(config_or_name, ml_collections.ConfigDict)
              else dict(config_or_name))
    if "name" not in kwargs:
      raise ValueError("an objective config needs a 'name' key naming the preset "
                       f"(registered presets: {sorted(PRESETS)})")
    name = kwargs.pop("name")
  kwargs.update(overrides)
  fn = get(name)
  params = inspect.signature(fn).parameters
  for key in kwargs:
    if key not in params:
      raise ValueError(f"unknown key {key!r} for preset {name!r}{_suggest(key, params)} "
                       f"(valid keys: {sorted(params)})")
  return fn(**kwargs)


KL_PLACEMENTS = ("loss", "reward")


def _placement(value):
  if value not in KL_PLACEMENTS:
    raise ValueError(f"unknown kl_placement {value!r}; valid placements: {KL_PLACEMENTS}")
  return value


def _kl(kl_coef, kl_estimator):
  return (kl_penalty(kl_coef, kl_estimator),) if kl_coef else ()


# --------------------------------------------------------------------------------------------------
# Baselines (spec/baselines_and_more.md part A)


@register
def grpo(eps_low: float = 0.2, eps_high: float = 0.2, dual_clip: float | None = None,
         kl_coef: float = 0.04, kl_estimator: str = "k3", adv_eps: float = 1e-6,
         aggregation: str = "seq_mean_token_mean", norm_len: float | None = None,
         adv_clip: float | None = None) -> Objective:
  """GRPO (Shao et al., DeepSeekMath, arXiv 2402.03300).

    A_b = (r_b − μ_{g(b)}) / (σ_{g(b)} + ε)                     (Bessel σ, ε = 1e-6 as verl)
    ℓ_{b,t} = −min(ρA_b, clip(ρ, 1−ε_low, 1+ε_high)A_b) + β·k3_{b,t}
    L = (1/N') Σ_b (1/|o_b|) Σ_t m_{b,t} ℓ_{b,t}                 (seq_mean_token_mean)
  Defaults: ε = 0.2 (TRL/verl), β = `kl_coef` = 0.04 with the k3 estimator, no dual clip.
  `aggregation`/`norm_len` choose another reduction (see `aggregate`). β = 0 drops the KL term and
  with it the reference forward pass. `adv_clip` = c bounds A to [−c, c] (none by default;
  Knapsack RL's recipe clips at 5, `configs/knapsack.py`).
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps, clip=adv_clip)),
      loss=chain(ppo_clip(eps_low, eps_high, dual_clip), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation), norm=norm_len))).check()


@register
def dr_grpo(eps_low: float = 0.2, eps_high: float = 0.2, kl_coef: float = 0.0,
            kl_estimator: str = "k3", norm_len: float = 3000,
            aggregation: str = "seq_mean_token_sum_norm") -> Objective:
  """Dr. GRPO (Liu et al., "Understanding R1-Zero-Like Training", arXiv 2503.20783).

    A_b = r_b − μ_{g(b)}                                         (no std division)
    ℓ_{b,t} = −min(ρA_b, clip(ρ, 1−ε, 1+ε)A_b)  (+ β·k3 if β > 0; the paper uses β = 0)
    L = (1/N) Σ_b Σ_t m_{b,t} ℓ_{b,t} / L_gen                    (seq_mean_token_sum_norm)
  Defaults (oat / understand-r1-zero): ε = 0.2, β = 0, L_gen = `norm_len` = 3000 (the generation
  budget, `generate_max_length`). Every valid token has the same weight 1/(N·L_gen).
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("none")),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation), norm=norm_len))).check()


@register
def dapo(eps_low: float = 0.2, eps_high: float = 0.28, dual_clip: float | None = None,
         max_len: int = 20480, cache_len: int = 4096, overlong_coef: float = 1.0,
         incorrect_reward: float = -1.0, correct_reward: float = 1.0,
         filter_groups: bool = True, filter_key: str | None = None,
         mask_truncated: bool = False, kl_coef: float = 0.0, kl_estimator: str = "k3",
         adv_eps: float = 1e-6, aggregation: str = "token_mean") -> Objective:
  """DAPO (Yu et al., arXiv 2503.14476).

    filter:    m_{b,t} ← 0 for groups whose rewards are all equal (dynamic sampling, in-batch half;
               on the raw rewards, or `extras[filter_key]` e.g. accuracy; refilling is the loop's)
    reward:    r_b ← R⁻ + (R⁺ − R⁻)·r_b  (verifier {0, 1} → the paper's ±1)
               r_b ← r_b + coef·R_len(|o_b|), R_len = 0 / ((L_max−L_cache) − L)/L_cache / −1
    advantage: A_b = (r_b − μ_{g(b)}) / (σ_{g(b)} + ε)
    loss:      ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A);  L = Σ m ℓ / Σ m   (token_mean), β = 0
  Defaults (paper and verl recipe): ε_low = 0.2, ε_high = 0.28, L_max = 20480, L_cache = 4096,
  overlong coef 1, no KL, no overlong filtering (`mask_truncated`, reads `extras["truncated"]`),
  no dual clip (the verl recipe sets c = 10; pass `dual_clip=10.0`).
  Reward scale: the paper scores answers ±1 (§2.4) and adds R_len ∈ [−1, 0] (Eq. 13), as the
  official launcher does (penalty factor 1, added to the ±1 score). The library's verifiers score
  {0, 1}, so the rollout first maps them onto [R⁻, R⁺] = [`incorrect_reward`, `correct_reward`] =
  [−1, 1]; on {0, 1} the penalty would weigh twice as much and push a correct answer at the length
  limit below the group mean. `incorrect_reward=0` restores the {0, 1} scale. The DAPO-family
  presets (`fipo`, `dapo_lowprob`, `dapo_divergence`, `dapo_nsr`, `owpo`) share this rollout.
  """
  rollout = _dapo_rollout(filter_groups, filter_key, mask_truncated, max_len, cache_len,
                          overlong_coef, adv_eps, incorrect_reward, correct_reward)
  return Objective(
      rollout=chain(*rollout),
      loss=chain(ppo_clip(eps_low, eps_high, dual_clip), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


def _dapo_rollout(filter_groups, filter_key, mask_truncated, max_len, cache_len, overlong_coef,
                  adv_eps, incorrect_reward, correct_reward, shaping=()):
  """DAPO's rollout chain: group filter, overlong filter, ±1 rewards, overlong shaping, GRPO's
  advantage. The filters see the verifier's scores (uniformity is unchanged by the affine map)."""
  rollout = []
  if filter_groups:
    rollout.append(drop_uniform_groups(filter_key))
  if mask_truncated:
    rollout.append(drop_truncated())
  if (incorrect_reward, correct_reward) != (0.0, 1.0):
    rollout.append(rescale_rewards(incorrect_reward, correct_reward))
  if overlong_coef:
    rollout.append(overlong_penalty(max_len, cache_len, overlong_coef))
  rollout.extend(shaping)
  rollout.append(adv_lib.group_advantage("group", eps=adv_eps))
  return rollout


@register
def gspo(eps_low: float = 3e-4, eps_high: float = 4e-4, level: str = "sequence",
         kl_coef: float = 0.0, kl_estimator: str = "k3", adv_eps: float = 1e-6,
         aggregation: str = "seq_mean_token_mean") -> Objective:
  """GSPO / GSPO-token (Zheng et al., Qwen, arXiv 2507.18071).

    s_b = exp((1/|o_b|) Σ_t m_{b,t}(logp − old_logp));  A_b = GRPO's group-normalised advantage
    L = (1/N') Σ_b −min(s_b A_b, clip(s_b, 1−ε_low, 1+ε_high) A_b)
  `level="token"` is GSPO-token (`s_{b,t} = sg(s_b)·exp(logp − sg(logp))`), equal to GSPO when the
  advantage is per sequence. Defaults (verl's Qwen3-30B example): ε = (3e-4, 4e-4), β = 0,
  seq_mean_token_mean (verl forces it for GSPO). Clipping only binds when a rollout batch feeds
  several minibatches.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(gspo_clip(eps_low, eps_high, level), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


RLOO_SURROGATES = ("reinforce", "ppo_clip")


@register
def rloo(surrogate: str = "reinforce", eps_low: float = 0.2, eps_high: float = 0.2,
         kl_coef: float = 0.0, kl_placement: str = "reward", kl_estimator: str = "k3",
         aggregation: str = "seq_mean_token_sum") -> Objective:
  """RLOO (Ahmadian et al., "Back to Basics", arXiv 2402.14740; Kool et al. 2019).

    A_b = r_b − (1/(n−1)) Σ_{j∈G(b), j≠b} r_j
    paper:  r_b ← r_b − β Σ_t m(old_logp − ref_logp);  L = −(1/N) Σ_b A_b Σ_t m logp
  Defaults: the paper's REINFORCE surrogate with seq_mean_token_sum and the KL folded into the
  reward; β = `kl_coef` = 0 here because the paper tunes it per task (set it to enable; this also
  makes the trainer compute `ref_logp`). `surrogate="ppo_clip"` with `aggregation="token_mean"` is
  verl/TRL's RLOO (leave-one-out advantage inside the PPO surrogate); `kl_placement="loss"`
  puts the KL in the loss with `kl_estimator` instead.
  """
  if surrogate not in RLOO_SURROGATES:
    raise ValueError(f"unknown surrogate {surrogate!r}; valid surrogates: {RLOO_SURROGATES}")
  in_reward = _placement(kl_placement) == "reward" and bool(kl_coef)
  rollout = ((kl_in_reward(kl_coef),) if in_reward else ()) + (adv_lib.rloo_advantage(),)
  pg = reinforce() if surrogate == "reinforce" else ppo_clip(eps_low, eps_high)
  kl = () if in_reward else _kl(kl_coef, kl_estimator)
  return Objective(rollout=chain(*rollout),
                   loss=chain(pg, *kl, aggregate(check_mode(aggregation)))).check()


@register
def reinforce_pp(eps_low: float = 0.2, eps_high: float = 0.2, kl_coef: float = 0.0,
                 kl_estimator: str = "k3", kl_placement: str = "loss",
                 adv_eps: float = 1e-8, aggregation: str = "token_mean") -> Objective:
  """REINFORCE++-baseline (Hu et al., arXiv 2501.03262).

    Ã_{b,t} = (r_b − μ_{g(b)}) m_{b,t};  A = (Ã − mean_tokens(Ã)) / sqrt(var_tokens(Ã) + 1e-8)
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A)  (+ β·KL);  L = Σ m ℓ / Σ m     (token_mean, verl default)
  Whitening statistics run over the valid tokens of the whole batch. Defaults: ε = 0.2, β = 0
  (spec default; the KL placement of the paper is uncertain: `kl_placement="reward"` folds a k1
  KL into the reward, "loss" adds a loss term with `kl_estimator`).
  """
  in_reward = _placement(kl_placement) == "reward" and bool(kl_coef)
  rollout = ((kl_in_reward(kl_coef),) if in_reward else ()) + (
      adv_lib.reinforce_pp_advantage(adv_eps),)
  kl = () if in_reward else _kl(kl_coef, kl_estimator)
  return Objective(rollout=chain(*rollout),
                   loss=chain(ppo_clip(eps_low, eps_high), *kl,
                              aggregate(check_mode(aggregation)))).check()


TRL_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
TRL_SCALE_REWARDS = ("group", "batch", "none")
TRL_IS_LEVELS = ("token", "sequence")


@register
def trl_compatible(loss_type: str = "dapo", scale_rewards: str = "group", beta: float = 0.0,
                   epsilon: float = 0.2, epsilon_high: float | None = None,
                   max_completion_length: int = 256, mask_truncated_completions: bool = False,
                   importance_sampling_level: str = "token") -> Objective:
  """TRL's `GRPOTrainer` loss (TRL `GRPOConfig`, main @ f2cd5771), argument for argument.

    advantage ("scale_rewards"): group → (r − μ_g)/(σ_g + 1e-4); batch → (r − μ_g)/(σ_batch + 1e-4)
      with σ_batch the Bessel std of all rewards; none → r − μ_g
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε_high)A) + β·k3, added per token before aggregation
    loss_type: grpo    → per-row token mean, mean over all rows (empty rows count as zeros)
               bnpo    → token mean of each micro-batch, averaged over micro-batches
               dr_grpo → Σ m ℓ / (N · max_completion_length)
               dapo    → Σ m ℓ / (global token count)
  Defaults are TRL's: loss_type "dapo", scale_rewards "group", β = 0, ε = 0.2, ε_high = ε,
  max_completion_length 256, no truncation mask, token-level ratios (`"sequence"` is GSPO's).
  `scale_rewards` True/False are TRL's aliases of "group"/"none". With one process and no
  accumulation bnpo equals dapo.
  """
  if scale_rewards is True:
    scale_rewards = "group"
  elif scale_rewards is False:
    scale_rewards = "none"
  for what, value, valid in (("loss_type", loss_type, TRL_LOSS_TYPES),
                             ("scale_rewards", scale_rewards, TRL_SCALE_REWARDS),
                             ("importance_sampling_level", importance_sampling_level,
                              TRL_IS_LEVELS)):
    if value not in valid:
      raise ValueError(f"unknown {what} {value!r}{_suggest(str(value), valid)} "
                       f"(valid: {valid})")
  eps_high = epsilon if epsilon_high is None else epsilon_high
  agg = {"grpo": aggregate("seq_mean_token_mean", count_empty_rows=True),
         "bnpo": aggregate("token_mean", micro_batch_local=True),
         "dr_grpo": aggregate("seq_mean_token_sum_norm", norm=max_completion_length),
         "dapo": aggregate("token_mean")}[loss_type]
  rollout = (drop_truncated(),) if mask_truncated_completions else ()
  rollout += (adv_lib.group_advantage(scale_rewards, eps=1e-4),)
  pg = (ppo_clip(epsilon, eps_high) if importance_sampling_level == "token"
        else gspo_clip(epsilon, eps_high, "sequence"))
  return Objective(rollout=chain(*rollout),
                   loss=chain(pg, *_kl(beta, "k3"), agg)).check()


# --------------------------------------------------------------------------------------------------
# Seed papers (spec/seed_methods.md; baselines_and_more.md B1). Methods that read logp − old_logp
# act only from the second update of a rollout batch: run them with mu >= 2.


@register
def grpo_llds(coef: float = 0.2, gate: str = "action", norm: str = "per_response",
              answer_coef: float | None = None, eps_low: float = 0.2, eps_high: float = 0.2,
              kl_coef: float = 0.001, kl_estimator: str = "k3", adv_eps: float = 1e-6,
              aggregation: str = "seq_mean_token_mean") -> Objective:
  """Search-R1 GRPO + LLDS (Deng et al., arXiv 2512.04220).

    L = GRPO(ε = 0.2, β·k3 with β = 0.001, seq_mean_token_mean) + λ·L_LLDS
    L_LLDS = (1/|P|) Σ_{b∈P} (1/L_b) Σ_a G_{b,a} Σ_{t∈S_{b,a}} max(0, old_logp − logp)
  Defaults (paper, Search-R1 recipe): λ = 0.2, action gate, paper normalisation (`norm=
  "token_mean"` with `aggregation="token_mean"` is the official code's), no answer masking
  (`answer_coef=β` enables LLDS-MA, reading `extras["answer_mask"]`). Needs mu >= 2 (the paper's
  512/256 batch gives two optimiser steps per rollout). See `seed.llds`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 seed.llds(coef, gate, norm, answer_coef),
                 aggregate(check_mode(aggregation)))).check()


@register
def gspo_llds(coef: float = 0.2, gate: str = "action", norm: str = "per_response",
              answer_coef: float | None = None, eps_low: float = 3e-4, eps_high: float = 4e-4,
              kl_coef: float = 0.0, kl_estimator: str = "k3", adv_eps: float = 1e-6,
              aggregation: str = "seq_mean_token_mean") -> Objective:
  """GSPO + LLDS (arXiv 2512.04220 §GSPO): LLDS added unchanged to GSPO's sequence-ratio loss.

  Defaults: GSPO's ε = (3e-4, 4e-4), β = 0, seq_mean_token_mean; LLDS λ = 0.2, action gate,
  paper normalisation. Needs mu >= 2. See `seed.llds` and `gspo`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(gspo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 seed.llds(coef, gate, norm, answer_coef),
                 aggregate(check_mode(aggregation)))).check()


@register
def dapo_nsr(eps_low: float = 0.2, eps_high: float = 0.28, u_min: float | None = None,
             dual_clip: float | None = None, stochastic: bool = True,
             max_len: int = 20480, cache_len: int = 4096, overlong_coef: float = 1.0,
             incorrect_reward: float = -1.0, correct_reward: float = 1.0,
             filter_groups: bool = True, adv_eps: float = 1e-6) -> Objective:
  """DAPO with Near-boundary Stochastic Rescue (arXiv 2605.22703), token level.

    rescued = [A>0, ρ>1+ε_high, uρ ≤ 1+ε_high] or [A<0, ρ<1−ε_low, ρ/u ≥ 1−ε_low],
    u ~ U(u_min, 1);  ℓ = −ρA if rescued else ℓ_clip(ρ, A);  L = token_mean
  Defaults: DAPO's (ε = 0.2/0.28, overlong shaping, group filter), u_min = 1/(1+ε_high)
  (reconstruction). Needs `ctx.rng` and mu >= 2. See `seed.nsr_clip`.
  """
  return Objective(
      rollout=chain(*_dapo_rollout(filter_groups, None, False, max_len, cache_len, overlong_coef,
                                   adv_eps, incorrect_reward, correct_reward)),
      loss=chain(seed.nsr_clip(eps_low, eps_high, u_min, dual_clip, "token", stochastic),
                 aggregate("token_mean"))).check()


@register
def gspo_nsr(eps_low: float = 3e-4, eps_high: float = 4e-4, u_min: float | None = None,
             stochastic: bool = True, adv_eps: float = 1e-6) -> Objective:
  """GSPO with Near-boundary Stochastic Rescue (arXiv 2605.22703), sequence level.

  The rescue rule on GSPO's sequence ratio s_b, one draw per row (whole rows rescued or not).
  Defaults: GSPO's ε = (3e-4, 4e-4), seq_mean_token_mean, u_min = 1/(1+ε_high)
  (reconstruction). Needs `ctx.rng` and mu >= 2. See `seed.nsr_clip`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(seed.nsr_clip(eps_low, eps_high, u_min, None, "sequence", stochastic),
                 aggregate("seq_mean_token_mean"))).check()


@register
def owpo(eps_acc: float = 0.5, eps_lock: float = 0.2, refresh_every: int = 50,
         deviation_source: str = "current", eps_low: float = 0.2, eps_high: float = 0.28,
         max_len: int = 20480, cache_len: int = 4096, overlong_coef: float = 1.0,
         incorrect_reward: float = -1.0, correct_reward: float = 1.0,
         filter_groups: bool = True, adv_eps: float = 1e-6) -> Objective:
  """OWPO, One-Way Policy Optimization (arXiv 2605.22156), on DAPO.

    d = sign(Â)(logp − ref_logp);  w = clip(exp(−d), 1 − ε_lock, 1 + ε_acc);  A' = sg(w)Â
    L = token_mean(ℓ_clip(ρ, A')), no KL term;  π_ref ← π_θ every K steps
  Defaults (reconstruction, not in the sources): ε_acc = 0.5, ε_lock = 0.2, K = 50; DAPO base.
  The trainer reads `seed.refresh_due(objective_state)` and copies the policy into the reference
  when it is true. With π_θ == π_ref it is DAPO exactly. See `seed.owpo_weights`.
  """
  return Objective(
      rollout=chain(*_dapo_rollout(filter_groups, None, False, max_len, cache_len, overlong_coef,
                                   adv_eps, incorrect_reward, correct_reward)),
      loss=chain(seed.owpo_weights(eps_acc, eps_lock, deviation_source),
                 ppo_clip(eps_low, eps_high), seed.reference_refresh(refresh_every),
                 aggregate("token_mean"))).check()


@register
def dapo_lowprob(alpha: float = 0.2, eps_low: float = 0.2, eps_high: float = 0.28,
                 max_len: int = 20480, cache_len: int = 4096, overlong_coef: float = 1.0,
                 incorrect_reward: float = -1.0, correct_reward: float = 1.0,
                 filter_groups: bool = True, adv_eps: float = 1e-6) -> Objective:
  """DAPO with Δlog p low-probability reweighting ("Direction of RLVR updates", arXiv 2603.22117).

    A' = (1 + α(1 − exp(old_logp)))·Â   (detached; α = 0 is DAPO)
  Defaults: α = 0.2 (the sources give α ∈ [0.1, 0.2]) on DAPO (ε = 0.2/0.28, overlong shaping,
  group filter). The test-time extrapolation half of the paper lives in the sampler. See
  `seed.low_prob_weights`.
  """
  return Objective(
      rollout=chain(*_dapo_rollout(filter_groups, None, False, max_len, cache_len, overlong_coef,
                                   adv_eps, incorrect_reward, correct_reward)),
      loss=chain(seed.low_prob_weights(alpha), ppo_clip(eps_low, eps_high),
                 aggregate("token_mean"))).check()


@register
def dapo_divergence(alpha: float = 200.0, scale: float = 0.3, eps_low: float = 0.2,
                    eps_high: float = 0.28, max_len: int = 20480, cache_len: int = 4096,
                    overlong_coef: float = 1.0, incorrect_reward: float = -1.0,
                    correct_reward: float = 1.0, filter_groups: bool = True,
                    adv_eps: float = 1e-6) -> Objective:
  """DAPO with divergence-weighted advantages ("Sparse but Critical", arXiv 2603.22446).

    KL = exp(δ) − 1 − δ;  w = 1 + s(σ(αKL) − ½);  A' = sg(w)Â
  Defaults: s = 0.3, α = 200 (high-KL boost; α = −200 is the low-KL boost; |α| is a
  reconstruction). Needs mu >= 2. See `seed.divergence_weights`.
  """
  return Objective(
      rollout=chain(*_dapo_rollout(filter_groups, None, False, max_len, cache_len, overlong_coef,
                                   adv_eps, incorrect_reward, correct_reward)),
      loss=chain(seed.divergence_weights(alpha, scale), ppo_clip(eps_low, eps_high),
                 aggregate("token_mean"))).check()


@register
def unlikeliness(beta: float = 0.25, variant: str = "code", filter_groups: bool = True,
                 eps_low: float = 0.2, eps_high: float = 0.2, kl_coef: float = 0.1,
                 kl_estimator: str = "k3", adv_eps: float = 1e-6,
                 aggregation: str = "token_mean") -> Objective:
  """GRPO with the unlikeliness reward ("Rewarding the Unlikely", arXiv 2506.02355).

    r'_b = r_b(1 − β·u_b/n)  (code; "paper": r_b(1 − β(u_b+1)/n)), u_b = ascending rank of the
    row's mean old log-prob in its group;  A = GRPO(r');  ℓ = ℓ_clip(ρ, A) + 0.1·k3, token_mean
  Defaults (official code): β = 0.25, code form, groups with 0 or n successes dropped (on the raw
  rewards), ε = 0.2, KL coefficient 0.1 (k3), token-level loss. The recipe runs 2 PPO epochs per
  batch (mu = 2), which the trainer config sets. See `seed.unlikeliness_reward`.
  """
  rollout = [drop_uniform_groups()] if filter_groups else []
  rollout += [seed.unlikeliness_reward(beta, variant),
              adv_lib.group_advantage("group", eps=adv_eps)]
  return Objective(
      rollout=chain(*rollout),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


@register
def fipo(half_life: float = 32.0, weight_eps_low: float = 0.2, weight_eps_high: float = 0.2,
         clip_high_only: bool = False, dual_clip: float = 10.0, safety_threshold: float = 4.0,
         eps_low: float = 0.2, eps_high: float = 0.28, max_len: int = 20480,
         cache_len: int = 4096, overlong_coef: float = 1.0, incorrect_reward: float = -1.0,
         correct_reward: float = 1.0, filter_groups: bool = True,
         adv_eps: float = 1e-6) -> Objective:
  """FIPO, Future-KL Influenced Policy Optimization (arXiv 2603.19835), on DAPO.

    F_t = Σ_{k≥t} γ^{k−t} m_k 1[ρ_k ≤ c] δ_k,  γ = 2^(−1/τ);  f = clip(exp(F), 1−ε_f, 1+ε_f)
    f ← clip(f, 0.8, 1) where Â < 0, ρ > κ;  A' = sg(f)Â;  DAPO loss with dual clip c, token_mean
  Defaults: τ = 32, ε_f = 0.2 (symmetric, official 32B run), c = 10, κ = 4; DAPO's ε = 0.2/0.28,
  overlong shaping and group filter. Needs mu >= 2. See `seed.future_kl_weights`.
  """
  return Objective(
      rollout=chain(*_dapo_rollout(filter_groups, None, False, max_len, cache_len, overlong_coef,
                                   adv_eps, incorrect_reward, correct_reward)),
      loss=chain(seed.future_kl_weights(half_life, weight_eps_low, weight_eps_high,
                                        clip_high_only, dual_clip, safety_threshold),
                 ppo_clip(eps_low, eps_high, dual_clip), aggregate("token_mean"))).check()


THR_BASES = ("grpo", "gspo_token")


@register
def grpo_thr(p: float = 0.2, beta: float = 1.0, keep_mode: str = "anchor",
             quantile: float = 0.15, base: str = "grpo", eps_low: float = 0.2,
             eps_high: float = 0.2, kl_coef: float = 0.0, kl_estimator: str = "k3",
             adv_eps: float = 1e-6, aggregation: str = "seq_mean_token_mean") -> Objective:
  """GRPO (or GSPO-token) with THR reweighting (Token Hidden Reward, arXiv 2510.03669).

    THR_{j,k} = c_j Â_j g_{j,k}ᵀ M⁺ h_{j,k},  M⁺ = Σ_{correct} g hᵀ;  keep = 1[|THR| > τ]
    A' = sg(keep·(1 + p·sign(THR)))·Â;  then the clipped GRPO / GSPO-token surrogate
  Defaults: p = 0.2 (exploit; p = −0.2 explores), anchor threshold β = 1 (or `keep_mode=
  "quantile"` with 15 %), GRPO ε = 0.2 and β_KL = 0 (reconstruction: p's magnitude and the KL
  coefficient are not in the sources); `base="gspo_token"` uses GSPO-token with ε = (3e-4, 4e-4)
  unless given. The trainer must return final-layer hidden states (`requires` has "hidden") and
  put the unembedding in `extras["unembedding"]`. See `seed.thr_weights`.
  """
  if base not in THR_BASES:
    raise ValueError(f"unknown THR base {base!r}; valid bases: {THR_BASES}")
  check_mode(aggregation)
  step = "token_mean" if aggregation == "token_mean" else "seq_mean_token_mean"
  pg = (ppo_clip(eps_low, eps_high) if base == "grpo"
        else gspo_clip(eps_low, eps_high, "token"))
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(seed.thr_weights(p, beta, keep_mode, quantile, step), pg,
                 *_kl(kl_coef, kl_estimator), aggregate(aggregation))).check()


# --------------------------------------------------------------------------------------------------
# Methods with extra model calls (spec B11 PAV, B12 Critique-GRPO): transforms in
# objectives/process.py, the hooks that make the model calls in training/hooks_models.py.
from jaxrl_llm.objectives import process as process_lib  # noqa: E402  pylint: disable=g-import-not-at-top
from jaxrl_llm.objectives.regularizers import entropy_bonus  # noqa: E402  pylint: disable=g-import-not-at-top


@register
def pav(alpha: float = 1.0, baseline: str = "rloo", eps_low: float = 0.2, eps_high: float = 0.2,
        kl_coef: float = 0.0, kl_estimator: str = "k3",
        aggregation: str = "seq_mean_token_mean", norm_len: float | None = None) -> Objective:
  """Rewarding Progress: outcome advantage + α · prover progress per step (Setlur et al., PAV,
  arXiv 2410.08146; spec B11).

    A_{b,t} = A^{out}_b + α (V̂^μ(s_{h(t)+1}) − V̂^μ(s_{h(t)})),   A^{out} = RLOO (or "mean")
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A) (+ β·KL),  L = seq_mean_token_mean
  Needs the `pav_prover` hook (config.hooks.pav_prover: step_id, step_value from Monte-Carlo
  rollouts of a BoK(π) prover or another model). Defaults [reconstruction, spec §6]: α = 1 (grid
  {1, 3, 5}), RLOO outcome baseline; PPO clip ε = 0.2 (= REINFORCE on the first update of a batch,
  as the paper's online RL), no KL. See `process.pav_advantage`.
  """
  check_mode(aggregation)
  return Objective(
      rollout=chain(process_lib.pav_advantage(alpha, baseline)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(aggregation, norm=norm_len))).check()


@register
def critique_grpo(gamma: float = 0.1, clip_eps: float | None = None,
                  entropy_coef: float = 0.001, kl_coef: float = 0.0, kl_estimator: str = "k3",
                  norm_len: float | None = None) -> Objective:
  """Critique-GRPO (Zhang et al., arXiv 2506.03106; spec B12, released run's switches).

    A_b = r_b − μ_{g(b)}  (mean over all n rows of the group, the refinement included; no std)
    on-policy rows: ℓ = −ρA (unclipped);  refinement rows: ℓ = −f(p)A, f(p) = p/(p + γ)
    L = (1/N) Σ_{b,t} m ℓ / T_max − c_H · entropy     (seq_mean_token_sum_norm, T_max = `norm_len`,
                                                      default the padded completion width)
  Needs the `critique` hook (config.hooks.critique: refinements and extras["offpolicy"]).
  Defaults [code]: γ = 0.1, no clip (`clip_eps` clips on-policy rows), entropy coefficient
  c_H = 0.001, β = 0. Deviations: the library's aggregation divides by N (a constant factor of the
  learning rate), and the entropy term goes through the same aggregation as the policy term
  (the code takes a token mean of the entropy). See `process.critique_surrogate`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("none")),
      loss=chain(process_lib.critique_surrogate(gamma, clip_eps),
                 *((entropy_bonus(entropy_coef),) if entropy_coef else ()),
                 *_kl(kl_coef, kl_estimator),
                 aggregate("seq_mean_token_sum_norm", norm=norm_len))).check()


# --------------------------------------------------------------------------------------------------
# Methods that regroup the batch (spec B2 Stratified GRPO, B4 COPO, B5 D3S): transforms in
# objectives/seed_groups.py, the `stratum` hook in training/hooks_groups.py, `answers` in hooks.py.
from jaxrl_llm.objectives import seed_groups  # noqa: E402  pylint: disable=g-import-not-at-top


@register
def stratified_grpo(alpha: float = 0.8, max_stratum: int | None = None, eps_low: float = 0.2,
                    eps_high: float = 0.2, kl_coef: float = 0.001, kl_estimator: str = "k3",
                    adv_eps: float = 1e-6, aggregation: str = "seq_mean_token_mean"
                    ) -> Objective:
  """Stratified GRPO (Zhu et al., arXiv 2510.06214; spec B2), on Search-R1's GRPO.

    A_b = α·(r_b − μ_{k,c})/(σ_{k,c} + ε) + (1 − α)·(r_b − μ_k)/(σ_k + ε)   (strata c in group k)
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A) + β·k3,  L = seq_mean_token_mean
  Needs the `stratum` hook (config.hooks.stratum: e.g. the number of `<search>` calls per row).
  Defaults: α = 0.8 [reconstruction: not in the sources; sweep {0.5, 0.8, 1}], no stratum merging
  (`max_stratum` merges strata >= it); Search-R1's ε = 0.2, β = 0.001 (k3), seq_mean_token_mean.
  See `seed_groups.stratified_advantage`.
  """
  return Objective(
      rollout=chain(seed_groups.stratified_advantage(alpha, adv_eps, max_stratum)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


@register
def copo(kappa: float = 20.0, h0: float = 0.5, gate: str = "soft_with_forced",
         consistency_discount: bool = False, eps_low: float = 0.2, eps_high: float = 0.2,
         dual_clip: float | None = 3.0, kl_coef: float = 0.0, kl_estimator: str = "k3",
         adv_eps: float = 1e-6, aggregation: str = "seq_mean_token_mean") -> Objective:
  """COPO, Consistency-Aware Policy Optimization (Han et al., arXiv 2508.04138; spec B4).

    A^g: group accuracy normalised over the batch's prompts;  A^l: GRPO's advantage
    w = sigmoid(κ(H_k − h0)) (H_k: entropy of group k's answers, bits), 0 where A^l = 0
    ℓ = (1 − w)·ℓ^clip(ρ, A^g) + w·ℓ^clip(ρ, A^l) (+ β·k3),  L = seq_mean_token_mean
  Needs the `answers` hook (config.hooks.answers: group-local answer ids). Defaults (official
  code and scripts): κ = 20, h0 = 0.5 bits, c_k = 1 (`consistency_discount` uses the entropy
  discount), gate "soft_with_forced" [reconstruction: which variant the paper's tables use is
  not confirmed], ε = 0.2, verl's dual clip c = 3 on both branches, β = 0 (the scripts use 0 or
  0.001). See `seed_groups.copo_advantage`, `seed_groups.copo_clip`.
  """
  return Objective(
      rollout=chain(seed_groups.copo_advantage(kappa, h0, gate, consistency_discount, adv_eps)),
      loss=chain(seed_groups.copo_clip(eps_low, eps_high, dual_clip),
                 *_kl(kl_coef, kl_estimator), aggregate(check_mode(aggregation)))).check()


@register
def d3s(sample_frac: float = 0.5, token_frac: float = 0.2, ramp_steps: int | None = 100,
        scope: str = "group", eps_low: float = 0.2, eps_high: float = 0.28,
        kl_coef: float = 0.0, kl_estimator: str = "k3", adv_eps: float = 1e-6) -> Objective:
  """D3S, Dynamic Dual-Level Down-Sampling (Wang et al., arXiv 2509.22115; spec B5), on a
  GRPO/DAPO-style PPO-clip loss.

    A = GRPO's advantage on the full groups;  rows: the ⌈κ_s n⌉ of each group with the largest
    Var(A);  tokens: the top κ_t fraction by |A|·H;  κ(τ) = κ_min + (1 − κ_min)·min(1, τ/τ_ramp)
    ℓ = −min(ρA, clip(ρ, 1−ε_low, 1+ε_high)A),  L = token_mean over the kept tokens
  Defaults [reconstruction: the paper's values were not found]: κ_s 0.5 → 1, κ_t 0.2 → 1 over
  `ramp_steps` optimizer steps (half of training: the config ties it to train.num_steps),
  intra-group subsets; clip-higher ε = (0.2, 0.28), no KL, token_mean (DAPO's loss without its
  filter and overlong shaping). Needs the rollout forward's entropy (`requires` has "entropy").
  See `seed_groups.d3s_downsample`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps),
                    seed_groups.d3s_downsample(sample_frac, token_frac, ramp_steps, scope)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate("token_mean"))).check()


# --------------------------------------------------------------------------------------------------
# LaSeR (spec B8): last-token self-rewarding, transforms in objectives/laser.py. The label-free
# methods of B9/B10 (majority vote, TTRV, Co-Reward) are reward-side hooks
# (training/hooks_voting.py) on the plain `grpo` preset.
# pylint: disable-next=g-import-not-at-top
from jaxrl_llm.objectives import laser as laser_lib  # noqa: E402


@register
def laser(sr_coef: float = 0.1, beta_v: float = 0.1, c_ref: float = -23.0,
          sr_temperature: float = 1.0, balanced: bool = True, omega: float = 0.1,
          tau_f: float = 0.1, warmup_steps: int = 200, sr_adv_phase: str = "rollout",
          eps_low: float = 0.2, eps_high: float = 0.2, kl_coef: float = 0.0,
          kl_estimator: str = "k3", adv_eps: float = 1e-6,
          aggregation: str = "token_mean", sr_token: int | None = None) -> Objective:
  """LaSeR, last-token self-rewarding (Yang et al., arXiv 2510.14943; spec B8).

    s_b = β_v(τ·sr_logp_b − c_ref);  L = L_GRPO(token_mean) + α_SR (1/N) Σ_b u_b w_b (s_b − r_b)²
    after `warmup_steps`: A' = (1 − ω)A + ωÂ^SR, Â^SR the group-normalised clip(sg(s), 0, 1)
  Defaults (code `run_qwen2_5_7b.sh`, `actor.yaml`): α_SR = `sr_coef` = 0.1, β_v = 0.1, c_ref =
  −23 (constant), balanced weights, ω = 0.1, τ_f = 0.1, warm-up 200 steps, ε = 0.2, KL 0,
  token-mean loss. `sr_temperature` is τ, the sampling temperature (configs tie it to
  `sampling.temperature`). `sr_token` is z, the self-reward token id of the model's vocabulary
  (the paper: Qwen2.5's 151652; configs/laser.py picks SmolLM2's); the trainer's forward pass
  produces `extras["sr_logp"]` for it (the objective requires both); `sr_adv_phase` says which
  pass feeds the advantage integration (see `laser.py`); ω = 0 drops the integration (and its
  rollout-phase need for sr_logp). See `objectives/laser.py`.
  """
  check_mode(aggregation)
  if sr_adv_phase not in laser_lib.SR_PHASES:
    raise ValueError(f"unknown sr_adv_phase {sr_adv_phase!r}; valid: {laser_lib.SR_PHASES}")
  integrate = (laser_lib.self_reward_advantage(
      omega, tau_f, warmup_steps, beta_v, c_ref, sr_temperature, phase=sr_adv_phase,
      sr_token=sr_token),) if omega else ()
  rollout = [laser_lib.self_reward_weights(balanced, aggregation),
             adv_lib.group_advantage("group", eps=adv_eps)]
  loss = [ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
          laser_lib.self_reward_loss(sr_coef, beta_v, c_ref, sr_temperature, aggregation,
                                     sr_token=sr_token),
          aggregate(aggregation)]
  if sr_adv_phase == "rollout":
    rollout += integrate
  else:
    loss = list(integrate) + loss
  return Objective(rollout=chain(*rollout), loss=chain(*loss)).check()


# --------------------------------------------------------------------------------------------------
# Process rewards from a judge LLM (spec B6 PPR / ReNorm, B7 Posterior-GRPO): transforms in
# objectives/process_rewards.py, the `process_judge` hook in training/hooks_judge.py.
# pylint: disable-next=g-import-not-at-top
from jaxrl_llm.objectives import process_rewards as process_rewards_lib  # noqa: E402


@register
def ppr(eps: float = 1e-6, ddof: int = 1, eps_low: float = 0.2, eps_high: float = 0.2,
        kl_coef: float = 0.001, kl_estimator: str = "k3",
        aggregation: str = "seq_mean_token_mean", norm_len: float | None = None) -> Objective:
  """PPR with ReNorm (Xu, Li et al., arXiv 2509.25598; spec B6), on Search-R1's GRPO.

    r_{b,j} = p_{b,j} + o_b − 1   (judge score of step j, outcome o_b)
    r̃ = (r − μ_k)/(σ_k + ε) over all steps of group k;  A_{b,t} = Σ_{j ≥ j(t)} r̃_{b,j}
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A) + β·k3,  L = seq_mean_token_mean
  Needs the `process_judge` hook with unit="step" (step_id, step_value). [reconstruction, spec
  §6]: the ReNorm rule and the process-supervision advantage are the spec's readings, not the
  paper's confirmed formulas; defaults are Search-R1's (ε = 0.2, β = 0.001 k3) as the spec
  presumes. See `process_rewards.ppr_advantage`.
  """
  return Objective(
      rollout=chain(process_rewards_lib.ppr_advantage(eps, ddof)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation), norm=norm_len))).check()


@register
def posterior_grpo(think_norm: str = "none", success_threshold: float = 1.0,
                   think_coef: float = 1.0, format_coef: float = 0.0, eps_low: float = 0.2,
                   eps_high: float = 0.2, kl_coef: float = 0.0, kl_estimator: str = "k3",
                   adv_eps: float = 1e-6, aggregation: str = "seq_mean_token_mean") -> Objective:
  """Posterior-GRPO (Fan et al., arXiv 2508.05170; spec B7): GRPO on a success-gated reward.

    r_b = c_fmt·r^fmt_b + r^out_b + 1[r^out_b ≥ τ]·c_think·r^think_b,  A = GRPO's (r)
    ℓ = −min(ρA, clip(ρ, 1−ε, 1+ε)A) (+ β·k3),  L = seq_mean_token_mean
  Needs the `process_judge` hook with unit="response" (proc_score: the judge's P(Yes) for the
  reasoning of each row with r^out ≥ τ; the others are not judged). [reconstruction, spec §6]:
  the format term (off by default, `format_coef`) and the think-score normalisation
  (`think_norm`: "none" = the judge's sigmoid score, "sigmoid", "minmax" over the group's passing
  rows) are not confirmed; the paper's training constants were not found (GRPO's ε = 0.2, no KL).
  See `process_rewards.posterior_reward`.
  """
  return Objective(
      rollout=chain(process_rewards_lib.posterior_reward(think_norm, success_threshold,
                                                         think_coef, format_coef),
                    adv_lib.group_advantage("group", eps=adv_eps)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


# --------------------------------------------------------------------------------------------------
# Attention Illuminates LLM Reasoning (spec B13): objectives/attention_credit.py; the trainer's
# rollout forward computes `waad`/`fai` (training/forward.py).
from jaxrl_llm.objectives import attention_credit as attention_lib  # noqa: E402


@register
def grpo_attention(strategy: str = "coupled", gamma: float = 1.0, q: float = 0.1,
                   window: int = 10, num_heads: int = 4, local_heads: str = "",
                   global_heads: str = "", eps_low: float = 0.2, eps_high: float = 0.2,
                   kl_coef: float = 0.0, kl_estimator: str = "k3", adv_eps: float = 1e-6,
                   aggregation: str = "seq_mean_token_mean") -> Objective:
  """GRPO with preplan-and-anchor credit (Li et al., arXiv 2510.13554; spec B13).

    A_b = GRPO's;  A'_{b,t} = A_b·(1 + γ·1[t ∈ set]),  set = coupled | preplan | anchor tokens
    ℓ = −min(ρA', clip(ρ, 1−ε, 1+ε)A') (+ β·k3),  L = seq_mean_token_mean
  The sets come from the old policy's attention (WAAD of local heads, FAI of global heads) over
  each response, computed by the trainer's rollout forward. [reconstruction, spec §6]: W = 10,
  q = 0.1, γ = 1 and the head choice (`num_heads` heads per set by mean attention distance on the
  batch, or explicit "layer.head" lists) are not in the sources; GRPO's ε = 0.2, no KL (the
  papernotes runs are plain GRPO). See `attention_credit.attention_credit`.
  """
  return Objective(
      rollout=chain(adv_lib.group_advantage("group", eps=adv_eps),
                    attention_lib.attention_credit(strategy, gamma, q, window, num_heads,
                                                   local_heads, global_heads)),
      loss=chain(ppo_clip(eps_low, eps_high), *_kl(kl_coef, kl_estimator),
                 aggregate(check_mode(aggregation)))).check()


# --------------------------------------------------------------------------------------------------
# A chain of the user's own from a config (DESIGN: "a custom chain in a config is an explicit tuple
# of names"; a ConfigDict iterates its keys alphabetically, so the order is the tuple's).
def _transform_factory(name: str, phase: str) -> Callable[..., Any]:
  """The public transform factory `objectives.<name>`, or a ValueError with the closest name."""
  from jaxrl_llm import objectives  # pylint: disable=g-import-not-at-top (the package imports us)
  if not isinstance(name, str) or name not in objectives.TRANSFORMS:
    raise ValueError(f"custom objective, {phase}: unknown transform {name!r}"
                     f"{_suggest(str(name), objectives.TRANSFORMS)} (valid: "
                     f"{', '.join(objectives.TRANSFORMS)})")
  return getattr(objectives, name)


def _plain(value: Any) -> Any:
  return value.to_dict() if isinstance(value, ml_collections.ConfigDict) else value


@register
def custom(rollout: tuple[str, ...] = ("group_advantage",),
           loss: tuple[str, ...] = ("ppo_clip", "aggregate"),
           args: Mapping[str, Mapping[str, Any]] | None = None) -> Objective:
  """An objective chained from transform names, for a config that composes its own method.

    objective = dict(name="custom", rollout=("group_advantage",),
                     loss=("ppo_clip", "kl_penalty", "aggregate"),
                     args=dict(group_advantage=dict(scale="none"), kl_penalty=dict(coef=0.01),
                               aggregate=dict(mode="token_mean")))
  `rollout` and `loss` are tuples of names from `objectives.TRANSFORMS`, applied left to right
  (`chain`); `args[name]` holds the keyword arguments of that transform's factory (its own
  defaults otherwise; a name used twice gets the same arguments). Unknown transform names,
  `args` entries for transforms not in either chain, unknown or missing arguments all fail here
  with the valid choices. The default is GRPO without KL: group-normalised advantages, PPO clip at
  0.2, `aggregate`'s default reduction.
  """
  for phase, names in (("rollout", rollout), ("loss", loss)):
    if isinstance(names, str):
      raise ValueError(f"custom objective: {phase} must be a tuple of transform names, got the "
                       f"string {names!r}: write ({names!r},)")
  args = {k: dict(_plain(v) or {}) for k, v in (_plain(args) or {}).items()}
  phases = {"rollout": tuple(rollout), "loss": tuple(loss)}
  used = set(phases["rollout"]) | set(phases["loss"])
  for name in args:
    if name not in used:
      raise ValueError(f"custom objective: args for {name!r}, which neither chain uses "
                       f"(rollout={phases['rollout']}, loss={phases['loss']})")
  chains = {}
  for phase, names in phases.items():
    transforms = []
    for name in names:
      factory = _transform_factory(name, phase)
      params = inspect.signature(factory).parameters
      kwargs = args.get(name, {})
      for key in kwargs:
        if key not in params:
          raise ValueError(f"custom objective: unknown argument {key!r} for {name}"
                           f"{_suggest(key, params)} (valid: {sorted(params)})")
      missing = [p.name for p in params.values()
                 if p.default is inspect.Parameter.empty and p.name not in kwargs
                 and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
      if missing:
        raise ValueError(f"custom objective: {name} needs {missing} in args.{name}")
      transforms.append(factory(**kwargs))
    chains[phase] = chain(*transforms)
  return Objective(rollout=chains["rollout"], loss=chains["loss"]).check()
