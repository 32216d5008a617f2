"""Float64 NumPy references written from the spec formulas (`spec/baselines_and_more.md` §1–§2).

Independent of the jax code: loops and plain NumPy, and closed-form gradients w.r.t. logp where the
loss is piecewise (PPO/GSPO clipping), so tests can compare values *and* gradients.
"""
import numpy as np


def groups_of(n_rows, group_size):
  return [list(range(k, k + group_size)) for k in range(0, n_rows, group_size)]


def group_advantage(r, group_size, scale="group", eps=1e-6, ddof=1):
  a = np.zeros_like(r)
  sigma_batch = np.std(r, ddof=ddof)
  for rows in groups_of(len(r), group_size):
    g = r[rows]
    if len(g) <= 1:
      continue
    centred = g - g.mean()
    if scale == "group":
      a[rows] = centred / (np.std(g, ddof=ddof) + eps)
    elif scale == "batch":
      a[rows] = centred / (sigma_batch + eps)
    else:
      a[rows] = centred
  return a


def rloo_advantage(r, group_size):
  a = np.zeros_like(r)
  for rows in groups_of(len(r), group_size):
    for b in rows:
      others = [r[j] for j in rows if j != b]
      a[b] = r[b] - np.mean(others)
  return a


def reinforce_pp_advantage(r, mask, group_size, eps=1e-8):
  mu = np.array([r[rows].mean() for rows in groups_of(len(r), group_size) for _ in rows])
  centred = r - mu
  tok = centred[:, None] * mask
  m = mask.sum()
  mean = (tok * mask).sum() / m
  var = (((tok - mean) ** 2) * mask).sum() / m * m / (m - 1)
  return (tok - mean) / np.sqrt(var + eps) * mask


def ppo_clip(logp, old_logp, adv, mask, eps_low, eps_high, dual_clip=None):
  """Per-token loss ℓ and ∂ℓ/∂logp (0 off the mask)."""
  loss = np.zeros_like(logp)
  grad = np.zeros_like(logp)
  for b, t in zip(*np.nonzero(mask)):
    rho = np.exp(logp[b, t] - old_logp[b, t])
    a = adv[b, t]
    unclipped, clipped = rho * a, np.clip(rho, 1 - eps_low, 1 + eps_high) * a
    if unclipped <= clipped:
      loss[b, t], grad[b, t] = -unclipped, -rho * a
    else:
      loss[b, t], grad[b, t] = -clipped, 0.0
    if dual_clip is not None and a < 0 and -dual_clip * a < loss[b, t]:
      loss[b, t], grad[b, t] = -dual_clip * a, 0.0
  return loss, grad


def gspo_row_loss(logp, old_logp, adv_row, mask, eps_low, eps_high):
  """GSPO per-row loss ℓ_b and ∂ℓ_b/∂logp (row-constant over valid tokens)."""
  n = len(adv_row)
  loss = np.zeros(n)
  grad = np.zeros_like(logp)
  for b in range(n):
    length = mask[b].sum()
    if length == 0:
      continue
    s = np.exp(((logp[b] - old_logp[b]) * mask[b]).sum() / length)
    a = adv_row[b]
    unclipped, clipped = s * a, np.clip(s, 1 - eps_low, 1 + eps_high) * a
    if unclipped <= clipped:
      loss[b] = -unclipped
      grad[b] = -a * s / length * mask[b]
    else:
      loss[b] = -clipped
  return loss, grad


def kl(logp, ref_logp, estimator):
  """Per-token estimator and its derivative w.r.t. logp."""
  x = ref_logp - logp
  if estimator == "k1":
    return -x, np.ones_like(x)
  if estimator == "k2":
    return 0.5 * x ** 2, logp - ref_logp
  return np.exp(x) - x - 1, 1 - np.exp(x)


def aggregate_weights(mask, mode, norm=None):
  """The linear map of aggregation: loss = Σ W ⊙ x, so ∂loss/∂x = W (0 off the mask)."""
  lengths = mask.sum(1)
  nonempty = (lengths > 0).sum()
  if mode == "token_mean":
    return mask / mask.sum()
  if mode == "seq_mean_token_mean":
    return mask / np.maximum(lengths, 1)[:, None] / nonempty
  if mode == "seq_mean_token_sum":
    return mask / nonempty
  norm = mask.shape[1] if norm is None else norm
  return mask / (mask.shape[0] * norm)


def overlong(lengths, max_len, cache_len):
  out = []
  for length in lengths:
    if length <= max_len - cache_len:
      out.append(0.0)
    elif length <= max_len:
      out.append(((max_len - cache_len) - length) / cache_len)
    else:
      out.append(-1.0)
  return np.array(out)


def uniform_group_keep(r, group_size):
  keep = np.ones(len(r))
  for rows in groups_of(len(r), group_size):
    if len(set(r[rows].tolist())) == 1:
      keep[rows] = 0.0
  return keep


def top_entropy_keep(entropy, mask, frac):
  vals = sorted(entropy[mask > 0].tolist(), reverse=True)
  k = max(1, int(np.ceil(frac * len(vals))))
  threshold = vals[k - 1]
  return ((entropy >= threshold) & (mask > 0)).astype(np.float64)
