"""jaxrl_llm: group-relative policy optimisation for language models, in JAX.

  import jaxrl_llm as jrl
  model, tokenizer = jrl.models.from_pretrained("smollm2-135m-instruct")
  out = jrl.sampling.sample(model, prompts, key, jrl.sampling.SamplingConfig(n=8))
  loss, metrics = jrl.objectives.presets.grpo()(ctx)
"""
from jaxrl_llm import data, eval, models, objectives, rewards, sampling  # noqa: A004

__version__ = "0.1.0"
__all__ = ["data", "eval", "models", "objectives", "rewards", "sampling"]
