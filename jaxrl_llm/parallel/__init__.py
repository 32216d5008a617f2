"""Device mesh, logical-axis sharding rules, multi-host start-up and host-process set-up (`host`)."""
from jaxrl_llm.parallel.distributed import initialize, multihost_reason
from jaxrl_llm.parallel.mesh import (
    BATCH_AXES, MESH_AXES, batch_shards, check_batch, make_mesh, mesh_shape)
from jaxrl_llm.parallel.rules import (
    PARAM_RULES, batch_shardings, batch_spec, kv_cache_specs, logical_to_spec, tree_shardings,
    tree_specs)

__all__ = [
    "BATCH_AXES", "MESH_AXES", "PARAM_RULES", "batch_shardings", "batch_shards", "batch_spec",
    "check_batch", "initialize", "kv_cache_specs", "logical_to_spec", "make_mesh", "mesh_shape",
    "multihost_reason", "tree_shardings", "tree_specs",
]
