"""``python -m synthfuse.koda.train --config configs/koda_tiny.yaml`` is ``synthfuse koda train``."""

from synthfuse.koda.train.command import main
from synthfuse.shared.cli import torchrun_exit

raise SystemExit(torchrun_exit(main()))
