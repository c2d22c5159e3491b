"""Child process of the kill test: trains, and stalls inside the save of step `stall_step`.

Usage: python kill_child.py OUTPUT_DIR FLAG_FILE STALL_STEP
The stall happens after the model, optimizer, scheduler and RNG files are in the temporary folder and
before the trainer state and completeness marker; the parent kills the process with SIGKILL there.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from trainer_helpers import PadCollator, make_args, make_model, make_rows  # noqa: E402

from swift.trainers.sft import SwiftTrainer  # noqa: E402


class StallingTrainer(SwiftTrainer):
    stall_step = -1
    flag_file = ""

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self.state.global_step == self.stall_step:
            with open(self.flag_file, "w") as f:
                f.write(output_dir)
            time.sleep(300)


def main() -> None:
    out, flag, stall = sys.argv[1], sys.argv[2], int(sys.argv[3])
    StallingTrainer.stall_step, StallingTrainer.flag_file = stall, flag
    trainer = StallingTrainer(
        make_model(), make_args(out, save_steps=2), train_dataset=make_rows(), data_collator=PadCollator()
    )
    trainer.train()


if __name__ == "__main__":
    main()
