"""Faults during a run: a non-finite loss, preemption, half-written checkpoints, an output folder
of another run, the Hub and the evaluation sets checked before training. Nothing non-finite is
saved, and nothing finished is lost."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors.torch import load_file

from conftest import merge_flags
from nan_on_one_rank import nan_method
from tgazsr.checkpoints import CheckpointError, complete_checkpoints, resolve_resume
from tgazsr.methods import register_method, unregister_method
from tgazsr.train import Preempted, RunFailed, main
from tgazsr.trainer import NonFiniteLossError
from timed_run import run_timed, time_limit, timeout_report

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def argv(tiny_clip, data, out, *extra, recipe="tecoa"):
    """A tiny run's command line; flags in ``extra`` replace the defaults (each flag is given once)."""
    return [str(RECIPES / f"{recipe}.yaml"), *merge_flags([
        "--model_name_or_path", tiny_clip, "--dataset_name", data, "--output_dir", str(out), "--max_steps", "3",
        "--per_device_train_batch_size", "4", "--fp16", "false", "--use_cpu", "true", "--logging_steps", "1",
        "--dataloader_num_workers", "0", "--warmup_steps", "0", "--save_strategy", "steps", "--save_steps", "1",
        "--save_total_limit", "5", "--eval_max_samples", "0", "--report_to", "none", "--disable_tqdm", "true",
    ], extra)]


def finite(path) -> bool:
    return all(torch.isfinite(t).all() for t in load_file(str(path)).values() if t.is_floating_point())


@pytest.fixture
def nan_at_step_two():
    """A method whose loss is NaN on its second call."""
    register_method(nan_method("nan_two", on_call=2))
    yield
    unregister_method("nan_two")


def test_a_non_finite_loss_stops_the_run_and_saves_nothing_non_finite(tiny_clip, saved_dataset, tmp_path,
                                                                      nan_at_step_two):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 2 \(loss_ce=nan.*--learning_rate"):
        main(argv(tiny_clip, saved_dataset, out, "--method", "nan_two"))
    assert not (out / "model.safetensors").exists()  # no final model
    assert finite(out / "checkpoint-1" / "model.safetensors")  # the last finite checkpoint is kept
    assert resolve_resume("true", str(out)) == str(out / "checkpoint-1")


def test_a_huge_learning_rate_never_saves_nan_weights(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "huge"
    with pytest.raises(NonFiniteLossError):
        main(argv(tiny_clip, saved_dataset, out, "--learning_rate", "1e30", "--max_steps", "6"))
    assert not (out / "model.safetensors").exists()
    for ckpt in complete_checkpoints(str(out)):
        assert finite(Path(ckpt) / "model.safetensors"), ckpt


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _momentum(checkpoint: Path) -> list[torch.Tensor]:
    state = torch.load(checkpoint / "optimizer.pt", weights_only=True)["state"]
    return [state[k]["momentum_buffer"] for k in sorted(state)]


def test_skip_policy_skips_non_finite_steps_and_counts_them(tiny_clip, saved_dataset, tmp_path, nan_at_step_two):
    out = tmp_path / "skip"
    main(argv(tiny_clip, saved_dataset, out, "--method", "nan_two", "--nonfinite_loss", "skip"))
    assert finite(out / "model.safetensors")
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert max(h.get("nonfinite_steps", 0) for h in state["log_history"]) == 1
    logged = [v for h in state["log_history"] for k, v in h.items() if k.startswith("loss")]
    assert logged and all(math.isfinite(v) for v in logged)  # the skipped step's NaN is not averaged in
    # Step 2 was skipped: neither the weights nor SGD's momentum moved; step 3 trained again.
    assert _same_weights(out / "checkpoint-1", out / "checkpoint-2")
    assert all(torch.equal(a, b) for a, b in zip(_momentum(out / "checkpoint-1"), _momentum(out / "checkpoint-2")))
    assert not _same_weights(out / "checkpoint-2", out / "checkpoint-3")


def test_skip_drops_the_whole_accumulation_window(tiny_clip, saved_dataset, tmp_path, nan_at_step_two):
    """The NaN is the second micro-batch of step 1's window: the first micro-batch's gradient goes too,
    so step 1 leaves the base weights as they were, and step 2 trains."""
    out = tmp_path / "skip_window"
    main(argv(tiny_clip, saved_dataset, out, "--method", "nan_two", "--nonfinite_loss", "skip",
              "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2", "--max_steps", "2"))
    assert _same_weights(Path(tiny_clip), out / "checkpoint-1")
    assert not _same_weights(out / "checkpoint-1", out / "checkpoint-2")


def _two_ranks_nan_on_rank_1(tiny_clip, data, out, *extra) -> subprocess.CompletedProcess:
    from conftest import free_port

    launcher = Path(__file__).resolve().parent / "nan_on_one_rank.py"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return run_timed([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                      str(free_port()), str(launcher),
                      *argv(tiny_clip, data, out, "--method", "nan_on_rank_1", "--use_cpu", "true", *extra)],
                     env=env, measured_s=12, doing="two training processes, one meeting a non-finite loss")


@pytest.mark.launches
def test_a_non_finite_loss_on_one_process_stops_every_process(tiny_clip, saved_dataset, tmp_path):
    """Data parallel: the process that meets the NaN and the one that does not stop in the same step
    with the same error (before, the other waited in the gradient reduction until a timeout)."""
    out = tmp_path / "ddp_stop"
    run = _two_ranks_nan_on_rank_1(tiny_clip, saved_dataset, out)
    assert run.returncode != 0
    # both processes say it (their stderr lines may interleave with each other and with progress bars)
    assert run.stderr.count("error: The loss became non-finite") == 2, run.stderr[-3000:]
    assert run.stderr.count("error: The loss became non-finite at step 2 on 1 of 2 processes") == 2
    assert "Connection closed by peer" not in run.stderr  # no process died under another
    assert finite(out / "checkpoint-1" / "model.safetensors") and not (out / "model.safetensors").exists()


@pytest.mark.launches
def test_a_non_finite_loss_on_one_process_is_skipped_by_every_process(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "ddp_skip"
    run = _two_ranks_nan_on_rank_1(tiny_clip, saved_dataset, out, "--nonfinite_loss", "skip")
    assert run.returncode == 0, run.stderr[-3000:]
    assert _same_weights(out / "checkpoint-1", out / "checkpoint-2")  # no process applied step 2
    assert not _same_weights(out / "checkpoint-2", out / "checkpoint-3")
    assert finite(out / "model.safetensors")


def test_sigterm_finishes_the_step_saves_a_checkpoint_and_resumes(tiny_clip, saved_dataset, tmp_path):
    from transformers import TrainerCallback

    class Preempt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGTERM)  # what SLURM and Kubernetes send

    out = tmp_path / "preempted"
    original = __import__("tgazsr.train", fromlist=["build_trainer"]).build_trainer

    def with_preemption(*a, **k):
        trainer, train, tok = original(*a, **k)
        trainer.add_callback(Preempt())
        return trainer, train, tok

    with mock.patch("tgazsr.train.build_trainer", with_preemption), pytest.raises(Preempted) as stop:
        main(argv(tiny_clip, saved_dataset, out, "--save_strategy", "no", "--max_steps", "4"))
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()  # step 2 was finished, then saved
    assert not (out / "model.safetensors").exists()
    main(argv(tiny_clip, saved_dataset, out, "--save_strategy", "no", "--max_steps", "4",
              "--resume_from_checkpoint", "true"))
    assert finite(out / "model.safetensors")


def _three_checkpoints(tiny_clip, saved_dataset, out):
    main(argv(tiny_clip, saved_dataset, out))
    for name in ("checkpoint-1", "checkpoint-2", "checkpoint-3"):
        assert (out / name / "trainer_state.json").is_file()


def test_resume_skips_half_written_checkpoints_and_says_which_it_took(tiny_clip, saved_dataset, tmp_path, caplog):
    out = tmp_path / "half"
    _three_checkpoints(tiny_clip, saved_dataset, out)
    (out / "checkpoint-3" / "trainer_state.json").unlink()  # killed while saving
    weights = out / "checkpoint-2" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated
    caplog.set_level("INFO")
    assert resolve_resume("true", str(out)) == str(out / "checkpoint-1")
    assert "Skipping" in caplog.text and "checkpoint-3" in caplog.text and "truncated" in caplog.text
    assert "Resuming from" in caplog.text and "checkpoint-1" in caplog.text
    with pytest.raises(CheckpointError, match=r"checkpoint-2.*model.safetensors.*truncated.*checkpoint-1"):
        resolve_resume(str(out / "checkpoint-2"), str(out))
    with pytest.raises(CheckpointError, match="is not a directory"):
        resolve_resume(str(out / "checkpoint-9"), str(out))
    # A resumed run from the newest complete checkpoint finishes.
    main(argv(tiny_clip, saved_dataset, out, "--resume_from_checkpoint", "true"))
    assert finite(out / "model.safetensors")


def test_an_output_dir_of_another_run_is_refused_unless_overwritten(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "taken"
    main(argv(tiny_clip, saved_dataset, out, "--save_strategy", "no", "--max_steps", "1"))
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text("{}")  # a stale evaluation of the old weights
    with pytest.raises(CheckpointError, match="already holds another run.*--overwrite_output_dir"):
        main(argv(tiny_clip, saved_dataset, out, "--save_strategy", "no", "--max_steps", "1"))
    main(argv(tiny_clip, saved_dataset, out, "--save_strategy", "no", "--max_steps", "1",
              "--overwrite_output_dir", "true"))
    assert (out / "model.safetensors").is_file() and not (out / "eval").exists()


def test_push_to_hub_is_checked_before_training(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "push"
    with mock.patch("tgazsr.hub.HfApi") as api_cls:
        api_cls.return_value.whoami.side_effect = OSError("offline")
        with pytest.raises(ValueError, match=r"Hub cannot be reached.*hf upload me/robust"):
            main(argv(tiny_clip, saved_dataset, out, "--push_to_hub", "true", "--hub_model_id", "me/robust"))
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing saved


def test_a_failed_upload_keeps_the_model_and_prints_the_command(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "upload"
    with mock.patch("tgazsr.hub.HfApi") as api_cls:
        api = api_cls.return_value
        api.whoami.return_value = {"name": "me"}
        api.upload_folder.side_effect = ConnectionError("connection reset")
        with pytest.raises(RunFailed, match=rf"(?s)upload to me/robust failed.*hf upload me/robust {out}"):
            main(argv(tiny_clip, saved_dataset, out, "--push_to_hub", "true", "--hub_model_id", "me/robust",
                      "--save_strategy", "no", "--max_steps", "1"))
    assert finite(out / "model.safetensors") and (out / "README.md").is_file()


def test_eval_datasets_are_checked_before_training(tiny_clip, saved_dataset, tmp_path):
    out = tmp_path / "evalsets"
    with pytest.raises(ValueError, match="no_such_dataset_xyz"):
        main(argv(tiny_clip, saved_dataset, out, "--eval_datasets", str(tmp_path / "missing"), "no_such_dataset_xyz"))
    with pytest.raises(ValueError, match=r"cifar10.*offline.*cifar10=PATH"):  # conftest sets HF_HUB_OFFLINE
        main(argv(tiny_clip, saved_dataset, out, "--eval_datasets", "cifar10"))
    assert not out.exists() or not any(out.iterdir())


def test_an_evaluation_that_fails_after_training_exits_non_zero_and_keeps_the_model(tiny_clip, saved_dataset,
                                                                                   tmp_path):
    out = tmp_path / "late"
    data = tmp_path / "broken"
    shutil.copytree(saved_dataset, data)
    original = __import__("tgazsr.train", fromlist=["preflight"]).preflight
    with mock.patch("tgazsr.train.preflight", original):
        def breaks_after_preflight(*a, **k):
            original(*a, **k)
            for f in data.rglob("*.arrow"):  # the data is damaged while training
                f.unlink()

        with mock.patch("tgazsr.train.preflight", breaks_after_preflight), \
                pytest.raises(RunFailed, match=r"(?s)model is saved in .*could not be evaluated: .*broken"):
            main(argv(tiny_clip, saved_dataset, out, "--eval_datasets", str(data), "--save_strategy", "no",
                      "--max_steps", "1", "--eval_max_samples", "4", "--eval_attack_steps", "1"))
    assert finite(out / "model.safetensors")


# --- signals: every command ends quietly, saying what was kept ----------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_ctrl_c_during_evaluation_keeps_the_finished_datasets_in_one_line(eval_world, tmp_path, capsys,
                                                                         monkeypatch):
    from tgazsr.errors import run_command
    from tgazsr.evaluation import cli, harness
    from tgazsr.evaluation.reports import read_results

    real, calls = harness.evaluate_dataset, []

    def interrupted_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second dataset is attacked
        return real(*args, **kwargs)

    monkeypatch.setattr(harness, "evaluate_dataset", interrupted_on_the_second)
    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)
    out = tmp_path / "eval"
    code = run_command(cli.main, [
        "--model_name_or_path", eval_world["clip_a"], "--datasets", eval_world["saved"], eval_world["parquet"],
        "--eps", "8", "--pgd_steps", "1", "--max_samples", "4", "--sanity_samples", "0", "--output_dir", str(out),
        "--no_plot"])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("interrupted by SIGINT")]
    assert len(lines) == 1, err
    assert "kept the results of 1 finished dataset(s)" in lines[0] and str(out / "results.json") in lines[0]
    kept = read_results(str(out / "results.json"))
    assert len(kept["datasets"]) == 1  # the finished dataset, kept; the same command skips it when run again


def _run_until_signalled(tmp_path, sig) -> subprocess.CompletedProcess:
    """A command (through run_command) that shows a progress bar and waits; ``sig`` is sent once it runs."""
    import time

    ready = tmp_path / "ready"
    script = (
        "import sys, time\nfrom tqdm import tqdm\nfrom tgazsr.errors import note_kept, run_command\n"
        "def main(argv):\n"
        "    bar = tqdm(total=10, desc='work', file=sys.stderr)\n"
        "    bar.update(3)\n"
        "    note_kept('part', 'part one in out/')\n"
        f"    open({str(ready)!r}, 'w').close()\n"
        "    time.sleep(60)\n"
        "sys.exit(run_command(main, []))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("TGAZSR_DEBUG", None)
    measured_s = 1  # start to ready, and the signal's handling: under 1 s (BENCHMARKS.md)
    limit = time_limit(measured_s)
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    start = time.monotonic()
    while not ready.exists() and time.monotonic() - start < limit and proc.poll() is None:
        time.sleep(0.05)
    if not ready.exists():
        running = proc.poll() is None
        proc.kill()
        stdout, stderr = proc.communicate()
        if running:
            pytest.fail(timeout_report(proc.args, "a command starting, before the signal", time.monotonic() - start,
                                       limit, measured_s, stdout, stderr), pytrace=False)
        pytest.fail(f"the command exited with status {proc.returncode} before it was ready for the signal:\n"
                    f"{stderr[-3000:]}", pytrace=False)
    proc.send_signal(sig)
    try:
        stdout, stderr = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(timeout_report(proc.args, f"a command handling {sig.name}", time.monotonic() - start, limit,
                                   measured_s, stdout, stderr), pytrace=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_ends_any_command_with_one_line_on_a_fresh_line(tmp_path, sig, status):
    proc = _run_until_signalled(tmp_path, sig)
    assert proc.returncode == status, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    name = signal.Signals(sig).name
    lines = [line for line in proc.stderr.splitlines() if f"interrupted by {name}" in line]
    assert len(lines) == 1, proc.stderr
    assert lines[0] == f"interrupted by {name}: kept part one in out/.", proc.stderr  # never after a bar
    assert "work:" in proc.stderr  # the bar was drawn, and closed before the line


def test_an_error_line_starts_after_an_open_progress_bar(capsys, monkeypatch):
    from tqdm import tqdm

    from tgazsr.errors import UserError, run_command

    monkeypatch.delenv("TGAZSR_DEBUG", raising=False)

    def main(argv):
        bar = tqdm(total=10, desc="work", file=sys.stderr)
        bar.update(5)
        raise UserError("the input is wrong")

    assert run_command(main, []) == 2
    err = capsys.readouterr().err
    assert "work:" in err
    assert "error: the input is wrong" in err.splitlines(), repr(err)


def test_a_cpu_run_uses_the_idle_cores_unless_told(monkeypatch):
    """Several torch threads stall each other when another process holds a core: a CPU run takes the
    idle cores by the load average (or TGAZSR_THREADS), and OMP_NUM_THREADS is left to decide."""
    import torch

    from tgazsr import cpu

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("TGAZSR_THREADS", "1")
        assert cpu.use_idle_cores(torch.device("cpu")) == 1 and torch.get_num_threads() == 1
        assert cpu.use_idle_cores(torch.device("cuda")) is None  # not a CPU run: untouched
        monkeypatch.delenv("TGAZSR_THREADS")
        monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
        monkeypatch.setattr(cpu, "busy_cores", lambda: 1.2)  # another process holds a core
        assert cpu.default_threads() == 1
        monkeypatch.setattr(cpu, "busy_cores", lambda: 0.1)
        assert cpu.default_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # an explicit choice of several threads is kept
        assert cpu.use_idle_cores(torch.device("cpu")) is None
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the launchers' default: the idle cores decide
        assert cpu.use_idle_cores(torch.device("cpu")) == 2
        assert cpu.use_idle_cores(torch.device("cpu"), processes=2) is None  # the launcher split the cores
    finally:
        torch.set_num_threads(before)


def test_busy_cores_leave_this_process_out(monkeypatch):
    """The measure of the others' load does not count this process's own work: over the window, half
    of the CPU time was idle and the other half this process's own, so no other core is busy."""
    from tgazsr import cpu

    samples = iter([(1000, 600, 100), (1200, 700, 200)])  # (all, idle, own) clock ticks, 2 cores
    monkeypatch.setattr(cpu, "_proc_times", lambda: next(samples))
    monkeypatch.setattr(cpu.time, "sleep", lambda s: None)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 2)
    assert cpu.busy_cores() == 0.0
    samples = iter([(1000, 600, 100), (1200, 700, 100)])  # the busy half is another process's
    monkeypatch.setattr(cpu, "_proc_times", lambda: next(samples))
    assert cpu.busy_cores() == 1.0
