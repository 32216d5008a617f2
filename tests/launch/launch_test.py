"""The README's main job (`python launch/generate.py`) runs end to end on the embedded model."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_generate_demo_prints_a_completion():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run(
      [sys.executable, str(ROOT / "launch" / "generate.py"), "--prompt=What is 3 + 4?",
       "--max_new_tokens=12"], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "[completion 0]" in proc.stdout and "tokens in" in proc.stdout
  completion = proc.stdout.split("[completion 0]", 1)[1].split("\n")[0].strip()
  assert completion, proc.stdout


@pytest.mark.slow
def test_eval_cli_prints_the_table_and_writes_json(tmp_path):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = tmp_path / "eval.json"
  proc = subprocess.run(
      [sys.executable, str(ROOT / "launch" / "eval.py"), "--num_prompts=2", "--n=2", "--k=1",
       "--k=2", "--max_new_tokens=16", f"--output={out}"],
      capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for metric in ("accuracy/greedy", "pass@2", "maj@2", "truncated/frac"):
    assert metric in proc.stdout
  import json
  saved = json.loads(out.read_text())
  assert saved["metrics"]["num_prompts"] == 2 and len(saved["records"]) == 2
