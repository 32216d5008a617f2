"""Evaluation: unbiased pass@k, maj@k, greedy accuracy; the reproduction harness will live here."""

from jaxrl_llm.eval.evaluate import EvalResult, evaluate
from jaxrl_llm.eval.passk import maj_at_k, pass_at_k

__all__ = ["EvalResult", "evaluate", "maj_at_k", "pass_at_k"]
