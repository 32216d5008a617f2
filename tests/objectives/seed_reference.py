"""Float64 NumPy references of the seed-paper formulas (`spec/seed_methods.md`, B1).

Written from the spec, independently of `jaxrl_llm/objectives/seed.py`: explicit loops over rows,
actions and tokens, and closed-form gradients w.r.t. logp where the term is piecewise.
"""
import numpy as np


def actions(mask_row):
  """Lists of token indices of the maximal runs of mask 1 in one row."""
  out, cur = [], []
  for t, m in enumerate(mask_row):
    if m > 0:
      cur.append(t)
    elif cur:
      out.append(cur)
      cur = []
  if cur:
    out.append(cur)
  return out


def llds(logp, old_logp, adv, mask, coef, gate="action", norm="per_response", answer_w=None):
  """Per-token LLDS term and its gradient w.r.t. logp (the aggregation is applied by the caller)."""
  n, t = mask.shape
  term, grad = np.zeros((n, t)), np.zeros((n, t))
  rows = [b for b in range(n) if mask[b].sum() > 0]
  pres = [b for b in rows if all(adv[b, k] >= 0 for k in range(t) if mask[b, k] > 0)]
  c = coef * (len(rows) / max(len(pres), 1) if norm == "per_response" else 1.0)
  for b in pres:
    acts = actions(mask[b])
    delta = {k: old_logp[b, k] - logp[b, k] for a in acts for k in a}
    if gate == "response":
      acts = [[k for a in acts for k in a]]
    for a in acts:
      fire = gate == "token" or sum(delta[k] for k in a) > 0
      if not fire:
        continue
      for k in a:
        if delta[k] > 0:
          w = 1.0 if answer_w is None else answer_w[b, k]
          term[b, k] = c * w * delta[k]
          grad[b, k] = -c * w
  return term, grad


def clipped(rho, a, eps_low, eps_high, dual=None):
  """(ℓ, ∂ℓ/∂ρ) of the clipped surrogate for scalars."""
  un, cl = rho * a, min(max(rho, 1 - eps_low), 1 + eps_high) * a
  if un <= cl:
    loss, d = -un, -a
  else:
    loss, d = -cl, 0.0
  if dual is not None and a < 0 and -dual * a < loss:
    loss, d = -dual * a, 0.0
  return loss, d


def nsr_token(logp, old_logp, adv, mask, eps_low, eps_high, u, u_min, dual=None,
              expected=False):
  """Per-token NSR loss and ∂ℓ/∂logp; `u` the uniform draws ([B, T]); `expected`: mean form."""
  loss, grad = np.zeros_like(logp), np.zeros_like(logp)
  for b, t in zip(*np.nonzero(mask)):
    rho = np.exp(logp[b, t] - old_logp[b, t])
    a = adv[b, t]
    lc, dc = clipped(rho, a, eps_low, eps_high, dual)
    up = a > 0 and rho > 1 + eps_high
    down = a < 0 and rho < 1 - eps_low
    if expected:
      if up:
        p = np.clip(((1 + eps_high) / rho - u_min) / (1 - u_min), 0, 1)
      elif down:
        p = np.clip((rho / (1 - eps_low) - u_min) / (1 - u_min), 0, 1)
      else:
        p = 0.0
      loss[b, t] = p * (-rho * a) + (1 - p) * lc
      grad[b, t] = (p * (-a) + (1 - p) * dc) * rho
      continue
    rescued = (up and u[b, t] * rho <= 1 + eps_high) or (down and rho / u[b, t] >= 1 - eps_low)
    if rescued:
      loss[b, t], grad[b, t] = -rho * a, -rho * a
    else:
      loss[b, t], grad[b, t] = lc, dc * rho
  return loss, grad


def owpo_weight(pol, ref, adv, mask, eps_acc, eps_lock):
  w = np.ones_like(pol)
  for b, t in zip(*np.nonzero(mask)):
    d = np.sign(adv[b, t]) * (pol[b, t] - ref[b, t])
    w[b, t] = min(max(np.exp(-d), 1 - eps_lock), 1 + eps_acc)
  return w


def low_prob_weight(old_logp, mask, alpha):
  return np.where(mask > 0, 1 + alpha * (1 - np.exp(np.minimum(old_logp, 0))), 1.0)


def divergence_weight(logp, old_logp, mask, alpha, scale):
  w = np.ones_like(logp)
  for b, t in zip(*np.nonzero(mask)):
    d = logp[b, t] - old_logp[b, t]
    kl = np.exp(d) - 1 - d
    w[b, t] = 1 + scale * (1 / (1 + np.exp(-alpha * kl)) - 0.5)
  return w


def fipo_weight(logp, old_logp, adv, mask, half_life, eps_low, eps_high, c, kappa,
                cap=(0.8, 1.0), high_only=False):
  gamma = 2.0 ** (-1.0 / half_life)
  n, t = mask.shape
  w = np.ones_like(logp)
  lo, hi = (1.0, 1 + eps_high) if high_only else (1 - eps_low, 1 + eps_high)
  for b in range(n):
    for i in range(t):
      if mask[b, i] == 0:
        continue
      f = 0.0
      for k in range(i, t):
        d = logp[b, k] - old_logp[b, k]
        if mask[b, k] > 0 and np.exp(d) <= c:
          f += gamma ** (k - i) * d
      v = min(max(np.exp(f), lo), hi)
      if adv[b, i] < 0 and np.exp(logp[b, i] - old_logp[b, i]) > kappa:
        v = min(max(v, cap[0]), cap[1])
      w[b, i] = v
  return w


def unlikeliness(rewards, mean_logp, group_size, beta, variant="code"):
  out = rewards.copy()
  for g in range(0, len(rewards), group_size):
    rows = list(range(g, g + group_size))
    n = len(rows)
    for b in rows:
      u = sum(1 for j in rows if mean_logp[j] < mean_logp[b]
              or (mean_logp[j] == mean_logp[b] and j < b))
      k = u if variant == "code" else u + 1
      out[b] = rewards[b] * (1 - beta * k / n)
  return out


def thr(hidden, tokens, mask, rewards, adv, unembedding, group_size, p, beta,
        step_weight="seq_mean_token_mean", correct_reward=1.0):
  """THR weights by the brute-force double sum over the correct tokens (spec §2(b))."""
  n, t = mask.shape
  w = np.ones((n, t))
  lengths = mask.sum(1)
  for g0 in range(0, n, group_size):
    rows = list(range(g0, g0 + group_size))
    correct = [b for b in rows if rewards[b] >= correct_reward]
    if not correct or len(correct) == len(rows):
      continue
    toks = [(b, k) for b in rows for k in range(t) if mask[b, k] > 0]
    vocab = sorted({int(tokens[b, k]) for b, k in toks})

    def g_vec(b, k):
      logits = unembedding @ hidden[b, k]
      probs = np.exp(logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum())))
      return np.array([float(v == tokens[b, k]) - probs[v] for v in vocab])

    gs = {bk: g_vec(*bk) for bk in toks}
    thr_v = {}
    for b, k in toks:
      s = sum(gs[(b, k)] @ gs[(i, kk)] * (hidden[b, k] @ hidden[i, kk])
              for i, kk in toks if i in correct)
      c = 1 / lengths[b] if step_weight == "seq_mean_token_mean" else 1 / mask.sum()
      thr_v[(b, k)] = c * adv[b, k] * s
    tau = beta * min(sum(abs(thr_v[(i, k)]) for k in range(t) if mask[i, k] > 0) / lengths[i]
                     for i in correct if lengths[i] > 0)
    for b in rows:
      for k in range(t):
        if mask[b, k] > 0:
          x = thr_v[(b, k)]
          w[b, k] = (1 + p * np.sign(x)) if abs(x) > tau else 0.0
  return w
