"""Scores a batch of completions in worker processes, with a hard per-sample timeout.

Why processes and not threads: a verifier can hang (math-verify on an adversarial LaTeX string can
spin in sympy for minutes) and a Python thread cannot be stopped, so a thread pool can only abandon
a hung call. The abandoned thread keeps holding a pool slot and keeps taking the GIL, slowing every
later batch. Worker processes also run in parallel (the verifiers are pure Python and GIL-bound).
So `RewardRunner` keeps `num_workers` long-lived processes; each gets a chunk of samples and replies
once per sample. Each sample has `timeout_s` from the moment its worker starts it (the previous
reply, or the dispatch of the chunk). A worker past its deadline is killed (SIGKILL), the sample it
was on scores 0 as a failure, the rest of its chunk goes back in the queue, and a fresh worker takes
its place. A batch therefore takes at most about `ceil(B / num_workers) * timeout_s` of wall time,
and much less when only a few samples hang. Workers are forked from a forkserver that has already
imported the reward modules, so a replacement starts quickly. As with any spawned process, a worker
imports the `__main__` script again (not running its `if __name__ == "__main__":` block), so
scripts that create a runner need that guard, and their top-level imports add to worker start-up.

Failures (the verifier raises, times out, kills its process, or returns a non-finite value) give the
sample reward 0 on every term. Each one increments the counter `reward/failures`, and the offending
sample is logged once (a repeated sample is not logged again).

`num_workers=0` scores inline in the calling process: failures are still contained but there is
no timeout. Use it for debugging and for reward functions that cannot be pickled.
"""

import collections
import dataclasses
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import pickle
import signal
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from jaxrl_llm.rewards import composite

logger = logging.getLogger(__name__)

AnswerFn = Callable[[str], Optional[str]]


@dataclasses.dataclass
class RewardResult:
  """The scores of one batch.

  Attributes:
    rewards: float32 [B], the weighted total (0 for failed samples).
    terms: name -> float32 [B], each reward function's own value (0 for failed samples).
    answers: the answer of each completion under the runner's `answer_fn` (None without one, when
      nothing was extracted, or for failed samples).
    failed: bool [B], True where the sample crashed, timed out or gave a non-finite value.
    metrics: `reward/total` and `reward/<name>` means over the batch, `reward/failure_frac` for the
      batch and `reward/failures`, the runner's running count of failures.
  """
  rewards: np.ndarray
  terms: dict[str, np.ndarray]
  answers: list[Optional[str]]
  failed: np.ndarray
  metrics: dict[str, float]


def _score_one(reward: composite.WeightedSum, answer_fn: Optional[AnswerFn], completion: str,
               example: Any) -> tuple[Optional[dict], Optional[str], Optional[str]]:
  """(terms, answer, None) on success, (None, None, reason) on a contained failure."""
  try:
    terms = reward.terms(completion, example)
    for name, value in terms.items():
      if not math.isfinite(value):
        return None, None, f"reward {name!r} returned a non-finite value ({value})"
    answer = answer_fn(completion) if answer_fn is not None else None
    return terms, answer, None
  except Exception as e:  # pylint: disable=broad-except
    return None, None, f"{type(e).__name__}: {e}"


def _worker_main(conn: multiprocessing.connection.Connection, payload: bytes) -> None:
  """Worker loop: say it is ready, then reply `(terms, answer, error)` per sample of each chunk."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle.
  try:
    reward, answer_fn = pickle.loads(payload)
  except Exception as e:  # pylint: disable=broad-except
    conn.send(("init_error", f"{type(e).__name__}: {e}"))
    return
  conn.send(("ready",))
  while True:
    try:
      chunk = conn.recv()
    except (EOFError, OSError):
      return
    if chunk is None:
      return
    for completion, example in chunk:
      conn.send(_score_one(reward, answer_fn, completion, example))


class _Worker:
  """One worker process, its pipe, and the sample indices it holds (head = the one running)."""

  def __init__(self, ctx, payload: bytes):
    self.conn, child_conn = ctx.Pipe(duplex=True)
    self.process = ctx.Process(target=_worker_main, args=(child_conn, payload), daemon=True,
                               name="reward-worker")
    self.process.start()
    child_conn.close()
    self.ready = False
    self.inflight: collections.deque[int] = collections.deque()
    self.deadline = math.inf

  def kill(self) -> None:
    if self.process.is_alive():
      self.process.kill()
    self.process.join(timeout=5)
    self.conn.close()


def _default_context():
  if "forkserver" in multiprocessing.get_all_start_methods():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["jaxrl_llm.rewards", "math_verify", "reasoning_gym", "sympy"])
    return ctx
  return multiprocessing.get_context("spawn")


class RewardRunner:
  """Scores completions against examples with a reward function, on worker processes.

  Example:
    reward = weighted_sum({"accuracy": math_verify_reward(), "format": (format_reward(), 0.1)})
    with RewardRunner(reward, timeout_s=5.0, answer_fn=AnswerExtractor()) as runner:
      result = runner.score(completions, examples)   # result.rewards [B], result.metrics

  Args:
    reward: a reward function `fn(completion, example) -> float` or a `WeightedSum` (a mapping is
      passed to `weighted_sum`). It must pickle (module-level functions, the factories of this
      package, `functools.partial` of those), since it is sent to the workers.
    answer_fn: optional `completion -> answer` run in the workers next to the reward (for example
      `AnswerExtractor()`), so that answers come back in `RewardResult.answers`.
    num_workers: worker processes; default `os.cpu_count()`. 0 scores inline, without a timeout.
    timeout_s: the most time one sample may take.
    chunk_size: samples sent to a worker at once; default: about 4 chunks per worker per batch.
    mp_context: a multiprocessing context; default forkserver (spawn where there is none). Fork is
      unsafe once JAX's threads run, so it is not the default.

  Not thread-safe: call `score` from one thread. Call `close()` (or use `with`) to stop the workers.
  """

  def __init__(self, reward: Any, *, answer_fn: Optional[AnswerFn] = None,
               num_workers: Optional[int] = None, timeout_s: float = 10.0,
               chunk_size: Optional[int] = None, mp_context: Any = None):
    self.reward = composite.weighted_sum(reward)
    self.answer_fn = answer_fn
    self.num_workers = (os.cpu_count() or 1) if num_workers is None else int(num_workers)
    if self.num_workers < 0:
      raise ValueError(f"num_workers must be >= 0 (0 scores inline); got {num_workers}.")
    if not timeout_s > 0:
      raise ValueError(f"timeout_s must be > 0; got {timeout_s}.")
    self.timeout_s = float(timeout_s)
    self.chunk_size = chunk_size
    self.failures = 0
    self._logged: set[int] = set()
    self._workers: list[_Worker] = []
    if self.num_workers:
      try:
        self._payload = pickle.dumps((self.reward, answer_fn))
      except Exception as e:
        raise TypeError(
            f"The reward function cannot be pickled ({type(e).__name__}: {e}), so it cannot be "
            "sent to worker processes. Define it at module level (not a lambda or a local "
            "function), use functools.partial, or pass num_workers=0 to score inline without "
            "timeouts.") from e
      self._ctx = mp_context or _default_context()
      self._workers = [_Worker(self._ctx, self._payload) for _ in range(self.num_workers)]

  # ----------------------------------------------------------------------------------------------
  # Public API.

  def score(self, completions: Sequence[str], examples: Sequence[Any]) -> RewardResult:
    """Scores `completions[i]` against `examples[i]` for every i; failures are contained."""
    if len(completions) != len(examples):
      raise ValueError(f"Got {len(completions)} completions but {len(examples)} examples; give one "
                       "example per completion (repeat each prompt's example for its group).")
    n = len(completions)
    outcomes: list[Any] = [None] * n
    if self.num_workers == 0 or n == 0:
      for i in range(n):
        outcomes[i] = _score_one(self.reward, self.answer_fn, completions[i], examples[i])
    else:
      self._run_pool(completions, examples, outcomes)
    return self._collect(completions, examples, outcomes)

  def close(self) -> None:
    """Stops the worker processes. The runner cannot score afterwards."""
    for w in self._workers:
      try:
        w.conn.send(None)
      except (OSError, ValueError):
        pass
    for w in self._workers:
      w.process.join(timeout=1)
      w.kill()
    self._workers = []

  def __enter__(self) -> "RewardRunner":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except
      pass

  # ----------------------------------------------------------------------------------------------
  # The pool.

  def _run_pool(self, completions, examples, outcomes) -> None:
    if not self._workers:
      raise RuntimeError("This RewardRunner is closed; create a new one.")
    n = len(completions)
    chunk_size = self.chunk_size or max(1, min(64, math.ceil(n / (4 * len(self._workers)))))
    queue = collections.deque(range(n))
    remaining = n

    def fail_head(w: _Worker, reason: str) -> None:
      nonlocal remaining
      if w.inflight:
        outcomes[w.inflight.popleft()] = (None, None, reason)
        remaining -= 1
      queue.extendleft(reversed(w.inflight))  # The rest of its chunk goes back, in order.
      w.inflight.clear()
      self._replace(w)

    while remaining:
      now = time.monotonic()
      for w in self._workers:
        if w.ready and not w.inflight and queue:
          chunk = [queue.popleft() for _ in range(min(chunk_size, len(queue)))]
          w.conn.send([(completions[i], examples[i]) for i in chunk])
          w.inflight.extend(chunk)
          w.deadline = now + self.timeout_s
      busy = [w for w in self._workers if w.inflight]
      wait_s = max(0.0, min((w.deadline for w in busy), default=now + 60.0) - now)
      handles = [w.conn for w in self._workers] + [w.process.sentinel for w in self._workers]
      ready = set(multiprocessing.connection.wait(handles, timeout=wait_s))
      for w in list(self._workers):
        if w.conn in ready:
          try:
            while w.conn.poll():
              message = w.conn.recv()
              if isinstance(message, tuple) and message[:1] == ("ready",):
                w.ready = True
              elif isinstance(message, tuple) and message[:1] == ("init_error",):
                self.close()
                raise RuntimeError(f"A reward worker could not load the reward function: "
                                   f"{message[1]}. Make sure its module is importable.")
              else:
                outcomes[w.inflight.popleft()] = message
                remaining -= 1
                w.deadline = time.monotonic() + self.timeout_s
          except (EOFError, OSError):
            pass  # The process died; handled below through its sentinel.
        if w.process.sentinel in ready or not w.process.is_alive():
          if not w.ready and not w.inflight:
            self.close()
            raise RuntimeError("A reward worker process exited while starting (exit code "
                               f"{w.process.exitcode}); check that jaxrl_llm.rewards imports.")
          fail_head(w, f"worker process died (exit code {w.process.exitcode})")
      now = time.monotonic()
      for w in list(self._workers):
        if w.inflight and now >= w.deadline:
          fail_head(w, f"timed out after {self.timeout_s:g}s")

  def _replace(self, worker: _Worker) -> None:
    worker.kill()
    self._workers[self._workers.index(worker)] = _Worker(self._ctx, self._payload)

  # ----------------------------------------------------------------------------------------------
  # Results.

  def _collect(self, completions, examples, outcomes) -> RewardResult:
    n = len(completions)
    names = self.reward.names
    terms = {name: np.zeros(n, np.float32) for name in names}
    totals = np.zeros(n, np.float32)
    failed = np.zeros(n, bool)
    answers: list[Optional[str]] = [None] * n
    for i, (values, answer, error) in enumerate(outcomes):
      if error is not None:
        failed[i] = True
        self._log_failure(error, completions[i], examples[i])
        continue
      for name in names:
        terms[name][i] = values[name]
      totals[i] = self.reward.total(values)
      answers[i] = answer
    self.failures += int(failed.sum())
    metrics = {"reward/total": float(totals.mean()) if n else 0.0}
    metrics.update({f"reward/{name}": float(v.mean()) if n else 0.0 for name, v in terms.items()})
    metrics["reward/failure_frac"] = float(failed.mean()) if n else 0.0
    metrics["reward/failures"] = float(self.failures)
    return RewardResult(totals, terms, answers, failed, metrics)

  def _log_failure(self, error: str, completion: str, example: Any) -> None:
    reference = str(getattr(example, "answer", example))
    key = hash((completion, reference))
    if key in self._logged:
      return
    if len(self._logged) < 100_000:
      self._logged.add(key)
    logger.warning("Reward failure (%s); it scores 0. Completion: %r; reference answer: %r",
                   error, completion[:500], reference[:200])
