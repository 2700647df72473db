"""``python -m synthfuse.synthe`` is ``synthfuse synthe``."""

from synthfuse.shared.cli import torchrun_exit
from synthfuse.synthe.cli import main

raise SystemExit(torchrun_exit(main()))
