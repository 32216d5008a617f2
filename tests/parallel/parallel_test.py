"""Mesh construction, logical-axis rules and multi-host detection."""
import jax
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, PartitionSpec as P

from jaxrl_llm import models, parallel

TP = models.ModelConfig(model_type="llama", vocab_size=32, hidden_size=16, intermediate_size=32,
                        num_layers=2, num_heads=4, num_kv_heads=2, head_dim=8,
                        tie_word_embeddings=False)


# ----------------------------------------------------------------------------------- mesh


def test_mesh_axes_and_types():
  mesh = parallel.make_mesh({"data": 2, "fsdp": -1, "tensor": 2})
  assert mesh.axis_names == ("data", "fsdp", "tensor")
  assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  assert mesh.axis_types == (AxisType.Auto,) * 3
  assert parallel.batch_shards(mesh) == 4


def test_default_mesh_puts_everything_on_fsdp():
  assert dict(parallel.make_mesh().shape) == {"data": 1, "fsdp": 8, "tensor": 1}


def test_one_device_mesh():
  mesh = parallel.make_mesh((1, 1, 1), devices=jax.devices()[:1])
  assert mesh.devices.size == 1
  config_mesh = parallel.make_mesh({"data": 1, "fsdp": -1, "tensor": 1, "num_devices": 2})
  assert dict(config_mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 1}
  with pytest.raises(ValueError, match="num_devices=16, but 8 devices are available"):
    parallel.make_mesh({"fsdp": -1, "num_devices": 16})


@pytest.mark.parametrize("shape,match", [
    ({"data": 3, "fsdp": 1, "tensor": 1}, r"data=3 x fsdp=1 x tensor=1 = 3 devices, but 8"),
    ({"data": 2, "fsdp": 2, "tensor": 1}, r"= 4 devices, but 8 are available"),
    ({"data": 3, "fsdp": -1, "tensor": 1}, r"use 3 devices, which does not divide the 8"),
    ({"data": -1, "fsdp": -1, "tensor": 1}, r"at most one -1"),
    ({"data": 0, "fsdp": 8, "tensor": 1}, r"sizes must be >= 1"),
    ({"dat": 8}, r"unknown mesh axes \['dat'\]"),
])
def test_mesh_errors_name_the_numbers(shape, match):
  with pytest.raises(ValueError, match=match):
    parallel.make_mesh(shape)


def test_check_batch():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  parallel.check_batch(32, 4, mesh)
  parallel.check_batch(32, 4, mesh, num_micro_batches=4)
  with pytest.raises(ValueError, match=r"24 rows .* group_size \(4\) x batch shards \(8\).* = 32"):
    parallel.check_batch(24, 4, mesh)
  with pytest.raises(ValueError, match=r"3 micro-batches"):
    parallel.check_batch(32, 4, mesh, num_micro_batches=3)


# ----------------------------------------------------------------------------------- rules


def test_param_rules_fsdp_and_tensor():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
  params = jax.eval_shape(lambda: models.init_params(TP, jax.random.key(0)))
  specs = parallel.tree_specs(params, mesh)
  assert specs["embed"] == P("tensor", "fsdp")
  assert specs["lm_head"] == P("fsdp", "tensor")
  assert specs["final_norm"] == P("fsdp")
  assert specs["layers"]["wq"] == P(None, "fsdp", "tensor", None)
  assert specs["layers"]["wk"] == P(None, "fsdp", "tensor", None)
  assert specs["layers"]["wo"] == P(None, "tensor", None, "fsdp")
  assert specs["layers"]["w_down"] == P(None, "tensor", "fsdp")
  assert specs["layers"]["attn_norm"] == P(None, "fsdp")


def test_rules_fall_back_to_replication():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
  # vocab 33 does not divide over tensor=2; embed 16 does over fsdp=4.
  assert parallel.logical_to_spec(("vocab", "embed"), (33, 16), mesh) == P(None, "fsdp")
  # a mesh axis shards at most one dimension of an array.
  assert parallel.logical_to_spec(("embed", "embed"), (16, 16), mesh) == P("fsdp", None)
  # size-1 mesh axes are not named at all.
  data_only = parallel.make_mesh({"data": 8, "fsdp": 1, "tensor": 1})
  assert parallel.logical_to_spec(("vocab", "embed"), (32, 16), data_only) == P(None, None)
  with pytest.raises(ValueError, match="no sharding rule for logical axis 'experts'"):
    parallel.logical_to_spec(("experts",), (8,), mesh)


def test_optimizer_state_mirrors_params():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 4, "tensor": 1})
  params = jax.eval_shape(lambda: models.init_params(TP, jax.random.key(0)))
  opt_state = jax.eval_shape(optax.adamw(1e-3).init, params)
  specs = parallel.tree_specs(opt_state, mesh)
  adam = specs[0]
  assert adam.mu["layers"]["w_up"] == P(None, "fsdp", None)
  assert adam.nu["embed"] == P(None, "fsdp")
  assert adam.count == P()


def test_sharded_params_are_placed():
  mesh = parallel.make_mesh({"data": 1, "fsdp": 4, "tensor": 2})
  params = models.init_params(TP, jax.random.key(0))
  placed = jax.device_put(params, parallel.tree_shardings(params, mesh))
  wq = placed["layers"]["wq"]
  assert len(wq.sharding.device_set) == 8
  assert wq.addressable_shards[0].data.shape == (2, 4, 2, 8)
  np.testing.assert_array_equal(np.asarray(wq), np.asarray(params["layers"]["wq"]))


def test_batch_and_kv_cache_specs():
  mesh = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
  assert parallel.batch_spec(mesh, 2) == P(("data", "fsdp"), None)
  cache = jax.eval_shape(lambda: models.KVCache.create(TP, 8, 16))
  specs = parallel.kv_cache_specs(cache, mesh)
  assert specs.k == P(None, ("data", "fsdp"), "tensor", None, None)
  assert specs.valid == P(("data", "fsdp"), None)
  per_layer = parallel.kv_cache_specs(models.KVCache.create(TP, 8, 16).unstack(), mesh)
  assert per_layer.k == (P(("data", "fsdp"), "tensor", None, None),) * TP.num_layers
  assert per_layer.v == per_layer.k


# ----------------------------------------------------------------------------------- multi-host


@pytest.mark.parametrize("env,multi", [
    ({}, False),
    ({"JAX_COORDINATOR_ADDRESS": "host0:1234"}, True),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}, False),
    ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True),
    ({"TPU_WORKER_HOSTNAMES": "a"}, False),
    ({"TPU_WORKER_HOSTNAMES": "a,b"}, True),
])
def test_multihost_detection(env, multi):
  assert (parallel.multihost_reason(env) is not None) == multi


def test_single_host_initialize_is_a_no_op():
  assert parallel.initialize({}) is False
