"""Verifiable rewards: answer extraction, verifiers, composition and a timeout-bounded runner.

Reward functions are picklable callables `fn(completion, example) -> float`; `example` carries the
reference `answer` and `metadata` (as `jaxrl_llm.data.Example` does).
"""

from jaxrl_llm.rewards.composite import RewardFn, WeightedSum, reward_name, weighted_sum
from jaxrl_llm.rewards.extraction import (
    DEFAULT_MODES, EXTRACTION_MODES, AnswerExtractor, canonicalize_answer, extract_answer,
    extract_boxed, extract_hash, extract_last_number, extract_tagged, normalize_text, parse_math)
from jaxrl_llm.rewards.format import format_reward
from jaxrl_llm.rewards.majority import (
    answer_ids, co_reward_rewards, group_index, majority_vote, normalized_entropy, ttrv_rewards)
from jaxrl_llm.rewards.reasoning_gym import reasoning_gym_reward
from jaxrl_llm.rewards.runner import RewardResult, RewardRunner
from jaxrl_llm.rewards.verifiers import (
    ExampleLike, exact_match_reward, math_verify_reward, numeric_reward, parse_number)

__all__ = [
    "AnswerExtractor", "DEFAULT_MODES", "answer_ids", "co_reward_rewards", "group_index",
    "normalized_entropy", "ttrv_rewards", "EXTRACTION_MODES", "ExampleLike", "RewardFn",
    "RewardResult", "RewardRunner", "WeightedSum", "canonicalize_answer", "exact_match_reward",
    "extract_answer", "extract_boxed", "extract_hash", "extract_last_number", "extract_tagged",
    "format_reward", "majority_vote", "math_verify_reward", "normalize_text", "numeric_reward", "parse_math",
    "parse_number", "reasoning_gym_reward", "reward_name", "weighted_sum",
]
