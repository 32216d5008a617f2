"""The registry of paper tables: one `TableSpec` per seed paper (spec/seed_methods.md §1-§7 and
spec/baselines_and_more.md B1-B13).

Numbers under `reported` are the papers' own, as the specs quote them, at the papers' scale (their
models and benchmarks): table.md prints them beside ours for direction, not as equals. Paper-scale
values marked [reconstruction] in `notes` are not in the sources the specs could read.

The `cpu` scale is SmolLM2-135M-Instruct on reasoning-gym chain_sum (sums of two numbers of up to
two digits; about 23 % greedy accuracy at the start), 8 prompts x 8 samples x 64 tokens per
iteration, one pass over two minibatches (two optimizer steps per rollout batch, as the papers'
batch/minibatch ratios give), no KL term and no dynamic sampling (the same for every arm, so that
the arms differ by their method only). One iteration takes about 1-1.5 minutes on 2 CPU cores;
budgets are sized for about an hour per table (`estimate_minutes`).
"""
from collections.abc import Mapping
from typing import Any

from jaxrl_llm.eval.reproduce.spec import Arm, PassK, Reported, Scale, TableSpec

# ------------------------------------------------------------------------------------ cpu scale

_CPU_ABOUT = ("SmolLM2-135M-Instruct on reasoning-gym chain_sum (2-digit sums), 8 prompts x 8 "
              "samples x 64 tokens per iteration, 2 optimizer steps per rollout batch, no KL, no "
              "dynamic sampling")
CPU_COMMON: Mapping[str, Any] = {
    "train.prompts_per_step": 8, "sampling.n": 8, "sampling.max_new_tokens": 64,
    "train.num_updates": 1, "train.num_minibatches": 2, "train.max_sampling_rounds": 1,
    "eval.num_prompts": 64, "ckpt.every_steps": 2, "ckpt.keep": 1, "ckpt.export_hf": False,
}


def _cpu(steps: int, eval_every: int, *, passk: PassK | None = None,
         arms: tuple[str, ...] | None = None,
         arm_overrides: Mapping[str, Mapping[str, Any]] | None = None,
         extra: Mapping[str, Any] | None = None) -> Scale:
  overrides = {**CPU_COMMON, "train.num_steps": steps, "eval.every_steps": eval_every,
               **(extra or {})}
  return Scale(model="smollm2", overrides=overrides, seeds=(0, 1), arms=arms, passk=passk,
               arm_overrides=dict(arm_overrides or {}), about=_CPU_ABOUT)


# ---------------------------------------------------------------------------------- paper scale

# DAPO's recipe (arXiv 2503.14476), the host of FIPO, divergence weighting, Δlog p, OWPO, NSR:
# 512 prompts x 16 samples, 16 optimizer steps per rollout batch (minibatches of 32 prompts),
# AdamW lr 1e-6 with 20 warm-up steps, weight decay 0.1, 20480-token responses, dynamic sampling.
_MATH17K = ("hf:open-r1/DAPO-Math-17k-Processed?name=en&question_field=prompt"
            "&answer_field=solution")
_MATH = "hf:DigitalLearningGmbH/MATH-lighteval?preset=math"
_NQ_HOTPOT = "hf:PeterJinGo/nq_hotpotqa_train?question_field=question&answer_field=golden_answers"
DAPO_PAPER: Mapping[str, Any] = {
    "data.source": _MATH17K, "data.max_prompt_tokens": 2048, "data.eval_size": 512,
    "reward.name": "math_verify", "reward.extract": ("boxed", "answer_tag"),
    "sampling.max_new_tokens": 20480, "sampling.temperature": 1.0, "sampling.n": 16,
    "train.prompts_per_step": 512, "train.num_minibatches": 16, "train.num_micro_batches": 8,
    "train.num_updates": 1, "train.max_sampling_rounds": 3, "train.num_steps": 500,
    "optim.learning_rate": 1e-6, "optim.warmup_steps": 20, "optim.weight_decay": 0.1,
    "eval.every_steps": 10, "eval.num_prompts": 512, "ckpt.every_steps": 10,
}
# Search-R1 GRPO (LLDS App. B.2.1; Stratified GRPO): 512 prompts x 5 samples, minibatch 256,
# micro-batch 64 rows, lr 1e-6 with warm-up ratio 0.285 of ~1005 steps, 500-token responses.
SEARCH_R1_PAPER: Mapping[str, Any] = {
    "data.source": _NQ_HOTPOT, "data.max_prompt_tokens": 3596, "data.eval_size": 512,
    "reward.name": "exact_match", "reward.extract": ("answer_tag",),
    "sampling.max_new_tokens": 500, "sampling.temperature": 1.0, "sampling.top_p": 1.0,
    "sampling.n": 5, "train.prompts_per_step": 512, "train.num_minibatches": 2,
    "train.num_micro_batches": 20, "train.num_updates": 1, "train.num_steps": 1005,
    "optim.learning_rate": 1e-6, "optim.warmup_steps": 286, "eval.every_steps": 50,
    "eval.num_prompts": 512, "ckpt.every_steps": 50,
}
# The configs put DAPO's soft overlong window at a quarter of the completion budget; the paper's
# is 4096 of 20480 tokens.
_DAPO_WINDOW = {"objective.cache_len": 4096}


def _dapo_window(*arms: str, **more: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
  """Paper-scale arm overrides: DAPO's overlong window for `arms`, plus `more` by arm name."""
  out = {a: dict(_DAPO_WINDOW) for a in arms}
  for arm, overrides in more.items():
    out.setdefault(arm, {}).update(overrides)
  return out


_SEARCH_CAVEAT = ("The paper trains a multi-turn search agent (E5 retriever over 2018 Wikipedia, "
                  "top-3 passages, up to 3-4 search turns, observation tokens masked); jaxrl_llm "
                  "has no tool environment, so the paper config trains single-turn on the same "
                  "questions, and `golden_answers` (a list) needs a first-answer mapping.")


def _paper(model: str, overrides: Mapping[str, Any], *, about: str, seeds=(0, 1, 2),
           arms: tuple[str, ...] | None = None, passk: PassK | None = None,
           arm_overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Scale:
  return Scale(model=model, overrides=dict(overrides), seeds=seeds, arms=arms, passk=passk,
               arm_overrides=dict(arm_overrides or {}), about=about)


def _with(base: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
  """`base` with dotted keys spelled with `__` (`train__num_steps=300`) replaced."""
  out = dict(base)
  out.update({k.replace("__", "."): v for k, v in changes.items()})
  return out


# -------------------------------------------------------------------------------------- arms

GRPO = Arm("GRPO", "grpo", "grpo")
DAPO = Arm("DAPO", "dapo", "dapo")
GSPO = Arm("GSPO", "gspo", "gspo")
_NO_KL = {"objective.kl_coef": 0.0}

TABLES: dict[str, TableSpec] = {}


def register(spec: TableSpec) -> TableSpec:
  if spec.name in TABLES:
    raise ValueError(f"table {spec.name!r} is registered twice.")
  for what in ("name", "slug"):
    values = [getattr(a, what) for a in spec.arms]
    if len(set(values)) != len(values):
      raise ValueError(f"table {spec.name!r} has arms with the same {what}: {values}.")
  TABLES[spec.name] = spec
  return spec


def get_table(name: str) -> TableSpec:
  """The registered table `name`, or a ValueError listing the registered names."""
  if name not in TABLES:
    import difflib  # pylint: disable=g-import-not-at-top
    close = difflib.get_close_matches(name, list(TABLES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown table {name!r}.{hint} Registered tables: "
                     f"{', '.join(sorted(TABLES))}.")
  return TABLES[name]


# ------------------------------------------------------------------- seed_methods.md §1: LLDS

register(TableSpec(
    name="llds", title="LLDS (Lazy-Likelihood-Displacement Suppression)",
    paper="Deng et al., ICML 2026", arxiv="2512.04220", spec_ref="spec/seed_methods.md §1",
    baselines=(GRPO, GSPO),
    method=(Arm("GRPO+LLDS", "grpo_llds", "grpo_llds"),
            Arm("GSPO+LLDS", "gspo_llds", "gspo_llds")),
    metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain", "logp_correct",
             "logp_correct_change", "collapsed"),
    curves=("accuracy", "logp_correct", "eval_accuracy"),
    # 2 arms x 2 seeds x 8 iterations, greedy eval at 0/4/8: about 45 minutes.
    cpu=_cpu(8, 4, arms=("GRPO", "GRPO+LLDS"),
             arm_overrides={"GRPO+LLDS": _NO_KL}),
    paper_scale=_paper(
        "Qwen/Qwen2.5-3B-Instruct", SEARCH_R1_PAPER,
        about="Search-R1 GRPO recipe on NQ+HotpotQA, Qwen2.5-3B-Instruct (λ = 0.3 for "
              "Qwen2.5-7B-Instruct)",
        arm_overrides={"GRPO": {"objective.kl_coef": 0.001}}),
    reported_setting="Qwen2.5 (3B/7B, Base/Instruct) and Llama3.2-3B-Base, Search-R1 multi-turn "
                     "search on NQ+HotpotQA; Exact Match, Avg = mean of 7 QA datasets",
    headline="Avg",
    reported=(
        Reported("Qwen2.5-3B-Instruct", "Search-R1 GRPO", {"NQ": ".397", "HotpotQA": ".331",
                                                          "Avg": ".336"}, arm="GRPO"),
        Reported("Qwen2.5-3B-Instruct", "+LLDS", {"NQ": ".462", "HotpotQA": ".443",
                                                 "Avg": ".441 (+31.3%)"}, arm="GRPO+LLDS"),
        Reported("Qwen2.5-3B-Instruct", "GSPO", {"NQ": ".376", "HotpotQA": ".332",
                                                "Avg": ".331"}, arm="GSPO"),
        Reported("Qwen2.5-3B-Instruct", "GSPO+LLDS", {"NQ": ".489", "HotpotQA": ".466",
                                                     "Avg": ".451 (+36.3%)"}, arm="GSPO+LLDS"),
        Reported("Qwen2.5-3B-Base", "Search-R1 GRPO / +LLDS / +LLDS-MA",
                 {"Avg": ".312 / .360 / .440 (+45.2%)"}),
        Reported("Qwen2.5-7B-Base", "Search-R1 GRPO / +LLDS", {"Avg": ".350 / .480 (+37.1%)"}),
        Reported("Qwen2.5-7B-Instruct", "Search-R1 GRPO / +LLDS",
                 {"Avg": ".396 / .483 (+22.0%)"}),
        Reported("Llama3.2-3B-Base", "GRPO / +LLDS / +LLDS-MA", {"Avg": ".212 / .374 / .427"}),
        Reported("Qwen2.5-3B (λ ablation)", "collapse",
                 {"Avg": "λ=0 collapses ~step 200; λ=0.01 ~220; λ=0.2 stable"}),
    ),
    notes=("GRPO's numbers are the best pre-collapse checkpoints (from Search-R1). The "
           "likelihood of correct responses is the mean per-token log-probability of the "
           "iteration's correct samples under the policy that sampled them "
           "(`likelihood/correct_token_logp`). At cpu scale both arms take 2 optimizer steps "
           "per rollout batch (LLDS acts on the second), as the paper's 512/256 batch does. "
           + _SEARCH_CAVEAT),
))

# ---------------------------------------------------------------------- seed_methods.md §2: THR

register(TableSpec(
    name="thr", title="THR (Token Hidden Reward)", paper="ICLR 2026", arxiv="2510.03669",
    spec_ref="spec/seed_methods.md §2",
    baselines=(GRPO,),
    method=(Arm("THR exploit (p=+0.2)", "grpo_thr", "grpo_thr", {"objective.p": 0.2}),
            Arm("THR explore (p=-0.2)", "grpo_thr", "grpo_thr", {"objective.p": -0.2})),
    metrics=("eval_greedy", "pass@1", "pass@4", "pass@16", "train_accuracy"),
    curves=("accuracy", "passk"),
    # 3 arms x 2 seeds x 5 iterations + pass@16 on 16 prompts: about 50 minutes.
    cpu=_cpu(5, 0, passk=PassK(num_prompts=16, n=16, ks=(1, 2, 4, 8, 16), batch_size=4)),
    paper_scale=_paper(
        "Qwen/Qwen2.5-1.5B",
        {"data.source": _MATH, "data.max_prompt_tokens": 1024, "data.eval_size": 500,
         "reward.name": "math_verify", "reward.extract": ("boxed", "answer_tag"),
         "sampling.n": 8, "sampling.max_new_tokens": 3072, "train.prompts_per_step": 128,
         "train.num_minibatches": 2, "train.num_micro_batches": 16, "train.num_steps": 200,
         "optim.learning_rate": 1e-6, "eval.every_steps": 20, "eval.num_prompts": 500},
        about="math RLVR on MATH with Qwen2.5-1.5B (paper: Qwen2.5 0.5B/1.5B/7B, Llama3.2-3B; "
              "GRPO and GSPO-token), 8 rollouts per prompt",
        passk=PassK(num_prompts=500, n=256, ks=(1, 4, 16, 64, 128, 256), batch_size=1)),
    reported_setting="Qwen2.5 0.5B/1.5B/7B and Llama3.2-3B, math RLVR; greedy Pass@1 and Pass@K",
    headline="result",
    reported=(
        Reported("Qwen2.5-7B (reviewer)", "THR p>0 (exploit)",
                 {"result": "greedy Pass@1 up to ~+4 points over GRPO"},
                 arm="THR exploit (p=+0.2)"),
        Reported("Qwen2.5, K up to 128-256", "THR p<0 (explore)",
                 {"result": "Pass@K above GRPO, Pass@K-training and COV-KL"},
                 arm="THR explore (p=-0.2)"),
        Reported("0.5B/1.5B, Llama (reviewers)", "THR p>0",
                 {"result": "inconsistent gains; on Llama only p<0 helped"}),
    ),
    notes=("Exact tables were not retrievable: the numbers must be filled in from the PDF. "
           "|p| = 0.2, the learning rate and the step count are reconstructions."),
))

# --------------------------------------------------------------------- seed_methods.md §3: FIPO

register(TableSpec(
    name="fipo", title="FIPO (Future-KL Influenced Policy Optimization)",
    paper="qwenpilot/FIPO", arxiv="2603.19835", spec_ref="spec/seed_methods.md §3",
    baselines=(DAPO,), method=(Arm("FIPO", "fipo", "fipo"),),
    metrics=("train_accuracy", "eval_greedy", "length", "length_change"),
    curves=("length", "accuracy", "eval_accuracy"),
    # 2 arms x 2 seeds x 8 iterations: about 45 minutes.
    cpu=_cpu(8, 4),
    paper_scale=_paper(
        "Qwen/Qwen2.5-32B", DAPO_PAPER,
        about="DAPO recipe on DAPO-Math-17k with Qwen2.5-32B-Base; eval Avg@32 at T=1.0, top-p 0.7",
        passk=PassK(num_prompts=30, n=32, ks=(1, 32), batch_size=1),
        arm_overrides=_dapo_window("DAPO", "FIPO")),
    reported_setting="Qwen2.5-32B-Base, DAPO-Math-17k; AIME24/25 Avg@32, average CoT length",
    headline="AIME24 Avg@32",
    reported=(
        Reported("Qwen2.5-32B-Base", "DAPO (reproduced)",
                 {"AIME24 Avg@32": "50.0", "AIME24 Pass@32": "80.0", "AIME25 Avg@32": "38.0",
                  "CoT length": "~4k"}, arm="DAPO"),
        Reported("Qwen2.5-32B-Base", "FIPO",
                 {"AIME24 Avg@32": "56.0 (peak 58.0)", "AIME24 Pass@32": "83.0",
                  "AIME25 Avg@32": "43.0", "CoT length": ">10k"}, arm="FIPO"),
        Reported("Qwen2.5-7B-Math [secondary]", "GRPO / DAPO / FIPO",
                 {"AIME24 Avg@32": "22 / 36 / 40"}),
    ),
    notes=("FIPO's claim is longer chains of thought with higher accuracy: the length curve "
           "is the one to read. The paper's step count is not in the spec (500 here)."),
))

# ------------------------------------------------------- seed_methods.md §4: Sparse but Critical

register(TableSpec(
    name="divergence", title="Divergence-weighted advantages (\"Sparse but Critical\")",
    paper="ICLR 2026", arxiv="2603.22446", spec_ref="spec/seed_methods.md §4",
    baselines=(DAPO,),
    method=(Arm("High-KL boost", "dapo_divergence", "dapo_divergence", {"objective.alpha": 200.0}),
            Arm("Low-KL boost", "dapo_divergence", "dapo_divergence",
                {"objective.alpha": -200.0})),
    metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain"),
    curves=("accuracy", "eval_accuracy"),
    # 3 arms x 2 seeds x 5 iterations: about 45 minutes.
    cpu=_cpu(5, 5),
    paper_scale=_paper("Qwen/Qwen2.5-Math-7B", DAPO_PAPER,
                       about="DAPO recipe on DAPO-Math-17k with Qwen2.5-Math-7B; Mean@32, 3 runs",
                       passk=PassK(num_prompts=30, n=32, ks=(1, 32), batch_size=1),
                       arm_overrides=_dapo_window("DAPO", "High-KL boost", "Low-KL boost")),
    reported_setting="Qwen2.5-Math-7B, DAPO recipe; Mean@32 on AIME24/AIME25/AMC, 3 runs",
    headline="Avg",
    reported=(
        Reported("Qwen2.5-Math-7B", "DAPO", {"AIME24": "33.61", "AIME25": "18.75",
                                            "AMC": "75.08", "Avg": "42.48 ± 1.35"}, arm="DAPO"),
        Reported("Qwen2.5-Math-7B", "Low-KL boost",
                 {"AIME24": "35.90", "AIME25": "19.90", "AMC": "78.97", "Avg": "44.92 ± 0.05"},
                 arm="Low-KL boost"),
        Reported("Qwen2.5-Math-7B", "High-KL boost",
                 {"AIME24": "36.74", "AIME25": "20.00", "AMC": "78.40", "Avg": "45.05 ± 0.79"},
                 arm="High-KL boost"),
    ),
    notes="|α| = 200 is a reconstruction (the spec proposes it; the paper's value was not found).",
))

# ---------------------------------------------------------------- seed_methods.md §5: Δlog p

register(TableSpec(
    name="delta_logp", title="Direction of RLVR updates (Δlog p low-probability reweighting)",
    paper="arXiv 2026", arxiv="2603.22117", spec_ref="spec/seed_methods.md §5",
    baselines=(DAPO,), method=(Arm("DAPO+low-prob reweighting", "dapo_lowprob",
                                   "dapo_lowprob"),),
    metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain"),
    curves=("accuracy", "eval_accuracy"),
    cpu=_cpu(8, 4),
    paper_scale=_paper("Qwen/Qwen2.5-Math-7B", DAPO_PAPER,
                       about="DAPO recipe on DAPO-Math-17k; model is a reconstruction "
                             "(Qwen2.5-Math-7B)",
                       arm_overrides=_dapo_window("DAPO", "DAPO+low-prob reweighting")),
    reported_setting="not retrievable (abstract only)", headline="result",
    reported=(Reported("several models (abstract)", "low-probability reweighting",
                       {"result": "improves over DAPO/GRPO across models and benchmarks "
                                  "(no numbers found)"}, arm="DAPO+low-prob reweighting"),),
    notes=("α = 0.2 (spec: α ∈ [0.1, 0.2]). The test-time extrapolation half lives in the "
           "sampler."),
))

# --------------------------------------------------------------------- seed_methods.md §6: OWPO

register(TableSpec(
    name="owpo", title="OWPO (One-Way Policy Optimization)", paper="ICML 2026",
    arxiv="2605.22156", spec_ref="spec/seed_methods.md §6",
    baselines=(DAPO,), method=(Arm("OWPO", "owpo", "owpo"),),
    metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain"),
    curves=("accuracy", "eval_accuracy"),
    # OWPO holds a reference model (an extra forward pass): 2 arms x 2 seeds x 7 iterations.
    cpu=_cpu(7, 7, arm_overrides={"OWPO": {"objective.refresh_every": 4}}),
    paper_scale=_paper("Qwen/Qwen2.5-Math-7B", DAPO_PAPER,
                       about="DAPO recipe on DAPO-Math-17k; model is a reconstruction",
                       arm_overrides=_dapo_window(
                           "DAPO", "OWPO", OWPO={"objective.refresh_every": 50})),
    reported_setting="model and baseline numbers not given by the aggregator [secondary]",
    headline="math avg Pass@1",
    reported=(Reported("not stated", "OWPO (best reported)",
                       {"math avg Pass@1": "51.9", "AIME25 Pass@1": "33.54",
                        "AMC Pass@1": "78.36", "MMLU-Pro": "67.41"}, arm="OWPO"),),
    notes=("ε_acc = 0.5, ε_lock = 0.2 and K are reconstructions; at cpu scale the reference is "
           "refreshed every 4 optimizer steps (2 iterations)."),
))

# ---------------------------------------------------------------------- seed_methods.md §7: NSR

register(TableSpec(
    name="nsr", title="NSR (Near-boundary Stochastic Rescue)", paper="\"Clipping Bottleneck\"",
    arxiv="2605.22703", spec_ref="spec/seed_methods.md §7",
    baselines=(DAPO, GSPO),
    method=(Arm("DAPO+NSR", "dapo_nsr", "dapo_nsr"), Arm("GSPO+NSR", "gspo_nsr", "gspo_nsr")),
    metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain"),
    curves=("accuracy", "eval_accuracy"),
    cpu=_cpu(8, 4, arms=("DAPO", "DAPO+NSR")),
    paper_scale=_paper("Qwen/Qwen2.5-Math-7B", DAPO_PAPER,
                       about="DAPO recipe on DAPO-Math-17k with Qwen2.5-Math-7B (also Qwen3-8B; "
                             "GSPO on Qwen3-30B-A3B)",
                       arm_overrides=_dapo_window("DAPO", "DAPO+NSR")),
    reported_setting="Qwen2.5-Math-7B and Qwen3-8B (DAPO base), avg Pass@1 [secondary]",
    headline="avg Pass@1",
    reported=(
        Reported("Qwen2.5-Math-7B", "DAPO+NSR", {"avg Pass@1": "+4.93 over DAPO"},
                 arm="DAPO+NSR"),
        Reported("Qwen3-8B", "DAPO+NSR", {"avg Pass@1": "+6.36 over DAPO"}),
        Reported("likely Qwen3-30B-A3B", "best reported",
                 {"avg Pass@1": "AIME24 58.65, AIME25 40.53, AMC 85.09"}),
    ),
    notes=("The noise band u_min = 1/(1+ε_high) is a reconstruction. With 16 minibatches per "
           "rollout batch at paper scale the ratios leave 1 after the first; at cpu scale the "
           "second of two minibatches is off-policy."),
))

# ------------------------------------------------------- baselines_and_more.md B1: Unlikeliness

register(TableSpec(
    name="unlikely", title="Rewarding the Unlikely (unlikeliness reward)",
    paper="He, Fried & Welleck, EMNLP 2025", arxiv="2506.02355",
    spec_ref="spec/baselines_and_more.md B1",
    baselines=(GRPO,), method=(Arm("GRPO+unlikeliness", "unlikeliness", "unlikeliness"),),
    metrics=("pass@1", "pass@8", "pass@64", "eval_greedy", "train_accuracy"),
    curves=("passk", "accuracy"),
    # 2 arms x 2 seeds x 6 iterations, then pass@64 on 12 held-out prompts for each run and the
    # initial model: about 50 minutes.
    cpu=_cpu(6, 0, passk=PassK(num_prompts=12, n=64, ks=(1, 2, 4, 8, 16, 32, 64), batch_size=2),
             arm_overrides={"GRPO+unlikeliness": _NO_KL}),
    paper_scale=_paper(
        "deepseek-ai/DeepSeek-Prover-V1.5-SFT",
        {"data.source": "hf:internlm/Lean-Workbook?question_field=formal_statement"
                        "&answer_field=formal_statement",
         "data.max_prompt_tokens": 1024, "data.eval_size": 244,
         "reward.name": "exact_match", "reward.extract": ("answer_tag",),
         "sampling.n": 32, "sampling.max_new_tokens": 512, "sampling.temperature": 1.0,
         "train.prompts_per_step": 16, "train.num_minibatches": 2, "train.num_micro_batches": 8,
         "train.num_updates": 2, "train.max_sampling_rounds": 4, "train.num_steps": 100,
         "optim.learning_rate": 1e-6, "optim.weight_decay": 0.01, "optim.warmup_steps": 0,
         "eval.every_steps": 10, "eval.num_prompts": 244},
        about="DeepSeek-Prover-V1.5-SFT on miniF2F-train + Lean-Workbook, 16 theorems x 32 "
              "samples, 2 PPO epochs, KL 0.1 (k3); pass@N on miniF2F-test",
        passk=PassK(num_prompts=244, n=256, ks=(1, 4, 16, 64, 256), batch_size=1),
        arm_overrides={"GRPO": {"objective.kl_coef": 0.1, "objective.aggregation": "token_mean"}}),
    reported_setting="DeepSeek-Prover-V1.5-SFT, Lean 4 theorem proving (miniF2F-test); pass@N",
    headline="result",
    reported=(
        Reported("synthetic + miniF2F (abstract)", "GRPO",
                 {"result": "pass@1-16 up, pass@N for large N below the base model "
                            "(rank bias)"}, arm="GRPO"),
        Reported("synthetic + miniF2F (abstract)", "unlikeliness reward",
                 {"result": "pass@N up across a large range of N; competitive with "
                            "DeepSeek-Prover-V1.5-RL"}, arm="GRPO+unlikeliness"),
    ),
    notes=("Exact pass@N numbers were not retrievable (figures only). The paper's reward is a "
           "Lean 4 verifier, which jaxrl_llm does not ship: pass it as `reward=` to "
           "`run_table` (the paper config names `exact_match` as a placeholder). At cpu scale "
           "both arms take 1 pass over 2 minibatches (the paper: 2 PPO epochs) and no dynamic "
           "sampling, to fit the hour."),
))


# ------------------------------------------------------- baselines_and_more.md B2-B13 (issue 8)

def _seed2(name: str, title: str, paper: str, arxiv: str, ref: str, config: str, preset: str,
           host: Arm, baselines: tuple[Arm, ...], model: str, overrides: Mapping[str, Any],
           about: str, setting: str, headline: str, notes: str,
           cpu_extra: Mapping[str, Any] | None = None) -> TableSpec:
  """A table of an issue-8 method: `configs/<config>.py` (its objective `preset` and, for the
  methods that act before the loss, its rollout hooks) beside `baselines`, with the same budget.
  `cpu_extra` overrides every arm at cpu scale."""
  method = Arm(title.split(" (")[0], config, preset, host=host.preset)
  return register(TableSpec(
      name=name, title=title, paper=paper, arxiv=arxiv, spec_ref=ref,
      baselines=baselines, method=(method,),
      metrics=("train_accuracy", "eval_greedy", "eval_greedy_gain"),
      curves=("accuracy", "eval_accuracy"), cpu=_cpu(8, 4, extra=cpu_extra),
      paper_scale=_paper(model, overrides, about=about), reported_setting=setting,
      headline="headline",
      reported=(Reported(setting, method.name, {"headline": headline}, arm=method.name),),
      notes=notes))


_B = "spec/baselines_and_more.md "

_seed2("stratified", "Stratified GRPO (stratified advantage normalization)",
         "Zhu et al.", "2510.06214", _B + "B2", "stratified_grpo", "stratified_grpo", GRPO,
         (GRPO,),
         "Qwen/Qwen2.5-3B", _with(SEARCH_R1_PAPER, objective__kl_coef=0.001),
         "Search-R1 setting, Qwen2.5-3B Base/Instruct, G = 5",
         "Qwen2.5-3B, Search-R1, EM on 7 QA benchmarks",
         "up to +11.3 EM over GRPO (ICML-2026 version: up to +12.6)",
         "α (blend) is a reconstruction (0.8). " + _SEARCH_CAVEAT)

_seed2("knapsack", "Knapsack RL (budget allocation of rollouts)", "Li et al., ByteDance Seed",
         "2509.25849", _B + "B3", "knapsack", "grpo", DAPO, (DAPO,), "Qwen/Qwen2.5-Math-7B",
         _with(DAPO_PAPER, sampling__n=8, sampling__max_new_tokens=4096,
               train__prompts_per_step=256, train__num_minibatches=8,
               train__max_sampling_rounds=1),
         "Qwen2.5-Math-7B on DAPO-Math-17K, 256 prompts x 8 (mean) rollouts, 8 optimizer steps",
         "Qwen2.5-Math-7B, DAPO-Math-17K, math benchmarks",
         "+20-40 % non-zero-gradient samples; +2-4 points average, up to +9",
         "Both arms sample without dynamic sampling (the allocation replaces it). At cpu scale "
         "the training set is 32 prompts, so each prompt returns every 4 iterations and its "
         "history can shape the budget.",
         cpu_extra={"data.source": "reasoning_gym:chain_sum?size=160&seed=0&min_terms=2"
                                   "&max_terms=2&max_digits=2&answer_format=answer_tag"})

_seed2("copo", "COPO (Consistency-Aware Policy Optimization)", "Han et al.", "2508.04138",
         _B + "B4", "copo", "copo", GRPO, (GRPO,), "Qwen/Qwen2.5-Math-7B",
         _with(DAPO_PAPER, reward__extract=("boxed",), sampling__n=8,
               sampling__max_new_tokens=2048, train__num_minibatches=16,
               train__max_sampling_rounds=1, train__num_steps=70),
         "Qwen2.5-Math-7B on DAPO-Math-17k subsets, 512 prompts x 8, minibatch 32 prompts",
         "Qwen2.5-Math-7B / Qwen2.5-3B-Instruct, math benchmarks",
         "not retrieved (abstract: substantial gains on math benchmarks)",
         "The main table's gate variant is not confirmed (spec default soft-with-forced).")

_seed2("d3s", "D3S (Dynamic Dual-Level Down-Sampling)", "Wang et al.", "2509.22115",
         _B + "B5", "d3s", "d3s", GRPO, (GRPO,), "Qwen/Qwen2.5-7B",
         _with(DAPO_PAPER, sampling__n=8, sampling__max_new_tokens=4096,
               train__max_sampling_rounds=1),
         "Qwen2.5 / Llama-3.1 with GRPO; the schedule and model are reconstructions",
         "Qwen2.5 and Llama-3.1, math", "not retrieved (abstract: SOTA with fewer samples)",
         "κ_s, κ_t and the ramp are reconstructions.")

_seed2("ppr", "PPR / ReNorm (principle process rewards)", "Xu, Li et al., Alibaba",
         "2509.25598", _B + "B6", "ppr", "ppr", GRPO, (GRPO,), "Qwen/Qwen2.5-7B-Instruct",
         SEARCH_R1_PAPER, "Search-R1-style agent setup (presumed)",
         "search agents, NVProcessBench", "not retrieved (\"state of the art\")",
         "The step scores come from a judge LLM (the process_judge hook; the policy itself "
         "unless judge_source names another model). " + _SEARCH_CAVEAT)

_seed2("posterior_grpo", "Posterior-GRPO (success-conditioned process rewards)",
         "Fan et al.", "2508.05170", _B + "B7", "posterior_grpo", "posterior_grpo", GRPO,
         (GRPO,),
         "Qwen/Qwen2.5-Coder-7B-Instruct",
         _with(DAPO_PAPER, sampling__n=8, sampling__max_new_tokens=4096,
               train__max_sampling_rounds=1, train__prompts_per_step=128,
               train__num_minibatches=4),
         "7B code policy with a 7B reasoning reward model (both reconstructions)",
         "7B policy, code generation", "+4.5 % over outcome-only baselines (GPT-4-Turbo level)",
         "The paper's code sandbox and trained reasoning reward model are not shipped: the "
         "outcome is the run's verifier and the reasoning score a judge LLM's P(Yes) "
         "(process_judge hook).")

_seed2("laser", "LaSeR (Last-Token Self-Rewarding)", "Yang et al., ICLR 2026", "2510.14943",
         _B + "B8", "laser", "laser", GRPO, (GRPO,), "Qwen/Qwen2.5-7B",
         _with(DAPO_PAPER, data__source="hf:zwhe99/DeepMath-103K?question_field=question"
                                        "&answer_field=final_answer",
               sampling__n=8, sampling__max_new_tokens=8192, train__prompts_per_step=128,
               train__num_minibatches=1, train__max_sampling_rounds=1,
               objective__aggregation="token_mean", objective__kl_coef=0.0),
         "Qwen2.5-7B-Base on DeepMath-103K, 128 prompts x 8, one minibatch",
         "Qwen2.5-7B-Base, ORZ-7B, OctoThinker-3B", "not retrieved (abstract: better reasoning "
         "and self-verification)", "")

_seed2("co_reward", "Co-Reward (contrastive agreement)", "Zhang et al.", "2508.00410",
         _B + "B9", "co_reward", "grpo", GRPO, (GRPO,), "Qwen/Qwen3-8B-Base",
         {"data.source": _MATH, "data.max_prompt_tokens": 512, "data.eval_size": 500,
          "reward.name": "math_verify", "reward.extract": ("boxed", "answer_tag"),
          "sampling.n": 8, "sampling.max_new_tokens": 3072, "train.prompts_per_step": 128,
          "train.num_minibatches": 2, "train.num_micro_batches": 8, "train.num_steps": 200,
          "optim.learning_rate": 3e-6, "optim.schedule": "cosine", "optim.warmup_steps": 20,
          "optim.decay_steps": 200, "objective.kl_coef": 0.005, "eval.every_steps": 20,
          "eval.num_prompts": 500},
         "Qwen3-8B-Base on MATH train (7.5k), 128 questions x 8, lr 3e-6 cosine",
         "Qwen3-8B-Base, MATH500 pass@1",
         "72.4 before; GT reward 82.6, majority vote 79.8, Co-Reward 81.2",
         "The paper's rephrasings are TMLR-Group-HF/CoReward-RephrasedMATH (a data field for "
         "the co_reward hook); without one the policy rephrases, which SmolLM2-135M does "
         "poorly (most attempts fall back to the original question, counted).")

_seed2("mm_upt", "MM-UPT / TTRV (majority-vote pseudo-rewards)", "MM-UPT; TTRV",
         "2505.22453", _B + "B10", "mm_upt", "grpo", GRPO, (GRPO,),
         "Qwen/Qwen2.5-VL-7B-Instruct",
         {"data.source": _MATH, "data.eval_size": 500, "reward.name": "math_verify",
          "reward.extract": ("boxed", "answer_tag"), "sampling.n": 10,
          "sampling.temperature": 0.7, "sampling.top_p": 0.99, "sampling.max_new_tokens": 2048,
          "train.prompts_per_step": 512, "train.num_minibatches": 4,
          "train.num_micro_batches": 8, "train.num_steps": 15,
          "optim.learning_rate": 1e-6, "objective.kl_coef": 0.01, "objective.eps_high": 0.3,
          "objective.aggregation": "token_mean", "eval.every_steps": 5,
          "eval.num_prompts": 500},
         "MM-UPT (EasyR1): G = 10, T = 0.7, KL 0.01; the paper's data (MMR1) is multimodal",
         "Qwen2.5-VL-7B, MathVista / We-Math",
         "MathVista 66.3 -> 72.9, We-Math 62.9 -> 68.7 (close to supervised GRPO)",
         "The paper's models are vision-language models, outside jaxrl_llm's text-only family: "
         "the config names them; a text model is needed to run it. At cpu scale both arms "
         "sample as MM-UPT does (T = 0.7, top-p 0.99), so they differ by the reward only.",
         cpu_extra={"sampling.temperature": 0.7, "sampling.top_p": 0.99})

_seed2("pav", "PAV (Rewarding Progress: process advantage verifiers)",
         "Setlur et al., ICLR 2025", "2410.08146", _B + "B11", "pav", "pav", GRPO, (GRPO,),
         "google/gemma-2-2b",
         {"data.source": _MATH, "data.eval_size": 500, "reward.name": "math_verify",
          "reward.extract": ("boxed", "answer_tag"), "sampling.max_new_tokens": 1024,
          "train.prompts_per_step": 64, "train.num_steps": 500, "optim.learning_rate": 1e-6,
          "eval.every_steps": 50, "eval.num_prompts": 500},
         "Gemma-2 2B/9B/27B on MATH (Gemma-2 is not in jaxrl_llm's model family)",
         "Gemma-2 2B/9B/27B, MATH", "online RL with PAV rewards: 5-6x sample efficiency, "
         ">6 % accuracy over ORM-based RL", "α and the prover K are reconstructions.")

_seed2("critique_grpo", "Critique-GRPO (natural-language critiques)", "Zhang et al.",
         "2506.03106", _B + "B12", "critique_grpo", "critique_grpo", GRPO, (GRPO,),
         "Qwen/Qwen3-8B-Base",
         {"data.source": "hf:open-r1/OpenR1-Math-220k?question_field=problem&answer_field=answer",
          "data.eval_size": 500, "reward.name": "math_verify",
          "reward.extract": ("boxed", "answer_tag"), "sampling.n": 8,
          "sampling.max_new_tokens": 6144, "train.prompts_per_step": 128,
          "train.num_minibatches": 2, "train.num_micro_batches": 8, "train.num_steps": 300,
          "optim.learning_rate": 1e-6, "eval.every_steps": 20, "eval.num_prompts": 500},
         "Qwen3-8B-Base on OpenR1-Math 4k, 128 prompts x (7 + 1 refinement), lr 1e-6",
         "Qwen2.5-7B-Base / Qwen3-8B-Base, 8 reasoning tasks, pass@1",
         "+4.5 % / +5 % average pass@1 over supervised and RL baselines (v6: +16.7 % over GRPO "
         "on AIME24 with self-critique)", "")

_seed2("preplan_anchor", "Preplan-and-anchor credit (Attention Illuminates LLM Reasoning)",
         "Li et al., SJTU/Alibaba", "2510.13554", _B + "B13", "grpo_attention",
         "grpo_attention", GRPO, (GRPO,),
         "Qwen/Qwen3-8B",
         {"data.source": _MATH, "data.eval_size": 500, "reward.name": "math_verify",
          "reward.extract": ("boxed", "answer_tag"), "sampling.max_new_tokens": 4096,
          "train.prompts_per_step": 128, "train.num_micro_batches": 8, "train.num_steps": 300,
          "optim.learning_rate": 1e-6, "eval.every_steps": 20, "eval.num_prompts": 500},
         "Qwen3-based GRPO (reconstruction), Countdown / CrossThink-QA / math",
         "Qwen3, Countdown, CrossThink-QA, math", "not retrieved (\"consistent gains\")",
         "W, q and γ are reconstructions; needs attention capture for a few heads.")
