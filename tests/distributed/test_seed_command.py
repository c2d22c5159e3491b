"""The seed's distributed command, as written:

    swift train --model_type qwen --dataset sft_data --parallel_strategy fsdp --fsdp_num_shards 4

`--model_type qwen` names Qwen/Qwen2.5-7B-Instruct on the hub. The hub is the outside world here, so its local
cache stands in for it (the Hugging Face cache layout, filled with a tiny Qwen2 under that id; USE_HF=1 and
offline): the command itself is untouched. `sft_data` is a data folder in the working directory. Four gloo
processes on a 2-core machine, as the issue allows.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(hf_home: Path, repo_id: str, model_dir: str) -> None:
    repo = hf_home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / REVISION
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION, encoding="utf-8")


def test_seed_fsdp_command_runs_as_written(tmp_path, tiny_qwen2_dir):
    hf_home = tmp_path / "hf-home"
    fake_hub_cache(hf_home, "Qwen/Qwen2.5-7B-Instruct", tiny_qwen2_dir)
    (tmp_path / "sft_data").mkdir()
    rows = [{"messages": [{"role": "user", "content": f"Count to {i}."},
                          {"role": "assistant", "content": " ".join(str(k) for k in range(1, i + 2))}]}
            for i in range(8)]
    (tmp_path / "sft_data" / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n",
                                                       encoding="utf-8")
    env = {**os.environ, "HF_HOME": str(hf_home), "USE_HF": "1", "HF_HUB_OFFLINE": "1"}
    cmd = "swift train --model_type qwen --dataset sft_data --parallel_strategy fsdp --fsdp_num_shards 4"
    r = subprocess.run([sys.executable, "-m", "swift", *cmd.split()[1:]], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "FSDP2" in r.stdout and "world size 4 (4 processes)" in r.stdout
    run = next((tmp_path / "output").iterdir())
    sharding = json.loads((run / "fsdp_sharding.json").read_text(encoding="utf-8"))
    assert len(sharding) == 4  # every rank held a shard
    saved = json.loads((run / "args.json").read_text(encoding="utf-8"))
    assert (saved["parallel_strategy"], saved["fsdp_num_shards"], saved["model_type"]) == ("fsdp", 4, "qwen")
    assert list(run.glob("checkpoint-*/adapter_model.safetensors"))
