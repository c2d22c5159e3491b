"""What every SwiftLab trainer shares, as functions over a `transformers.Trainer` (SFT and the TRL-based
alignment trainers alike, without a mixin): our progress and log callbacks, atomic checkpoints, and
`resume_from_checkpoint=True` that only picks complete checkpoints.

A trainer subclass wires them in three lines:

    def __init__(...): super().__init__(...); use_swift_callbacks(self)
    def _save_checkpoint(self, model, trial): save_checkpoint_atomically(self, model, trial, files)
    def train(self, resume_from_checkpoint=None, **kw):
        ckpt = resolve_resume(self, resume_from_checkpoint)
        return finished_output(self, ckpt) or super().train(resume_from_checkpoint=ckpt, **kw)
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

from transformers import PrinterCallback, ProgressCallback, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, SaveStrategy, rotate_checkpoints

from swift.trainers.callbacks import JsonlLoggerCallback, SwiftProgressCallback
from swift.trainers.checkpoint import (
    find_latest_checkpoint,
    fsync_tree,
    is_complete_checkpoint,
    publish_checkpoint,
    remove_stale_temp_checkpoints,
    temp_checkpoint_dir,
    write_marker,
)
from swift.utils.errors import SwiftError
from swift.utils.io import atomic_write_json
from swift.utils.logging import get_logger

logger = get_logger("swift.trainers")


def use_swift_callbacks(trainer: Trainer) -> None:
    """Replace transformers' progress/printer (and notebook) callbacks by our bar and logging.jsonl writer."""
    drop: list[type] = [ProgressCallback, PrinterCallback]
    try:
        from transformers.utils.notebook import NotebookProgressCallback

        drop.append(NotebookProgressCallback)
    except ImportError:  # pragma: no cover - optional IPython
        pass
    for cls in drop:
        while trainer.callback_handler.pop_callback(cls) is not None:
            pass
    trainer.add_callback(SwiftProgressCallback())
    trainer.add_callback(JsonlLoggerCallback())


def resolve_resume(trainer: Trainer, resume_from_checkpoint: str | bool | None) -> str | None:
    """`True` -> the newest COMPLETE checkpoint in output_dir (error if none); a folder -> itself (warned when it
    has no completeness marker). Also removes temporary folders left by a killed save."""
    output_dir = trainer.args.output_dir
    if trainer.args.should_save:
        remove_stale_temp_checkpoints(output_dir)
    if resume_from_checkpoint is True:
        found = find_latest_checkpoint(output_dir)
        if found is None:
            raise SwiftError(f"No complete checkpoint to resume from in {output_dir}. "
                             "Start without resume_from_checkpoint, or pass a checkpoint folder.")
        logger.info("Resuming from %s", found)
        return found
    if isinstance(resume_from_checkpoint, (str, os.PathLike)):
        path = os.fspath(resume_from_checkpoint)
        if not os.path.isdir(path):
            raise SwiftError(f"resume_from_checkpoint: {path} is not a folder.")
        if not is_complete_checkpoint(path):
            logger.warning("%s has no valid completeness marker; it may be incomplete.", path)
        return path
    return None


def finished_output(trainer: Trainer, checkpoint: str | None) -> Any:
    """When `checkpoint` already reached `max_steps`, load its state and return a `TrainOutput` (nothing to train;
    transformers would run one step more), else None."""
    if not checkpoint or trainer.args.max_steps <= 0:
        return None
    from transformers import TrainerState
    from transformers.trainer_utils import TrainOutput

    state_file = os.path.join(checkpoint, "trainer_state.json")
    if not os.path.isfile(state_file):
        return None
    state = TrainerState.load_from_json(state_file)
    if state.global_step < trainer.args.max_steps:
        return None
    trainer.state = state
    logger.info("%s already reached max_steps=%d: nothing left to train", checkpoint, trainer.args.max_steps)
    return TrainOutput(state.global_step, 0.0, {})


def _checkpoint_token(trainer: Trainer) -> str:
    """A suffix for temporary folders, the same on every rank (the main process's pid)."""
    token = getattr(trainer, "_swift_ckpt_token", None)
    if token is None:
        box = [os.getpid()]
        if trainer.args.world_size > 1:
            from accelerate.utils import broadcast_object_list

            broadcast_object_list(box, from_process=0)
        token = trainer._swift_ckpt_token = str(box[0])
    return token


def save_checkpoint_atomically(trainer: Trainer, model: Any, trial: Any,
                               checkpoint_files: dict[str, Any] | None = None,
                               extra: Callable[[str], None] | None = None) -> None:
    """Save like transformers does, into a temporary folder renamed to `checkpoint-N` once complete.

    Args:
        checkpoint_files: file name -> JSON-able object written into the checkpoint (e.g. args.json).
        extra: called with the temporary folder after the model is saved, to add files before the marker.
    """
    step = trainer.state.global_step
    run_dir = trainer._get_output_dir(trial=trial)
    final_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{step}")
    tmp_dir = temp_checkpoint_dir(run_dir, step, _checkpoint_token(trainer))
    if trainer.args.should_save and os.path.exists(tmp_dir):
        shutil.rmtree(tmp_dir)
    trainer.accelerator.wait_for_everyone()
    if trainer.hp_search_backend is None and trial is None:
        trainer.store_flos()
    trainer.save_model(tmp_dir, _internal_call=True)
    if extra is not None:
        extra(tmp_dir)
    _update_best_checkpoint(trainer, run_dir, step)
    if not trainer.args.save_only_model:
        trainer._save_optimizer_and_scheduler(tmp_dir)
        trainer._save_scaler(tmp_dir)
        trainer._save_rng_state(tmp_dir)
    if trainer.args.should_save:
        _save_trainer_state(trainer, tmp_dir)
        for name, obj in (checkpoint_files or {}).items():
            atomic_write_json(os.path.join(tmp_dir, name), obj)
    trainer.accelerator.wait_for_everyone()  # every rank's files (rng_state_<rank>.pth, shards) are in
    if trainer.args.should_save:
        write_marker(tmp_dir, step, extra={"epoch": trainer.state.epoch})
        fsync_tree(tmp_dir)
        publish_checkpoint(tmp_dir, final_dir)
        logger.info("Saved checkpoint %s", final_dir)
    trainer.accelerator.wait_for_everyone()
    if trainer.args.push_to_hub:
        trainer._push_from_checkpoint(final_dir)
    if trainer.args.should_save:
        rotate_checkpoints(output_dir=run_dir, save_total_limit=trainer.args.save_total_limit,
                           best_model_checkpoint=trainer.state.best_model_checkpoint, use_mtime=True)


def _update_best_checkpoint(trainer: Trainer, run_dir: str, step: int) -> None:
    """Point `best_model_checkpoint` at the final name, including the checkpoint being written now."""
    best = trainer.state.best_global_step
    strategies = (SaveStrategy.STEPS, SaveStrategy.EPOCH, SaveStrategy.BEST)
    if trainer.args.save_strategy in strategies and best:
        best_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best}")
        if best == step or os.path.exists(best_dir):
            trainer.state.best_model_checkpoint = best_dir


def _save_trainer_state(trainer: Trainer, output_dir: str) -> None:
    """trainer_state.json with the current state of every stateful callback (and the control)."""
    from transformers.trainer_callback import ExportableState

    states: dict[str, Any] = {}
    for cb in [*trainer.callback_handler.callbacks, trainer.control]:
        if isinstance(cb, ExportableState):
            name = cb.__class__.__name__
            if name in states:
                if not isinstance(states[name], list):
                    states[name] = [states[name]]
                states[name].append(cb.state())
            else:
                states[name] = cb.state()
    trainer.state.stateful_callbacks = states
    trainer.state.save_to_json(os.path.join(output_dir, "trainer_state.json"))
