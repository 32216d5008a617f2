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


def _train(*args, cwd=ROOT, timeout=600):
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  return subprocess.run([sys.executable, str(ROOT / "launch" / "train.py"), *args],
                        capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["--config.train.num_stepz=3"], 'unknown key \'num_stepz\' Did you mean "num_steps"'),
    (["--config.objective.name=grpoo"], "unknown preset 'grpoo'; did you mean 'grpo'"),
    (["--config.mesh.fsdp=3"], "mesh data=1 x fsdp=3 x tensor=1 = 3 devices, but 1 are"),
    (["--config=configs/grpo.py:gpt9"], "unknown model 'gpt9'"),
    (["--config=configs/nope.py"], "configs/nope.py"),
])
def test_train_bad_flags_fail_with_one_clear_line(args, message):
  proc = _train("--config=configs/tiny.py", *args, timeout=120)
  assert proc.returncode == 1
  assert "FATAL" in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_train_unwritable_workdir_fails_at_start(tmp_path):
  (tmp_path / "file").write_text("")
  proc = _train("--config=configs/tiny.py", f"--workdir={tmp_path / 'file' / 'run'}", timeout=120)
  assert proc.returncode == 1 and "is not writable" in proc.stderr, proc.stderr[-2000:]


def test_train_help_lists_the_config_sections():
  proc = _train("--help", timeout=120)      # absl's --help prints usage and exits 1
  for section in ("model", "sampling", "objective", "optim", "mesh", "data", "reward", "train",
                  "eval", "ckpt", "log"):
    assert section in proc.stdout, section


@pytest.mark.slow
def test_train_tiny_config_runs_and_resumes(tmp_path):
  workdir = tmp_path / "run"
  args = ["--config=configs/tiny.py", f"--workdir={workdir}", "--config.eval.every_steps=1"]
  proc = _train(*args)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  assert len(lines) == 3 and (workdir / "config.json").exists()     # eval at 0, iterations 1-2
  # Run again with more steps: it resumes from checkpoint 2 and runs iteration 3 only.
  proc = _train(*args, "--config.train.num_steps=3")
  assert proc.returncode == 0, proc.stderr[-3000:]
  import json
  steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert steps == [0, 1, 2, 3]
