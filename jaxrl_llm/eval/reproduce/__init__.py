"""The reproduction harness: paper tables as specs, run arm by arm, reported as table.md + PNGs.

  from jaxrl_llm.eval import reproduce
  spec = reproduce.get_table("llds")                 # every seed paper is in reproduce.TABLES
  reproduce.run_table(spec, "cpu", "runs/reproduce")  # -> runs/reproduce/llds/table.md
  results = reproduce.load_results("runs/reproduce/llds")
  reproduce.plot_curve(results, "logp_correct")

`python launch/reproduce.py --table=<name> --scale=cpu|paper` is the command line.
"""
from jaxrl_llm.eval.reproduce.configs import (
    CONFIGS_DIR, apply_overrides, arm_config, load_config_file, parse_override, table_configs)
from jaxrl_llm.eval.reproduce.report import (
    CURVES, METRICS, curve_data, format_ci, load_results, mean_ci, plot_curve, read_history,
    render_table, t_quantile, write_report)
from jaxrl_llm.eval.reproduce.run import estimate_minutes, posteval, prepare, run_table
from jaxrl_llm.eval.reproduce.spec import SCALES, Arm, PassK, Reported, Scale, TableSpec
from jaxrl_llm.eval.reproduce.tables import TABLES, get_table

__all__ = [
    "Arm", "CONFIGS_DIR", "CURVES", "METRICS", "PassK", "Reported", "SCALES", "Scale", "TABLES",
    "TableSpec", "apply_overrides", "arm_config", "curve_data", "estimate_minutes", "format_ci",
    "get_table", "load_config_file", "load_results", "mean_ci", "parse_override", "plot_curve",
    "posteval", "prepare", "read_history", "render_table", "run_table", "t_quantile",
    "table_configs", "write_report",
]
