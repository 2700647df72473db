"""``python -m synthfuse.synthe.train ARGS`` is ``synthfuse synthe train ARGS``."""

import sys

from synthfuse.shared.cli import torchrun_exit
from synthfuse.synthe.cli import main

raise SystemExit(torchrun_exit(main(["train", *sys.argv[1:]])))
