"""Prompt data: reasoning-gym tasks, Hugging Face datasets (hub id or local files) and JSONL.

`make_source("reasoning_gym:chain_sum?size=500")` returns an iterator of `Example`s with a resumable
cursor; `TokenizedSource` applies the chat template and drops (and counts) over-long prompts.
"""

from jaxrl_llm.data.fields import PRESETS, FieldMapping, field_mapping
from jaxrl_llm.data.hf import load_table
from jaxrl_llm.data.prompts import (
    ANSWER_FORMATS, EncodedPrompt, Example, PromptFormat, PromptSource, TableSource,
    TokenizedSource, encode_prompt, render_prompt)
from jaxrl_llm.data.reasoning_gym import task_names
from jaxrl_llm.data.sources import make_source, parse_spec, train_eval_sources

__all__ = [
    "ANSWER_FORMATS", "EncodedPrompt", "Example", "FieldMapping", "PRESETS", "PromptFormat",
    "PromptSource", "TableSource", "TokenizedSource", "encode_prompt", "field_mapping",
    "load_table", "make_source", "parse_spec", "render_prompt", "task_names", "train_eval_sources",
]
