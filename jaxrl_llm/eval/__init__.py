"""Evaluation: unbiased pass@k, maj@k, greedy accuracy.

The reproduction harness is the submodule `jaxrl_llm.eval.reproduce` (imported on its own: it
drives `training.loop`, which itself imports this package).
"""

from jaxrl_llm.eval.evaluate import EvalResult, evaluate
from jaxrl_llm.eval.passk import maj_at_k, pass_at_k

__all__ = ["EvalResult", "evaluate", "maj_at_k", "pass_at_k"]
