"""Training: TrainState, the rollout phase, the pure sharded train step, the optimizer.

  state, shardings = step.init_train_state(params, optimizer, key, mesh, objective_state=...)
  state, batch, _ = rollout(state, batch, model_config=cfg, objective=objective)
  train = jit_train_step(mesh, shardings, batch, model_config=cfg, objective=objective,
                         optimizer=optimizer, num_micro_batches=4)
  state, metrics = train(state, batch)

Host-side rollout hooks (`hooks`: Knapsack budgets, majority-vote rewards, critiques, prover
values, ...) act between the sampler and the rollout phase; the loop (`training.loop`) runs them.
"""
from jaxrl_llm.training import batch, hooks, optim
from jaxrl_llm.training.checkpoint import Checkpointer
from jaxrl_llm.training.batch import (
    RolloutBatch, concat_completions, from_completions, group_minibatches, informative_groups,
    prompts_shared, ragged_minibatches, split_micro_batches, take_rows)
from jaxrl_llm.training.config_files import load_config, load_config_module
from jaxrl_llm.training.forward import forward_outputs, reference_logp
from jaxrl_llm.training.hooks import (
    HookEnv, HostBatch, RolloutHook, build_hooks, register_hook, to_rollout_batch)
from jaxrl_llm.training.rollout import init_objective_state, jit_rollout, rollout
from jaxrl_llm.training.state import TrainState
from jaxrl_llm.training.step import (
    accumulate_gradients, init_train_state, jit_train_step, shard_batch, state_shardings,
    train_step)

__all__ = [
    "Checkpointer", "HookEnv", "HostBatch", "RolloutBatch", "RolloutHook", "TrainState",
    "accumulate_gradients", "batch", "build_hooks", "concat_completions", "forward_outputs",
    "from_completions", "group_minibatches", "hooks", "informative_groups",
    "init_objective_state", "init_train_state", "jit_rollout", "jit_train_step", "load_config",
    "load_config_module", "optim", "prompts_shared", "ragged_minibatches", "reference_logp",
    "register_hook", "rollout", "shard_batch", "split_micro_batches", "state_shardings",
    "take_rows", "to_rollout_batch", "train_step",
]
