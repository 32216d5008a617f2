"""On-request forward outputs: LaSeR's `sr_logp` and B13's attention statistics (`waad`, `fai`).

References: `sr_logp` against the full logits of the sequence with z appended after each row's last
completion token (the spec's "append z" reading), and its micro-batched gradient against the
full-batch gradient of that reference; the attention statistics against a float64 NumPy
computation from the attention weights Hugging Face materialises (`output_attentions=True`,
eager attention) on a tiny random Qwen2 checkpoint.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxrl_llm import models, objectives as ob, training
from jaxrl_llm.models.transformer import AttentionRequest
from jaxrl_llm.training import forward as fwd
from tests.models import hf_tiny
from tests.training.helpers import (
    TINY, prepared, random_batch, tiny_params)

Z = 7


def _appended(batch, z):
  """(tokens, mask) [B, L + 1] with z written right after each row's last completion token."""
  p = batch.prompt_len
  tokens = np.pad(np.asarray(batch.tokens), ((0, 0), (0, 1)))
  mask = np.pad(np.asarray(batch.attention_mask), ((0, 0), (0, 1)))
  lengths = mask[:, p:].sum(axis=1)
  zs = np.broadcast_to(np.asarray(z), (tokens.shape[0],))
  for b, n in enumerate(lengths):
    tokens[b, p + n], mask[b, p + n] = zs[b], 1
  return jnp.asarray(tokens), jnp.asarray(mask), lengths


def _direct_sr_logp(params, batch, z, temperature=1.0):
  """log softmax(full logits / τ) of z at the appended position (no shortcut through hidden)."""
  tokens, mask, lengths = _appended(batch, z)
  logits = models.forward(params, TINY, tokens, attention_mask=mask).logits / temperature
  logp = jax.nn.log_softmax(logits, axis=-1)
  rows = jnp.arange(tokens.shape[0])
  pos = batch.prompt_len + jnp.asarray(lengths)
  return logp[rows, pos - 1, tokens[rows, pos]]


@pytest.fixture(scope="module")
def batch():
  """4 groups of 4, ragged prompts and completions, one empty completion, one full-width row."""
  b = random_batch(0, 4, 4)
  p = b.prompt_len
  am = np.asarray(b.attention_mask).copy()
  am[1, p:] = 1                                   # a truncated row: every column is a token
  am[2, p:] = 0                                   # an empty completion
  mask = am[:, p:].astype(np.float32)
  return b.replace(attention_mask=jnp.asarray(am), ctx=b.ctx.replace(mask=jnp.asarray(mask)))


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sr_logp_is_the_logprob_of_z_after_the_last_token(batch, temperature):
  params = tiny_params(0)
  lengths = np.asarray(batch.attention_mask[:, batch.prompt_len:]).sum(1)
  assert lengths.min() == 0 and lengths.max() == batch.completion_len   # empty and truncated rows
  got = jax.jit(lambda q: fwd.forward_outputs(q, TINY, batch, {"sr_logp", fwd.sr_token_tag(Z)},
                                              temperature=temperature)["sr_logp"])(params)
  want = jax.jit(lambda q: _direct_sr_logp(q, batch, Z, temperature))(params)
  assert got.shape == (batch.batch_size,)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-5, rtol=0)


def test_sr_token_per_row_from_extras(batch):
  params = tiny_params(0)
  zs = jnp.arange(batch.batch_size, dtype=jnp.int32) % TINY.vocab_size
  b = batch.replace(ctx=batch.ctx.replace(extras={**batch.ctx.extras, "sr_token": zs}))
  got = fwd.forward_outputs(params, TINY, b, {"sr_logp"})["sr_logp"]
  np.testing.assert_allclose(np.asarray(got), np.asarray(_direct_sr_logp(params, b, zs)),
                             atol=2e-5, rtol=0)


def test_missing_or_conflicting_tags_are_clear_errors(batch):
  params = tiny_params(0)
  with pytest.raises(ValueError, match="names no self-reward token.*sr_token"):
    fwd.forward_outputs(params, TINY, batch, {"sr_logp"})
  with pytest.raises(ValueError, match="sets sr_token twice"):
    fwd.forward_options({"sr_token=1", "sr_token=2"})
  with pytest.raises(ValueError, match="unknown forward tag"):
    fwd.forward_options({"sr_tokn=1"})
  with pytest.raises(ValueError, match="layer.head pairs"):
    fwd.forward_options({"attn_local=0-1"})
  with pytest.raises(ValueError, match="outside the model"):
    fwd.forward_outputs(params, TINY, batch, {"waad", "attn_local=5.0", "attn_global=0.0"})


def _sr_objective():
  """PPO-clip plus a per-row term 0.3·sr_logp² spread over the row's tokens (token_mean)."""
  def sr_term(ctx):
    sr = ctx.require("sr_logp", by="sr_term")
    return ctx.add_term("sr", 0.3 * jnp.square(sr)[:, None] * jnp.ones_like(ctx.mask))
  return ob.Objective(
      rollout=ob.chain(ob.group_advantage("group")),
      loss=ob.chain(ob.ppo_clip(0.2, 0.2),
                    ob.stateless(sr_term, requires={"sr_logp", fwd.sr_token_tag(Z)},
                                 phase="loss"),
                    ob.aggregate("token_mean"))).check()


def test_micro_batched_gradient_through_sr_logp_is_the_full_batch_gradient(batch):
  objective = _sr_objective()
  state, _, rolled = prepared(objective, batch, tiny_params(0))
  params = state.params
  loss_state = training.init_objective_state(objective, rolled).loss
  p = rolled.prompt_len

  def reference(params):
    logits = models.forward(params, TINY, rolled.tokens,
                            attention_mask=rolled.attention_mask).logits[:, p - 1:-1]
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), rolled.tokens[:, p:, None],
                               axis=-1)[..., 0]
    ctx = ob.LossContext.from_batch(rolled.ctx, logp=logp, step=0)
    ctx = ctx.replace(extras={**ctx.extras, "sr_logp": _direct_sr_logp(params, rolled, Z)})
    ctx, _ = objective.loss.update(ctx, loss_state)
    return ctx.loss.value()

  @jax.jit
  def run(params):
    out = {"reference": jax.value_and_grad(reference)(params),
           "sr_grad": jax.grad(lambda q: jnp.sum(_direct_sr_logp(q, rolled, Z)))(params)}
    for k in (1, 4):   # 4 micro-batches of one whole group each
      loss, grads, _, _ = training.accumulate_gradients(
          params, rolled, loss_state, jnp.int32(0), jax.random.key(0), model_config=TINY,
          objective=objective, num_micro_batches=k)
      out[f"k{k}"] = (loss, grads)
    return out

  out = run(params)
  want_loss, want = out["reference"]
  assert float(jnp.abs(out["sr_grad"]["embed"]).max()) > 1e-3   # the term really moves params
  for k in (1, 4):
    loss, grads = out[f"k{k}"]
    np.testing.assert_allclose(float(loss), float(want_loss), rtol=1e-5)
    for x, y in zip(jax.tree.leaves(grads), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=2e-6, rtol=1e-4)


# ------------------------------------------------------------------------------ attention stats


def _np_stats(attn, local, glob, tokens_mask, p, window):
  """float64 WAAD / FAI over completion columns from attention [L][B, N, T, T]; and MAD [L, N]."""
  attn = np.stack([np.asarray(a, np.float64) for a in attn])           # [L, B, N, T, T]
  _, b, _, t, _ = attn.shape
  recv = tokens_mask.astype(np.float64).copy()
  recv[:, :p] = 0
  a_loc = np.mean([attn[l, :, h] for l, h in local], axis=0)          # [B, T, T]
  a_glob = np.mean([attn[l, :, h] for l, h in glob], axis=0)
  waad = np.zeros((b, t))
  fai = np.zeros((b, t))
  for r in range(b):
    for i in range(t):
      waad[r, i] = sum(a_loc[r, i, s] * min(i - s, window) for s in range(i + 1))
    for s in range(t):
      later = [i for i in range(s + 1, t) if recv[r, i]]
      fai[r, s] = sum(a_glob[r, i, s] for i in later) / max(len(later), 1)
  dist = np.maximum(np.arange(t)[:, None] - np.arange(t)[None, :], 0)
  mad = np.einsum("lbnts,ts,bt->ln", attn, dist, recv) / recv.sum()
  comp = tokens_mask[:, p:]
  return waad[:, p:] * comp, fai[:, p:] * comp, mad


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
  hf = hf_tiny.make_hf_model("qwen2")
  hf.set_attn_implementation("eager")
  folder = hf_tiny.save_hf(hf, tmp_path_factory.mktemp("qwen2_attn"))
  ours, _ = models.from_pretrained(folder)
  return hf, ours


def _hf_batch(vocab):
  """Left-padded prompts (width 5) + right-padded completions (width 9, one truncated)."""
  rng = np.random.default_rng(3)
  p, t = 5, 9
  prompt_lens, comp_lens = [5, 3, 1, 4], [9, 4, 6, 0]
  tokens = rng.integers(3, vocab, (4, p + t)).astype(np.int32)
  mask = np.zeros((4, p + t), np.int32)
  for r, (a, c) in enumerate(zip(prompt_lens, comp_lens)):
    mask[r, p - a:p + c] = 1
  tokens = np.where(mask > 0, tokens, 0)
  comp = mask[:, p:].astype(np.float32)
  ctx = ob.LossContext.create(mask=comp, rewards=np.zeros(4, np.float32),
                              old_logp=np.zeros_like(comp), group_size=2)
  return training.RolloutBatch(tokens=jnp.asarray(tokens), attention_mask=jnp.asarray(mask),
                               ctx=ctx, prompt_len=p)


def _hf_attentions(hf, batch):
  m = torch.tensor(np.asarray(batch.attention_mask), dtype=torch.long)
  pos = (m.cumsum(-1) - 1).clamp(min=0)
  with torch.no_grad():
    out = hf(torch.tensor(np.asarray(batch.tokens), dtype=torch.long), attention_mask=m,
             position_ids=pos, output_attentions=True)
  return [a.double().numpy() for a in out.attentions]


def test_attention_statistics_match_numpy_from_hf_attention_weights(hf_pair):
  hf, ours = hf_pair
  batch = _hf_batch(hf.config.vocab_size)
  attn = _hf_attentions(hf, batch)
  local, glob, window = ((0, 1), (2, 4), (1, 0)), ((1, 3), (2, 5)), 3
  requires = {"waad", "fai"} | fwd.attention_tags(window, "0.1,2.4,1.0", "1.3,2.5")
  got = fwd.forward_outputs(ours.params(), ours.config, batch, requires)
  waad, fai, mad = _np_stats(attn, local, glob, np.asarray(batch.attention_mask),
                             batch.prompt_len, window)
  assert waad.max() > 1.0 and fai.max() > 0.05        # not trivially zero
  np.testing.assert_allclose(np.asarray(got["waad"]), waad, atol=2e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(got["fai"]), fai, atol=2e-6, rtol=0)
  # Mean attention distance per head (the default head choice reads it).
  zeros = jnp.zeros((ours.config.num_layers, ours.config.num_heads))
  recv = batch.attention_mask.at[:, :batch.prompt_len].set(0).astype(jnp.float32)
  out = models.forward(ours.params(), ours.config, batch.tokens,
                       attention_mask=batch.attention_mask, return_logits=False,
                       attention_stats=AttentionRequest(zeros, zeros, recv, window))
  np.testing.assert_allclose(np.asarray(out.attention.mad), mad, atol=2e-5, rtol=0)


def test_default_heads_are_chosen_by_mean_attention_distance(hf_pair):
  hf, ours = hf_pair
  batch = _hf_batch(hf.config.vocab_size)
  attn = _hf_attentions(hf, batch)
  _, _, mad = _np_stats(attn, ((0, 0),), ((0, 0),), np.asarray(batch.attention_mask),
                        batch.prompt_len, 10)
  order = np.argsort(mad.reshape(-1))
  n = mad.shape[1]
  local = [(int(i) // n, int(i) % n) for i in order[:2]]
  glob = [(int(i) // n, int(i) % n) for i in order[-2:]]
  got = fwd.forward_outputs(ours.params(), ours.config, batch,
                            {"waad", "fai"} | fwd.attention_tags(10, num_heads=2))
  waad, fai, _ = _np_stats(attn, local, glob, np.asarray(batch.attention_mask),
                           batch.prompt_len, 10)
  np.testing.assert_allclose(np.asarray(got["waad"]), waad, atol=2e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(got["fai"]), fai, atol=2e-6, rtol=0)


@pytest.mark.parametrize("window", [1, 4, 10])
def test_waad_and_fai_are_bounded(batch, window):
  """Spec B13 (f)1: WAAD ∈ [0, W], FAI ∈ [0, 1] for row-stochastic attention; 0 off the mask."""
  out = fwd.forward_outputs(tiny_params(2), TINY, batch,
                            {"waad", "fai"} | fwd.attention_tags(window))
  comp = np.asarray(batch.attention_mask[:, batch.prompt_len:])
  for name, hi in (("waad", window), ("fai", 1.0)):
    x = np.asarray(out[name])
    assert x.shape == comp.shape
    assert x.min() >= 0.0 and x.max() <= hi + 1e-5, (name, x.min(), x.max())
    assert np.all(x[comp == 0] == 0.0)
  assert np.asarray(out["waad"]).max() > 0.5 * min(window, 2)


def test_rollout_phase_transforms_get_the_old_policys_extras(batch):
  """A rollout-phase transform that requires sr_logp/waad/fai reads them (old policy, no
  gradient); they are dropped from the batch afterwards."""
  tags = {"sr_logp", "waad", "fai", fwd.sr_token_tag(Z)} | fwd.attention_tags(5, num_heads=2)

  def read(ctx):
    x = (ctx.extras["waad"] + 2.0 * ctx.extras["fai"] + ctx.extras["sr_logp"][:, None])
    return ctx.replace(advantages=x * ctx.mask)
  objective = ob.Objective(
      rollout=ob.chain(ob.stateless(read, requires=tags, phase="rollout")),
      loss=ob.chain(ob.ppo_clip(), ob.aggregate("token_mean"))).check()
  params = tiny_params(0)
  state = training.TrainState.create(params, training.optim.optimizer(learning_rate=1e-3),
                                     jax.random.key(0),
                                     objective_state=training.init_objective_state(objective,
                                                                                   batch))
  _, out, _ = jax.jit(lambda s, b: training.rollout(s, b, model_config=TINY,
                                                    objective=objective))(state, batch)
  direct = fwd.forward_outputs(params, TINY, batch, tags)
  want = (direct["waad"] + 2.0 * direct["fai"] + direct["sr_logp"][:, None]) * batch.ctx.mask
  np.testing.assert_allclose(np.asarray(out.ctx.advantages), np.asarray(want), atol=1e-5)
  assert not {"waad", "fai", "sr_logp"} & set(out.ctx.extras)


def test_default_forward_has_no_attention_output(batch):
  out = models.forward(tiny_params(0), TINY, batch.tokens, attention_mask=batch.attention_mask)
  assert out.attention is None
