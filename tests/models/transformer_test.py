"""Model-level behaviour: tracing, the NNX functional boundary, logical axes and bad inputs."""
import functools
import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxrl_llm import models
from jaxrl_llm.models import transformer

CONFIG = models.ModelConfig(model_type="qwen3", vocab_size=64, hidden_size=32,
                            intermediate_size=48, num_layers=2, num_heads=4, num_kv_heads=2,
                            head_dim=8, qk_norm=True)


@pytest.fixture(scope="module")
def model():
  return models.Transformer(CONFIG, rngs=nnx.Rngs(0))


def test_forward_traces_once_per_shape(model):
  params = model.params()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def fwd(params, tokens, mask):
    return models.forward(params, CONFIG, tokens, attention_mask=mask).logits

  rng = np.random.default_rng(0)
  for _ in range(3):   # new values, same shapes: no retrace (assert_max_traces raises on a 2nd)
    tokens = jnp.asarray(rng.integers(0, 64, (2, 9)), jnp.int32)
    fwd(params, tokens, jnp.ones((2, 9), jnp.int32))
  # The eager API goes through one module-level jit as well.
  before = transformer._forward_jit._cache_size()
  model(np.asarray(rng.integers(0, 64, (2, 9)), np.int32))
  model(np.asarray(rng.integers(0, 64, (2, 9)), np.int32))
  assert transformer._forward_jit._cache_size() == before + 1


def test_nnx_split_merge_boundary(model):
  graphdef, state = nnx.split(model)
  tokens = jnp.asarray([[1, 2, 3]], jnp.int32)

  @jax.jit
  def run(state, tokens):
    return nnx.merge(graphdef, state)(tokens)

  np.testing.assert_allclose(np.asarray(run(state, tokens)), np.asarray(model(tokens)), atol=1e-6)


def test_every_param_carries_logical_axes(model):
  specs = nnx.get_partition_spec(nnx.state(model, nnx.Param))
  flat = transformer.flatten(nnx.to_pure_dict(specs))
  assert set(flat) == set(models.param_shapes(CONFIG))
  names = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "layers"}
  for path, spec in flat.items():
    assert tuple(spec) == models.LOGICAL_AXES[path]
    assert set(spec) <= names
    assert len(spec) == len(models.param_shapes(CONFIG)[path])


def test_remat_policies_give_same_gradients_and_keep_less(model):
  """Every policy computes the same gradient; what the backward keeps (the VJP's residuals)
  shrinks from none to dots (weight-matmul outputs) to full (layer inputs)."""
  params = model.params()
  tokens = jnp.asarray([[3, 5, 7, 11, 13, 2, 9, 4]], jnp.int32)

  def loss(p, remat):
    return jnp.mean(models.forward(p, CONFIG, tokens, remat=remat).logits ** 2)

  plain = jax.grad(loss)(params, False)
  kept = {}
  for remat in ("none", "full", "dots", True):
    chex.assert_trees_all_close(jax.grad(loss)(params, remat), plain, atol=1e-6)
    _, vjp = jax.vjp(functools.partial(loss, remat=remat), params)
    kept[remat] = sum(x.size for x in jax.tree.leaves(vjp))
  assert kept["full"] == kept[True] < kept["dots"] < kept["none"], kept
  with pytest.raises(ValueError, match="unknown remat policy 'dot'; valid: none, full, dots"):
    loss(params, "dot")


def _grouped_rows(num_prompts=3, group=4, prompt_width=7, width=5, seed=0):
  """Rows in groups of `group` sharing a left-padded prompt, with right-padded completions."""
  rng = np.random.default_rng(seed)
  prompts = rng.integers(1, 64, (num_prompts, prompt_width))
  prompt_mask = np.ones((num_prompts, prompt_width), np.int32)
  prompt_mask[0, :3] = 0
  prompt_mask[1, :1] = 0
  b = num_prompts * group
  own = rng.integers(1, 64, (b, width))
  own_mask = np.ones((b, width), np.int32)
  own_mask[2, 3:] = 0
  own_mask[5, 1:] = 0
  mask = np.concatenate([np.repeat(prompt_mask, group, 0), own_mask], 1)
  tokens = np.where(mask == 1, np.concatenate([np.repeat(prompts, group, 0), own], 1), 0)
  return jnp.asarray(tokens, jnp.int32), jnp.asarray(mask, jnp.int32)


@pytest.mark.parametrize("remat", ["none", "dots"])
def test_shared_prompt_forward_equals_the_whole_rows(model, remat):
  """Prompts run once per group, completions over the group's keys/values: the same hidden states
  (and gradients) as the plain forward over whole rows, on real positions."""
  params = model.params()
  tokens, mask = _grouped_rows()
  p, g = 7, 4
  real = jnp.concatenate([jnp.ones((12, 1)), mask[:, p:].astype(jnp.float32)], 1)[..., None]

  def plain(params):
    out = models.forward(params, CONFIG, tokens, attention_mask=mask, return_logits=False,
                         return_hidden=True, remat=remat)
    return out.hidden[:, p - 1:]

  def shared(params):
    return models.forward_shared_prompts(params, CONFIG, tokens, mask, prompt_len=p,
                                         group_size=g, remat=remat)

  assert shared(params).shape == (12, 6, CONFIG.hidden_size)
  np.testing.assert_allclose(shared(params) * real, plain(params) * real, atol=2e-6)

  def loss(f):
    return lambda params: jnp.sum(jnp.sin(3.0 * f(params)) * real)
  got, want = jax.grad(loss(shared))(params), jax.grad(loss(plain))(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    scale = float(jnp.max(jnp.abs(b)))    # summation order differs: compare at the leaf's scale
    assert float(jnp.max(jnp.abs(a - b))) <= 2e-6 * scale + 1e-7, jax.tree_util.keystr(path)
  # The check can fail: rows whose prompts differ inside a group give other states.
  other = tokens.at[1, p - 1].set((tokens[1, p - 1] + 1) % 64)
  moved = models.forward(params, CONFIG, other, attention_mask=mask, return_logits=False,
                         return_hidden=True).hidden[:, p - 1:]
  assert float(jnp.max(jnp.abs((moved - shared(params)) * real))) > 1e-3


def test_shared_prompt_forward_bad_arguments(model):
  params = model.params()
  tokens, mask = _grouped_rows()
  with pytest.raises(ValueError, match="group_size=5 must be >= 1 and divide the 12 rows"):
    models.forward_shared_prompts(params, CONFIG, tokens, mask, prompt_len=7, group_size=5)
  with pytest.raises(ValueError, match="prompt_len=12 must leave at least one prompt and one "
                     "completion column of the 12"):
    models.forward_shared_prompts(params, CONFIG, tokens, mask, prompt_len=12, group_size=4)


# ----------------------------------------------------------------------------------- bad inputs


def test_token_id_out_of_vocab(model):
  with pytest.raises(ValueError, match=r"token id 64 is outside the vocabulary \[0, 64\)"):
    model(np.array([[1, 64]], np.int32))
  with pytest.raises(ValueError, match="token id -1"):
    model(np.array([[-1, 3]], np.int32))
  with pytest.raises(ValueError, match=r"tokens must be \[batch, time\]"):
    model(np.array([1, 2], np.int32))


def test_missing_folder(tmp_path):
  with pytest.raises(models.ModelLoadError, match="does not exist"):
    models.from_pretrained(tmp_path / "nope")


def test_folder_without_weights(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(CONFIG_JSON))
  with pytest.raises(models.ModelLoadError, match=r"no \*\.safetensors weights"):
    models.from_pretrained(tmp_path)


def test_folder_without_config(tmp_path):
  with pytest.raises(models.ModelLoadError, match="no config.json"):
    models.from_pretrained(tmp_path)


def test_unsupported_model_type(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({**CONFIG_JSON, "model_type": "gpt2"}))
  with pytest.raises(ValueError, match=r"Unsupported model_type 'gpt2'.*llama"):
    models.from_pretrained(tmp_path)


def test_unsupported_gguf_architecture(tmp_path):
  import gguf
  path = tmp_path / "tiny.gguf"
  writer = gguf.GGUFWriter(str(path), "gpt2")
  writer.add_block_count(1)
  writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
  writer.write_header_to_file()
  writer.write_kv_data_to_file()
  writer.write_tensors_to_file()
  writer.close()
  with pytest.raises(models.ModelLoadError, match="GGUF architecture 'gpt2' is not supported"):
    models.from_pretrained(path)


def test_hub_id_while_offline(monkeypatch):
  monkeypatch.setenv("HF_HUB_OFFLINE", "1")
  with pytest.raises(models.ModelLoadError, match="Pass a local folder"):
    models.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_unknown_dtype():
  with pytest.raises(ValueError, match=r"Unknown dtype 'bfloat61'.*Did you mean 'bfloat16'"):
    models.from_pretrained("smollm2-135m-instruct", dtype="bfloat61")


def test_folder_without_tokenizer_warns_and_returns_none(tmp_path, model):
  models.save_pretrained(model, tmp_path)
  with pytest.warns(UserWarning, match="no tokenizer files"):
    loaded, tok = models.from_pretrained(tmp_path)
  assert tok is None
  np.testing.assert_array_equal(np.asarray(loaded([[1, 2]])), np.asarray(model([[1, 2]])))


CONFIG_JSON = {"model_type": "llama", "vocab_size": 64, "hidden_size": 32,
               "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
               "num_key_value_heads": 2}
