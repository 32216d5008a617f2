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
