"""``python -m synthfuse.koda`` is ``synthfuse koda``."""

from synthfuse.koda.cli import main
from synthfuse.shared.cli import torchrun_exit

raise SystemExit(torchrun_exit(main()))
